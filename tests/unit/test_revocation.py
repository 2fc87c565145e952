"""gateway.security.revocation without sockets: CRLs and OCSP answers made by the sandbox CA in-process."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.core.errors import CertificateRevoked, CertificateStatusUnknown
from gateway.security import keys, pki, sandbox_ca
from gateway.security.revocation import Revocation, crl_urls, ocsp_urls

CA_URL = "http://127.0.0.1:9/ca"  # never contacted here


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pkio")
    pki.init(directory, ca_url=CA_URL)
    pki.issue(directory, "ind-2", common_name="ind")
    pki.issue(directory, "plain", common_name="ind", ca_url="")  # names no CRL or responder
    return directory


def _trust(ca_dir: Path, *names: str) -> keys.PartnerTrust:
    return keys.load_trust("ind", [ca_dir / "ca.pem"], [ca_dir / f"{n}.pem" for n in names], oin=pki.OINS["ind"])


def _cert(ca_dir: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((ca_dir / f"{name}.pem").read_bytes())


def _revocation(ca_dir: Path, policy: str = "hard-fail", **kw: Any) -> tuple[Revocation, keys.PartnerTrust]:
    trust = _trust(ca_dir, "ind", "ind-2", "plain")
    return Revocation([trust], policies={"ind": policy}, grace_seconds=10, **kw), trust


def test_the_sandbox_certificates_name_their_crl_and_responder(ca_dir: Path) -> None:
    assert crl_urls(_cert(ca_dir, "ind")) == [pki.crl_url(CA_URL)]
    assert ocsp_urls(_cert(ca_dir, "ind")) == [pki.ocsp_url(CA_URL)]
    assert crl_urls(_cert(ca_dir, "plain")) == [] == ocsp_urls(_cert(ca_dir, "plain"))
    assert keys.oin_of(_cert(ca_dir, "ind-2")) == pki.OINS["ind"]


def test_a_revoked_serial_in_a_fresh_crl_is_refused_and_others_pass(ca_dir: Path, tmp_path: Path) -> None:
    rv, trust = _revocation(ca_dir)
    directory = tmp_path / "ca"
    directory.mkdir()
    for f in ca_dir.glob("*"):
        (directory / f.name).write_bytes(f.read_bytes())
    sandbox_ca.revoke(directory, "ind-2")
    now = dt.datetime.now(dt.UTC)
    rv.put_crl(pki.crl_url(CA_URL), sandbox_ca.SandboxCA(directory).crl(now), now.timestamp())
    with pytest.raises(CertificateRevoked):
        rv.check(_cert(ca_dir, "ind-2"), trust, now)
    rv.check(_cert(ca_dir, "ind"), trust, now)  # listed nowhere: good
    rv.check(_cert(ca_dir, "plain"), trust, now)  # names no CRL: cannot be checked, accepted
    # A revocation is never undone: even a stale CRL that lists it refuses it.
    with pytest.raises(CertificateRevoked):
        rv.check(_cert(ca_dir, "ind-2"), trust, now + dt.timedelta(days=30))


def test_hard_fail_refuses_past_next_update_plus_grace_soft_fail_accepts_and_says_so(ca_dir: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    crl = sandbox_ca.SandboxCA(ca_dir, next_update_seconds=60).crl(now)
    hard, trust = _revocation(ca_dir)
    hard.put_crl(pki.crl_url(CA_URL), crl, now.timestamp())
    hard.check(_cert(ca_dir, "ind"), trust, now + dt.timedelta(seconds=65))  # within nextUpdate + grace
    with pytest.raises(CertificateStatusUnknown):
        hard.check(_cert(ca_dir, "ind"), trust, now + dt.timedelta(seconds=75))
    said: list[tuple[str, str, str]] = []
    soft, trust = _revocation(ca_dir, "soft-fail", on_soft_fail=lambda *a: said.append(a))
    soft.put_crl(pki.crl_url(CA_URL), crl, now.timestamp())
    soft.check(_cert(ca_dir, "ind"), trust, now + dt.timedelta(seconds=75))
    assert [s[0] for s in said] == ["ind"] and "soft-fail" in said[0][2]


def test_never_fetched_is_unknown(ca_dir: Path) -> None:
    rv, trust = _revocation(ca_dir)
    with pytest.raises(CertificateStatusUnknown):
        rv.check(_cert(ca_dir, "ind"), trust, dt.datetime.now(dt.UTC))


def test_a_crl_signed_by_another_ca_is_not_taken(ca_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    pki.init(other)  # another root and intermediate with the same names
    rv, _ = _revocation(ca_dir)
    with pytest.raises(ValueError, match="not signed"):
        rv.put_crl(pki.crl_url(CA_URL), sandbox_ca.SandboxCA(other).crl(), time.time())
    with pytest.raises(ValueError):
        rv.put_crl(pki.crl_url(CA_URL), b"not a CRL", time.time())


def test_ocsp_answers_good_and_revoked_and_refuses_a_forged_one(ca_dir: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509 import ocsp

    rv, trust = _revocation(ca_dir)
    cert, issuer = _cert(ca_dir, "ind"), rv.issuer_of(_cert(ca_dir, "ind"))
    assert issuer is not None
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256()).build().public_bytes(
        serialization.Encoding.DER)
    now = dt.datetime.now(dt.UTC)
    assert rv.put_ocsp(cert, sandbox_ca.SandboxCA(ca_dir).ocsp(request), issuer, now.timestamp()) == "good"
    rv.check(cert, trust, now)  # good by OCSP alone (no CRL fetched)
    directory = tmp_path / "ca"
    directory.mkdir()
    for f in ca_dir.glob("*"):
        (directory / f.name).write_bytes(f.read_bytes())
    sandbox_ca.revoke(directory, "ind")
    assert rv.put_ocsp(cert, sandbox_ca.SandboxCA(directory).ocsp(request), issuer, now.timestamp()) == "revoked"
    with pytest.raises(CertificateRevoked):
        rv.check(cert, trust, now)
    other = tmp_path / "other"
    pki.init(other)
    for name in ("ind.pem",):  # the impostor CA answers about a certificate with the same serial
        (other / name).write_bytes((ca_dir / name).read_bytes())
    forged = sandbox_ca.SandboxCA(other).ocsp(request)
    with pytest.raises(ValueError):
        rv.put_ocsp(cert, forged, issuer, now.timestamp())


def test_partner_trust_checks_the_oin_of_signing_and_tls_certificates(ca_dir: Path) -> None:
    from gateway.core.errors import OinMismatch

    pki.issue(ca_dir, "duo-as-ind", common_name="ind", oin=pki.OINS["duo"])
    trust = _trust(ca_dir, "ind", "duo-as-ind")
    now = dt.datetime.now(dt.UTC)
    trust.check(_cert(ca_dir, "ind"), now)
    with pytest.raises(OinMismatch) as signing:
        trust.check(_cert(ca_dir, "duo-as-ind"), now)
    assert signing.value.code == "OIN_SIGNING_CERTIFICATE"
    with pytest.raises(OinMismatch) as peer:
        trust.check_peer(_cert(ca_dir, "duo-as-ind").public_bytes(serialization.Encoding.DER), now)
    assert peer.value.code == "OIN_TLS_CERTIFICATE"


def test_an_intermediate_without_its_root_among_the_anchors_does_not_anchor(ca_dir: Path, tmp_path: Path) -> None:
    from gateway.core.errors import CertificateRefused

    intermediate_only = tmp_path / "intermediate.pem"
    intermediate = x509.load_pem_x509_certificates((ca_dir / "ca.pem").read_bytes())[0]
    intermediate_only.write_bytes(intermediate.public_bytes(serialization.Encoding.PEM))
    trust = keys.load_trust("ind", [intermediate_only], [ca_dir / "ind.pem"])
    with pytest.raises(CertificateRefused, match="chain"):
        trust.check(_cert(ca_dir, "ind"), dt.datetime.now(dt.UTC))
    keys.load_trust("ind", [ca_dir / "ca.pem"], [ca_dir / "ind.pem"]).check(_cert(ca_dir, "ind"), dt.datetime.now(dt.UTC))
