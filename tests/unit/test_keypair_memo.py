"""The alerts job judges the certificates every minute: the key pair is parsed again only when a
file changed (``gateway.ops.checks._keypair``), and a change is always seen."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from gateway.core.errors import ConfigError
from gateway.ops import checks
from gateway.security import pki


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return pki.init(tmp_path_factory.mktemp("pki"))


def test_unchanged_files_are_not_parsed_again(paths: dict[str, Path], tmp_path: Path) -> None:
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    shutil.copy(paths["gateway-key"], key)
    shutil.copy(paths["gateway"], cert)
    first = checks._keypair(str(key), str(cert))
    assert checks._keypair(str(key), str(cert)) is first


def test_a_replaced_key_is_read_again(paths: dict[str, Path], tmp_path: Path) -> None:
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    shutil.copy(paths["gateway-key"], key)
    shutil.copy(paths["gateway"], cert)
    checks._keypair(str(key), str(cert))
    # Another key in place, with the old file's times: the inode and size still tell.
    st = key.stat()
    replacement = tmp_path / "other.pem"
    shutil.copy(paths["duo-key"], replacement)
    os.replace(replacement, key)
    os.utime(key, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(ConfigError, match="does not belong"):
        checks._keypair(str(key), str(cert))


def test_a_certificate_rewritten_in_place_is_read_again(paths: dict[str, Path], tmp_path: Path) -> None:
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    shutil.copy(paths["gateway-key"], key)
    shutil.copy(paths["gateway"], cert)
    before = checks._keypair(str(key), str(cert))
    cert.write_bytes(paths["duo"].read_bytes())
    with pytest.raises(ConfigError):
        checks._keypair(str(key), str(cert))
    cert.write_bytes(paths["gateway"].read_bytes())
    assert checks._keypair(str(key), str(cert)).cert_der == before.cert_der


def test_an_unreadable_file_is_an_error_every_time(paths: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    for _ in range(2):
        with pytest.raises(ConfigError):
            checks._keypair(str(missing), str(paths["gateway"]))
