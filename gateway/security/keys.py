"""Our key pair and each partner's pinned certificates, loaded once at start-up.

Parsing a PEM private key costs tens of milliseconds, so ``load_keypair`` runs once and the
``KeyPair`` travels with the process. ``PartnerTrust`` holds a partner's trust anchors and its
pinned certificates (several at once during a rollover); ``check`` decides whether a signing
certificate is acceptable.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from gateway.core.errors import CertificateRefused, ConfigError, OinMismatch

__all__ = ["KeyPair", "PartnerTrust", "load_keypair", "load_trust", "read_certificates", "kid", "kid_of_der",
           "oin_of", "RevocationCheck"]


def kid(cert: x509.Certificate) -> str:
    """The key id of the cjib-rest profile: base64url (no padding) of SHA-256 over the DER certificate."""
    return kid_of_der(cert.public_bytes(serialization.Encoding.DER))


def kid_of_der(der: bytes) -> str:
    """``kid`` of a DER certificate, without parsing it (a look-up key for untrusted tokens)."""
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class KeyPair:
    """Our own identity (or a simulator's): a private key and its certificate."""

    private_key: PrivateKeyTypes
    certificate: x509.Certificate
    cert_pem: bytes
    cert_der: bytes
    key_file: str
    cert_file: str

    def jws_alg(self) -> str:
        """The JWS algorithm this key signs with: PS256 for RSA, ES256 for EC P-256."""
        if isinstance(self.private_key, rsa.RSAPrivateKey):
            return "PS256"
        if isinstance(self.private_key, ec.EllipticCurvePrivateKey) and self.private_key.curve.name == "secp256r1":
            return "ES256"
        raise ConfigError("the key is neither RSA nor EC P-256", file=self.key_file)


def load_keypair(key_file: str | Path, cert_file: str | Path) -> KeyPair:
    """Load a PEM private key and its PEM certificate (the first one in the file), and check they match."""
    key = _read_key(Path(key_file))
    cert = read_certificates(Path(cert_file))[0]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, public) != cert.public_key().public_bytes(
        serialization.Encoding.DER, public
    ):
        raise ConfigError("the private key does not belong to the certificate", file=str(cert_file))
    return KeyPair(
        private_key=key,
        certificate=cert,
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        cert_der=cert.public_bytes(serialization.Encoding.DER),
        key_file=str(key_file),
        cert_file=str(cert_file),
    )


def _read_key(path: Path) -> PrivateKeyTypes:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot load the private key: {type(exc).__name__}", file=str(path)) from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigError("only RSA and EC keys are supported", file=str(path))
    return key


def read_certificates(path: Path) -> list[x509.Certificate]:
    """The PEM certificates in ``path``; ``ConfigError`` naming the file when it cannot be read."""
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the certificate: {type(exc).__name__}", file=str(path)) from exc
    return certs


class RevocationCheck(Protocol):
    """What ``PartnerTrust`` asks about revocation (``gateway.security.revocation.Revocation``)."""

    def check(self, cert: x509.Certificate, trust: PartnerTrust, now: datetime) -> None: ...


@dataclass(frozen=True)
class PartnerTrust:
    """What we trust for one partner: its anchors, its pinned certificates, its OIN, revocation.

    ``oin`` (20 digits; None: not configured) must be in the subject serialNumber of every
    certificate accepted for the partner. ``revocation`` is set once at start-up
    (``dataclasses.replace``) when the gateway checks revocation; None: not checked.
    """

    partner: str
    anchors: tuple[x509.Certificate, ...]
    certificates: tuple[x509.Certificate, ...]
    anchor_files: tuple[str, ...] = ()
    oin: str | None = None
    revocation: RevocationCheck | None = field(default=None, repr=False, compare=False)
    # Look-ups by DER and by kid, built once; not part of equality or repr.
    _by_der: dict[bytes, x509.Certificate] = field(init=False, repr=False, compare=False)
    _by_kid: dict[str, x509.Certificate] = field(init=False, repr=False, compare=False)
    _issuers: dict[bytes, tuple[x509.Certificate, ...]] = field(init=False, repr=False, compare=False)
    _ders: dict[int, tuple[x509.Certificate, bytes]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_der = {c.public_bytes(serialization.Encoding.DER): c for c in self.certificates}
        object.__setattr__(self, "_by_der", by_der)
        object.__setattr__(self, "_by_kid", {kid_of_der(d): c for d, c in by_der.items()})
        # The issuer signature of a pinned certificate never changes: verify it once.
        object.__setattr__(self, "_issuers", {d: _issuers(c, self.anchors) for d, c in by_der.items()})
        object.__setattr__(self, "_ders", {id(c): (c, d) for d, c in by_der.items()})

    def matches(self, cert_der: bytes) -> bool:
        """Is this DER certificate one of the pinned certificates?"""
        return cert_der in self._by_der

    def by_kid(self, kid: str) -> x509.Certificate | None:
        """The pinned certificate with this kid (base64url SHA-256 of its DER), if any."""
        return self._by_kid.get(kid)

    def check(self, cert: x509.Certificate, now: datetime) -> None:
        """Refuse a signing certificate unless it is pinned, chains to an anchor, is valid at ``now``,
        carries the partner's OIN and is not revoked (CertificateRefused and its subclasses)."""
        self._check_pinned(cert, now)
        self._check_oin(cert, "OIN_SIGNING_CERTIFICATE", "signing")
        if self.revocation is not None:
            self.revocation.check(cert, self, now)

    def check_peer(self, der: bytes | None, now: datetime) -> x509.Certificate:
        """The same checks for a TLS peer's DER certificate (client or server); returns it parsed."""
        if der is None:
            raise CertificateRefused("no TLS certificate was presented", partner=self.partner)
        cert = self._by_der.get(der)
        if cert is None:
            raise CertificateRefused("the TLS certificate is not one configured for this partner",
                                     partner=self.partner)
        self._check_pinned(cert, now)
        self._check_oin(cert, "OIN_TLS_CERTIFICATE", "TLS")
        if self.revocation is not None:
            self.revocation.check(cert, self, now)
        return cert

    def _check_oin(self, cert: x509.Certificate, code: str, role: str) -> None:
        if self.oin is not None and oin_of(cert) != self.oin:
            raise OinMismatch(f"the {role} certificate's subject serialNumber is not {self.partner}'s OIN",
                              code=code, partner=self.partner)

    def der_of(self, cert: x509.Certificate) -> bytes:
        """``cert``'s DER. The certificates checked at every message are the pinned objects
        themselves (``by_kid``, ``check_peer``): their DER is kept, not encoded again (about 7 us)."""
        known = self._ders.get(id(cert))
        return known[1] if known is not None and known[0] is cert else cert.public_bytes(serialization.Encoding.DER)

    def _check_pinned(self, cert: x509.Certificate, now: datetime) -> None:
        der = self.der_of(cert)
        if der not in self._by_der:
            raise CertificateRefused("the certificate is not one configured for this partner", partner=self.partner)
        issuers = self._issuers[der]
        if not issuers:
            raise CertificateRefused("the certificate does not chain to this partner's trust anchor",
                                     partner=self.partner)
        if not _valid_at(cert, now):
            raise CertificateRefused("the certificate is not valid now", partner=self.partner)
        if not any(_valid_at(a, now) for a in issuers):
            raise CertificateRefused("the trust anchor is not valid now", partner=self.partner)


def _issuers(cert: x509.Certificate, anchors: tuple[x509.Certificate, ...]) -> tuple[x509.Certificate, ...]:
    """The anchors whose key signed ``cert`` (same issuer name is not enough) and that are rooted:
    a self-signed anchor, or an intermediate that chains up to one among the anchors
    (root -> intermediate -> leaf, as PKIoverheid's hierarchy)."""
    return tuple(a for a in _signed_by(cert, anchors) if _rooted(a, anchors, depth=3))


def _signed_by(cert: x509.Certificate, anchors: tuple[x509.Certificate, ...]) -> list[x509.Certificate]:
    found = []
    for anchor in anchors:
        try:
            cert.verify_directly_issued_by(anchor)
        except (ValueError, TypeError, InvalidSignature):  # other issuer name, key type or signature
            continue
        found.append(anchor)
    return found


def _rooted(ca: x509.Certificate, anchors: tuple[x509.Certificate, ...], depth: int) -> bool:
    if ca.issuer == ca.subject and ca in _signed_by(ca, (ca,)):
        return True
    if depth == 0:
        return False
    return any(_rooted(parent, anchors, depth - 1) for parent in _signed_by(ca, anchors) if parent != ca)


def oin_of(cert: x509.Certificate) -> str | None:
    """The OIN in the certificate's subject serialNumber (the PKIoverheid convention), if any."""
    found = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    return str(found[0].value) if len(found) == 1 else None


def _valid_at(cert: x509.Certificate, now: datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def load_trust(partner: str, anchor_files: Sequence[str | Path],
               certificate_files: Sequence[str | Path], oin: str | None = None) -> PartnerTrust:
    """Read a partner's anchors and pinned certificates (each file may hold several PEM certificates)."""
    anchors = tuple(c for f in anchor_files for c in read_certificates(Path(f)))
    certs = tuple(c for f in certificate_files for c in read_certificates(Path(f)))
    if not anchors or not certs:
        raise ConfigError(f"partner {partner} needs at least one trust anchor and one certificate")
    return PartnerTrust(partner=partner, anchors=anchors, certificates=certs,
                        anchor_files=tuple(str(f) for f in anchor_files), oin=oin or None)
