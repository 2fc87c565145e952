"""The partners' files are vendored unchanged and pinned by sha256."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gateway import xmlsafe
from gateway.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = REPO.parent / "shared" / "contracts"


def test_every_vendored_file_matches_the_manifest():
    digests = xmlsafe.verify_manifest()
    assert set(digests) == {"ind-vergunningmelding-v1.wsdl", "ind-vergunningmelding-v1.xsd",
                            "duo-inburgering-v1.xsd", "cjib-portaal-v1.openapi.yaml"}


@pytest.mark.parametrize("name", ["ind/ind-vergunningmelding-v1.wsdl", "ind/ind-vergunningmelding-v1.xsd",
                                  "duo/duo-inburgering-v1.xsd", "cjib/cjib-portaal-v1.openapi.yaml"])
def test_vendored_files_are_the_partners_files_unchanged(name):
    original = (CONTRACTS / name).read_bytes()
    vendored = (REPO / "xsd" / Path(name).name).read_bytes()
    assert hashlib.sha256(vendored).hexdigest() == hashlib.sha256(original).hexdigest()


def test_a_changed_schema_is_refused(tmp_path):
    for f in (REPO / "xsd").iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "duo-inburgering-v1.xsd").write_bytes(b"<changed/>")
    with pytest.raises(ConfigError, match="duo-inburgering-v1.xsd differs"):
        xmlsafe.verify_manifest(tmp_path)
