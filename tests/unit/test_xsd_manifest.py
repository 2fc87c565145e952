"""The partners' files are vendored unchanged and pinned by sha256."""

from __future__ import annotations

import hashlib

import pytest

from gateway.core.errors import ConfigError
from gateway.wire import xmlsafe

XSD = xmlsafe.XSD_DIR  # the checkout's xsd/ (through the package link gateway/xsd)
PARTNER_FILES = {"ind-vergunningmelding-v1.wsdl", "ind-vergunningmelding-v1.xsd",
                 "duo-inburgering-v1.xsd", "cjib-portaal-v1.openapi.yaml"}


def pinned() -> dict[str, str]:
    """SHA256SUMS beside the vendored files (sha256sum format) as name -> digest."""
    lines = (XSD / "SHA256SUMS").read_text(encoding="utf-8").splitlines()
    return {n.strip().lstrip("*"): d for d, n in (line.split(maxsplit=1) for line in lines if line.strip())}


def test_every_vendored_file_matches_the_manifest():
    digests = xmlsafe.verify_manifest()
    assert set(digests) == PARTNER_FILES


def test_the_manifest_lists_exactly_the_files_present():
    """No partner file among the vendored ones escapes the manifest, and the manifest names nothing else."""
    present = {f.name for f in XSD.iterdir() if f.name != "SHA256SUMS"}
    assert present == set(pinned()) == PARTNER_FILES


@pytest.mark.parametrize("name", sorted(PARTNER_FILES))
def test_vendored_files_are_the_partners_files_unchanged(name):
    """Independently of xmlsafe.verify_manifest: sha256 of each file equals its line in SHA256SUMS."""
    vendored = (XSD / name).read_bytes()
    assert hashlib.sha256(vendored).hexdigest() == pinned()[name]


def test_a_changed_schema_is_refused(tmp_path):
    for f in XSD.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "duo-inburgering-v1.xsd").write_bytes(b"<changed/>")
    with pytest.raises(ConfigError, match="duo-inburgering-v1.xsd differs"):
        xmlsafe.verify_manifest(tmp_path)
