"""Detached compact JWS for profile cjib-rest (RFC 7515 appendix F), with ``cryptography`` only.

The value is ``BASE64URL(header) + ".." + BASE64URL(signature)``; the signing input is
``BASE64URL(header) + "." + BASE64URL(body)``. Only PS256, RS256 and ES256 are accepted: never
``none`` nor an HMAC (an HS256 "signature" keyed with our partner's public key is a classic forgery).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from gateway.core.errors import CertificateRefused, ConfigError, MessageExpired, SignatureInvalid
from gateway.security.keys import KeyPair, PartnerTrust, kid

__all__ = ["ALLOWED_ALGS", "sign_detached", "verify_detached"]

ALLOWED_ALGS = ("PS256", "RS256", "ES256")
MAX_VALUE_LENGTH = 8192
_STAGE = "security"
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)  # RFC 7518: salt = hash size


def sign_detached(body: bytes, key: KeyPair, *, now: datetime, htm: str | None = None,
                  htu: str | None = None) -> str:
    """The X-JWS-Signature value for ``body`` (htm/htu on requests)."""
    header: dict[str, object] = {"alg": key.jws_alg(), "kid": kid(key.certificate), "iat": int(now.timestamp())}
    if htm is not None:
        header["htm"] = htm
    if htu is not None:
        header["htu"] = htu
    protected = _b64(json.dumps(header, separators=(",", ":")).encode())
    signing_input = f"{protected}.{_b64(body)}".encode("ascii")
    return f"{protected}..{_b64(_sign(signing_input, key))}"


def _sign(data: bytes, key: KeyPair) -> bytes:
    private = key.private_key
    alg = key.jws_alg()  # raises ConfigError unless RSA (PS256) or EC P-256 (ES256)
    if alg == "PS256" and isinstance(private, rsa.RSAPrivateKey):
        return private.sign(data, _PSS, hashes.SHA256())
    if alg == "ES256" and isinstance(private, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(private.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    # Not reached: jws_alg() names the algorithm from these same isinstance checks.
    raise ConfigError("the key is neither RSA nor EC P-256", file=key.key_file)


def verify_detached(value: str, body: bytes, trust: PartnerTrust, *, now: datetime, htm: str | None = None,
                    htu: str | None = None, max_skew_seconds: int = 300) -> dict:
    """Verify a detached JWS over ``body``; return its protected header.

    Raises SignatureInvalid (malformed, algorithm, signature, htm/htu), CertificateRefused
    (unknown kid, certificate not valid) or MessageExpired (iat more than max_skew off).
    """
    protected, signature = _split(value)
    header = _header(protected)
    cert = trust.by_kid(header["kid"])
    if cert is None:
        raise CertificateRefused("the JWS kid is not a certificate configured for this partner",
                                 partner=trust.partner, stage=_STAGE)
    trust.check(cert, now)
    signing_input = f"{protected}.{_b64(body)}".encode("ascii")
    if not _verified(header["alg"], cert.public_key(), signing_input, signature):
        raise SignatureInvalid("the JWS signature does not verify", stage=_STAGE)
    _check_claims(header, now=now, htm=htm, htu=htu, max_skew_seconds=max_skew_seconds)
    return header


def _split(value: str) -> tuple[str, bytes]:
    if not isinstance(value, str) or len(value) > MAX_VALUE_LENGTH or not value.isascii():
        raise SignatureInvalid("the JWS value is malformed", stage=_STAGE)
    pieces = value.split(".")
    if len(pieces) != 3 or pieces[1] != "" or not pieces[0] or not pieces[2]:
        raise SignatureInvalid("the JWS is not a detached compact serialization", stage=_STAGE)
    return pieces[0], _unb64(pieces[2])


def _header(protected: str) -> dict:
    try:
        header = json.loads(_unb64(protected), object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SignatureInvalid("the JWS header is not a JSON object", stage=_STAGE) from exc
    if not isinstance(header, dict):
        raise SignatureInvalid("the JWS header is not a JSON object", stage=_STAGE)
    if header.get("alg") not in ALLOWED_ALGS:
        raise SignatureInvalid("the JWS algorithm is not allowed", stage=_STAGE)
    # crit/b64 would change how the JWS must be processed (RFC 7515 4.1.11, RFC 7797).
    if "crit" in header or "b64" in header:
        raise SignatureInvalid("the JWS header uses unsupported crit or b64", stage=_STAGE)
    if not isinstance(header.get("kid"), str):
        raise SignatureInvalid("the JWS header has no kid", stage=_STAGE)
    return header


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate member")
    return dict(pairs)


def _verified(alg: str, public_key: object, data: bytes, signature: bytes) -> bool:
    try:
        if alg in ("PS256", "RS256") and isinstance(public_key, rsa.RSAPublicKey):
            pad = _PSS if alg == "PS256" else padding.PKCS1v15()
            public_key.verify(signature, data, pad, hashes.SHA256())
            return True
        if alg == "ES256" and isinstance(public_key, ec.EllipticCurvePublicKey) \
                and public_key.curve.name == "secp256r1" and len(signature) == 64:
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
            public_key.verify(der, data, ec.ECDSA(hashes.SHA256()))
            return True
    except InvalidSignature:
        return False
    return False  # the algorithm does not fit the certificate's key


def _check_claims(header: dict, *, now: datetime, htm: str | None, htu: str | None,
                  max_skew_seconds: int) -> None:
    iat = header.get("iat")
    if not isinstance(iat, int) or isinstance(iat, bool):
        raise SignatureInvalid("the JWS header has no numeric iat", stage=_STAGE)
    if abs(now.timestamp() - iat) > max_skew_seconds:
        raise MessageExpired("the JWS iat is too far from now", stage=_STAGE)
    if htm is not None and header.get("htm") != htm:
        raise SignatureInvalid("the JWS htm does not match the request method", stage=_STAGE)
    if htu is not None and header.get("htu") != htu:
        raise SignatureInvalid("the JWS htu does not match the request path", stage=_STAGE)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    # Strict: the URL-safe alphabet only, no padding, no whitespace.
    if not text or any(c not in _ALPHABET for c in text) or len(text) % 4 == 1:
        raise SignatureInvalid("the JWS holds invalid base64url", stage=_STAGE)
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise SignatureInvalid("the JWS holds invalid base64url", stage=_STAGE) from exc


_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
