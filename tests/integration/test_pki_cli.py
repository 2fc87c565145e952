"""`gateway pki init --ca-url` and `gateway pki revoke`: the sandbox PKI's shape and its revocations."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography import x509
from typer.testing import CliRunner

from gateway.cli import app
from gateway.security import keys, pki, sandbox_ca
from gateway.security.revocation import crl_urls, ocsp_urls


def test_pki_init_with_a_ca_url_and_revoke(tmp_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["pki", "init", str(tmp_path), "--ca-url", "http://127.0.0.1:8099", "--json"])
    assert done.exit_code == 0, done.output
    assert {"root", "ca", "ind", "gateway"} <= set(json.loads(done.output))
    ind = x509.load_pem_x509_certificate((tmp_path / "ind.pem").read_bytes())
    assert keys.oin_of(ind) == pki.OINS["ind"]
    assert crl_urls(ind) == ["http://127.0.0.1:8099/crl/ca.crl"] and ocsp_urls(ind) == ["http://127.0.0.1:8099/ocsp"]
    assert len(x509.load_pem_x509_certificates((tmp_path / "ca.pem").read_bytes())) == 2  # intermediate + root

    done = runner.invoke(app, ["pki", "revoke", "ind", "--dir", str(tmp_path), "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["serial"] == str(ind.serial_number)
    crl = x509.load_der_x509_crl(sandbox_ca.SandboxCA(tmp_path).crl())
    assert crl.get_revoked_certificate_by_serial_number(ind.serial_number) is not None
    assert len(list(crl)) == 1

    missing = runner.invoke(app, ["pki", "revoke", "nobody", "--dir", str(tmp_path)])
    assert missing.exit_code == 2 and "no certificate" in missing.output
    assert runner.invoke(app, ["pki", "init", str(tmp_path / "x"), "--ca-url", "ftp://x"]).exit_code == 2
