"""Detached compact JWS for profile cjib-rest (attacks also in test_wsse_hostile.py)."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from gateway.core.errors import CertificateRefused, MessageExpired, SignatureInvalid
from gateway.security import jws
from gateway.security.keys import kid
from tests.pki_fixtures import keypair, make_pki, trust

BODY = b'{"opdrachtgeverReferentie":"3f1c","bedrag":{"centen":12500,"valuta":"EUR"}}'


@pytest.fixture(scope="session")
def pki_paths(tmp_path_factory):
    return make_pki(tmp_path_factory)


@pytest.fixture
def now():
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def header_of(value: str) -> dict:
    part = value.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


@pytest.mark.parametrize("name, partner, alg", [("cjib", "cjib", "PS256"), ("cjib-ec", "cjib", "ES256")])
def test_request_round_trip(pki_paths, now, name, partner, alg):
    key = keypair(pki_paths, name)
    value = jws.sign_detached(BODY, key, now=now, htm="POST", htu="/vorderingen?x=1")
    protected, empty, signature = value.split(".")
    assert empty == "" and "=" not in value
    header = jws.verify_detached(value, BODY, trust(pki_paths, partner, name), now=now, htm="POST",
                                 htu="/vorderingen?x=1")
    assert header == {"alg": alg, "kid": kid(key.certificate), "iat": int(now.timestamp()), "htm": "POST",
                      "htu": "/vorderingen?x=1"}
    if alg == "ES256":
        assert len(base64.urlsafe_b64decode(signature + "==")) == 64  # raw r||s, not DER


def test_response_has_no_htm_htu(pki_paths, now):
    value = jws.sign_detached(BODY, keypair(pki_paths, "cjib"), now=now)
    assert "htm" not in header_of(value) and "htu" not in header_of(value)
    jws.verify_detached(value, BODY, trust(pki_paths, "cjib"), now=now)


def test_rs256_is_accepted(pki_paths, now):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    key = keypair(pki_paths, "cjib")
    protected = jws._b64(json.dumps({"alg": "RS256", "kid": kid(key.certificate),
                                     "iat": int(now.timestamp())}).encode())
    sig = key.private_key.sign(f"{protected}.{jws._b64(BODY)}".encode(), padding.PKCS1v15(), hashes.SHA256())
    jws.verify_detached(f"{protected}..{jws._b64(sig)}", BODY, trust(pki_paths, "cjib"), now=now)


def test_htm_mismatch(pki_paths, now):
    value = jws.sign_detached(BODY, keypair(pki_paths, "cjib"), now=now, htm="POST", htu="/v")
    with pytest.raises(SignatureInvalid):
        jws.verify_detached(value, BODY, trust(pki_paths, "cjib"), now=now, htm="PUT", htu="/v")


def test_request_without_htm_when_one_is_expected(pki_paths, now):
    value = jws.sign_detached(BODY, keypair(pki_paths, "cjib"), now=now)
    with pytest.raises(SignatureInvalid):
        jws.verify_detached(value, BODY, trust(pki_paths, "cjib"), now=now, htm="POST", htu="/v")


def test_iat_in_the_future(pki_paths, now):
    value = jws.sign_detached(BODY, keypair(pki_paths, "cjib"), now=now + dt.timedelta(seconds=301))
    with pytest.raises(MessageExpired):
        jws.verify_detached(value, BODY, trust(pki_paths, "cjib"), now=now)
    jws.verify_detached(value, BODY, trust(pki_paths, "cjib"), now=now + dt.timedelta(seconds=1))


def test_rollover_kids(pki_paths, now):
    t = trust(pki_paths, "ind", "ind", "ind-rollover")
    for name in ("ind", "ind-rollover"):
        jws.verify_detached(jws.sign_detached(BODY, keypair(pki_paths, name), now=now), BODY, t, now=now)


def test_expired_certificate(pki_paths, now):
    value = jws.sign_detached(BODY, keypair(pki_paths, "ind-expired"), now=now)
    with pytest.raises(CertificateRefused):
        jws.verify_detached(value, BODY, trust(pki_paths, "ind", "ind-expired"), now=now)


def test_alg_that_does_not_fit_the_key(pki_paths, now):
    # An RSA signature labelled ES256 (or the reverse) is refused, not tried with another algorithm.
    value = jws.sign_detached(BODY, keypair(pki_paths, "cjib"), now=now)
    header = header_of(value) | {"alg": "ES256"}
    forged = jws._b64(json.dumps(header).encode()) + ".." + value.split("..")[1]
    with pytest.raises(SignatureInvalid):
        jws.verify_detached(forged, BODY, trust(pki_paths, "cjib"), now=now)


@pytest.mark.parametrize("value", [
    "", "abc", "a.b.c", "a..", "..b", "a...b", "a..b c", "!!..!!", "é..a",
    jws._b64(b"[1]") + ".." + jws._b64(b"x"),
    jws._b64(b'{"alg":"PS256","alg":"PS256","kid":"k","iat":1}') + ".." + jws._b64(b"x"),
    jws._b64(b'{"alg":"PS256","kid":"k","iat":1,"crit":["b64"],"b64":false}') + ".." + jws._b64(b"x"),
    jws._b64(b'{"alg":"PS256","iat":1}') + ".." + jws._b64(b"x"),
    jws._b64(b'{"alg":"RS512","kid":"k","iat":1}') + ".." + jws._b64(b"x"),
    "x" * 9000,
])
def test_malformed_values(pki_paths, now, value):
    with pytest.raises(SignatureInvalid):
        jws.verify_detached(value, BODY, trust(pki_paths, "cjib"), now=now)


def test_non_numeric_iat(pki_paths, now):
    key = keypair(pki_paths, "cjib")
    header = {"alg": "PS256", "kid": kid(key.certificate), "iat": "now"}
    protected = jws._b64(json.dumps(header).encode())
    from cryptography.hazmat.primitives import hashes

    sig = key.private_key.sign(f"{protected}.{jws._b64(BODY)}".encode(), jws._PSS, hashes.SHA256())
    with pytest.raises(SignatureInvalid, match="iat"):
        jws.verify_detached(f"{protected}..{jws._b64(sig)}", BODY, trust(pki_paths, "cjib"), now=now)
