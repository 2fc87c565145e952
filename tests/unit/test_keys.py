"""Key pairs, pinned partner certificates (rollover) and the sandbox PKI."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway.core.errors import CertificateRefused, ConfigError
from gateway.security import keys, pki
from tests.pki_fixtures import keypair, make_pki, trust


@pytest.fixture(scope="session")
def pki_paths(tmp_path_factory):
    return make_pki(tmp_path_factory)


NOW = dt.datetime.now(dt.UTC)


def test_load_keypair_matches_files(pki_paths):
    kp = keypair(pki_paths, "ind")
    assert kp.cert_file == str(pki_paths["ind"])
    assert kp.key_file == str(pki_paths["ind-key"])
    assert x509.load_der_x509_certificate(kp.cert_der) == kp.certificate
    assert kp.cert_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert kp.jws_alg() == "PS256"


def test_ec_keypair_signs_es256(pki_paths):
    assert keypair(pki_paths, "cjib-ec").jws_alg() == "ES256"


def test_key_of_another_certificate_is_refused(pki_paths):
    with pytest.raises(ConfigError, match="does not belong"):
        keys.load_keypair(pki_paths["ind-key"], pki_paths["duo"])


def test_unreadable_key_is_a_config_error(pki_paths, tmp_path):
    bad = tmp_path / "bad-key.pem"
    bad.write_text("not a key")
    with pytest.raises(ConfigError):
        keys.load_keypair(bad, pki_paths["ind"])


def test_kid_is_base64url_sha256_of_der(pki_paths):
    import base64
    import hashlib

    cert = keypair(pki_paths, "ind").certificate
    expected = base64.urlsafe_b64encode(hashlib.sha256(keypair(pki_paths, "ind").cert_der).digest())
    assert keys.kid(cert) == expected.rstrip(b"=").decode()
    assert len(keys.kid(cert)) == 43


def test_pinned_certificate_is_accepted(pki_paths):
    t = trust(pki_paths, "ind")
    cert = keypair(pki_paths, "ind").certificate
    t.check(cert, NOW)
    assert t.matches(keypair(pki_paths, "ind").cert_der)
    assert t.by_kid(keys.kid(cert)) == cert
    assert t.by_kid("unknown") is None


def test_rollover_accepts_both_pinned_certificates(pki_paths):
    t = trust(pki_paths, "ind", "ind", "ind-rollover")
    t.check(keypair(pki_paths, "ind").certificate, NOW)
    t.check(keypair(pki_paths, "ind-rollover").certificate, NOW)


def test_unpinned_certificate_from_the_same_ca_is_refused(pki_paths):
    with pytest.raises(CertificateRefused) as err:
        trust(pki_paths, "ind").check(keypair(pki_paths, "duo").certificate, NOW)
    assert err.value.code == "CERTIFICATE"


def test_pinned_certificate_from_another_ca_is_refused(pki_paths):
    # Pinned by mistake, same subject names, but the anchor did not sign it.
    t = trust(pki_paths, "ind", "ind-other-ca")
    with pytest.raises(CertificateRefused, match="chain"):
        t.check(keypair(pki_paths, "ind-other-ca").certificate, NOW)


def test_expired_and_future_certificates_are_refused(pki_paths):
    t = trust(pki_paths, "ind", "ind-expired", "ind-future")
    for name in ("ind-expired", "ind-future"):
        with pytest.raises(CertificateRefused, match="not valid now"):
            t.check(keypair(pki_paths, name).certificate, NOW)


def test_load_trust_needs_anchor_and_certificate(pki_paths):
    with pytest.raises(ConfigError):
        keys.load_trust("ind", [], [pki_paths["ind"]])


def test_pki_init_is_idempotent_unless_forced(tmp_path):
    first = pki.init(tmp_path)
    before = first["ind"].read_bytes()
    assert pki.init(tmp_path)["ind"].read_bytes() == before
    assert pki.init(tmp_path, force=True)["ind"].read_bytes() != before


def test_pki_files_and_extensions(pki_paths):
    for name in ("gateway", "ind", "duo", "cjib"):
        assert os.stat(pki_paths[f"{name}-key"]).st_mode & 0o777 == 0o600
        cert = keypair(pki_paths, name).certificate
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == ["localhost"]
        assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        assert cert.public_key().key_size == 2048
    assert os.stat(pki_paths["ca-key"]).st_mode & 0o777 == 0o600
