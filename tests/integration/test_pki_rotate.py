"""``gateway pki rotate``: a new key (mode 0600) and a certificate request for the current
certificate's subject; with the sandbox CA, the certificate too; check-config then judges the next
certificate against its switch-over moment."""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from typer.testing import CliRunner

from gateway.cli import app
from gateway.sandbox import write_toml


def _config(tmp_path: Path, pki_paths: dict[str, Any], **tls: Any) -> Path:
    path = tmp_path / "gateway.toml"
    write_toml({"store": {"dsn": f"sqlite:///{tmp_path / 'g.db'}"},
                "tls": {"cert_file": str(pki_paths["gateway"]), "key_file": str(pki_paths["gateway-key"]), **tls}},
               path)
    return path


def test_rotate_prepares_the_next_key_and_check_config_judges_it(tmp_path: Path, pki_paths: dict[str, Any]) -> None:
    runner = CliRunner()
    cfg = _config(tmp_path, pki_paths)
    out = tmp_path / "next"
    result = runner.invoke(app, ["pki", "rotate", "--dir", str(out), "--switch-at", "2030-03-01T09:00:00+01:00",
                                 "--sign-with-sandbox-ca", str(pki_paths["dir"]), "--json", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout)
    assert made["switch_at"] == "2030-03-01T08:00:00+00:00"
    key, csr_path, cert_path = Path(made["next_key_file"]), Path(made["request"]), Path(made["next_cert_file"])
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    current = x509.load_pem_x509_certificate(Path(pki_paths["gateway"]).read_bytes())
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert csr.is_signature_valid and csr.subject == current.subject == cert.subject
    new_key, old_key = cert.public_key(), current.public_key()
    assert isinstance(new_key, rsa.RSAPublicKey) and isinstance(old_key, rsa.RSAPublicKey)
    assert new_key.public_numbers() != old_key.public_numbers()
    ca = x509.load_pem_x509_certificate(Path(pki_paths["ca"]).read_bytes())
    cert.verify_directly_issued_by(ca)  # the sandbox CA's name as issuer, and its signature

    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(days=7)).isoformat()
    ok = _config(tmp_path, pki_paths, next_cert_file=str(cert_path), next_key_file=str(key), switch_at=soon)
    checked = runner.invoke(app, ["check-config", "--json", "--config", str(ok)])
    assert checked.exit_code == 0, checked.output
    [item] = [i for i in json.loads(checked.stdout)["items"] if i["what"] == "gateway next certificate"]
    assert item["level"] == "ok" and item["message"].startswith("takes over at ")

    late = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3650)).isoformat()  # after the new one has expired
    bad = _config(tmp_path, pki_paths, next_cert_file=str(cert_path), next_key_file=str(key), switch_at=late)
    refused = runner.invoke(app, ["check-config", "--json", "--config", str(bad)])
    assert refused.exit_code == 1
    [item] = [i for i in json.loads(refused.stdout)["items"] if i["what"] == "gateway next certificate"]
    assert item["level"] == "error" and item["file"] == str(cert_path) and "not valid at switch_at" in item["message"]

    gone = _config(tmp_path, pki_paths, next_cert_file=str(tmp_path / "missing.pem"), next_key_file=str(key),
                   switch_at=soon)
    missing = runner.invoke(app, ["check-config", "--config", str(gone)])
    assert missing.exit_code == 1 and "missing.pem" in missing.output


def test_half_a_next_key_is_refused_by_the_config(tmp_path: Path, pki_paths: dict[str, Any]) -> None:
    cfg = _config(tmp_path, pki_paths, next_cert_file="x.pem")
    result = CliRunner().invoke(app, ["check-config", "--config", str(cfg)])
    assert result.exit_code == 2 and "go together" in result.output
