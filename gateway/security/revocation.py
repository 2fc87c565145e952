"""Revocation of the certificates the gateway accepts: CRLs and OCSP (Digikoppeling WT004-WT005).

``Revocation`` holds, in memory, what the gateway knows: the CRL of every distribution point a
pinned certificate names (signature checked against the partner's anchors) and the last OCSP
answer for every certificate that names a responder. It never fetches in the message path:
``gateway.delivery.revocation`` fetches in the background, caches CRLs in the store and feeds
them in here (``put_crl``, ``put_ocsp``, ``failed``).

``check`` (called by ``PartnerTrust.check`` / ``check_peer``, so by every signature check and
every TLS peer check) decides:

- revoked in any CRL or OCSP answer we hold, fresh or not -> ``CertificateRevoked``
  (a revocation is never undone);
- a fresh answer (now <= nextUpdate + grace) that does not list it -> accepted;
- otherwise its status is unknown: the partner's policy decides: ``hard-fail`` ->
  ``CertificateStatusUnknown``; ``soft-fail`` -> accepted, counted (``soft_failures``) and logged
  by the caller of ``on_soft_fail``;
- a certificate that names neither a CRL nor an OCSP responder cannot be checked and is accepted
  (PKIoverheid certificates always name a CRL; ``gateway check-config`` warns about such a pin).

Fetching (``fetch_crl``, ``ask_ocsp``) is plain HTTP, as CRLs and OCSP are served; both are
signed by the CA, which is what makes them trustworthy, and both are checked here.
"""

from __future__ import annotations

import datetime as dt
import functools
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID

from gateway.core.errors import CertificateRevoked, CertificateStatusUnknown
from gateway.security.keys import PartnerTrust, kid

__all__ = ["Revocation", "CrlState", "crl_urls", "ocsp_urls", "fetch_crl", "ask_ocsp", "parse_crl"]


def crl_urls(cert: x509.Certificate) -> list[str]:
    """The HTTP(S) CRL distribution points a certificate names."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    return [n.value for p in points for n in (p.full_name or [])
            if isinstance(n, x509.UniformResourceIdentifier) and n.value.startswith(("http://", "https://"))]


def ocsp_urls(cert: x509.Certificate) -> list[str]:
    """The OCSP responders a certificate names (Authority Information Access)."""
    try:
        access = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return []
    return [a.access_location.value for a in access if a.access_method == AuthorityInformationAccessOID.OCSP
            and isinstance(a.access_location, x509.UniformResourceIdentifier)]


@functools.lru_cache(maxsize=256)
def _pointers(cert: x509.Certificate) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """A certificate's CRL and OCSP URLs and kid: fixed by its bytes, read once instead of at every
    check (parsing the extensions was a quarter of an outbound call's CPU, issue 22)."""
    return tuple(crl_urls(cert)), tuple(ocsp_urls(cert)), kid(cert)


_verify: ssl.SSLContext | None = None


def _tls() -> ssl.SSLContext:
    """httpx's default verification (system/certifi roots), made once: making it per fetch (as
    ``httpx.get`` does) cost about 10 ms of CPU each time, also for plain-http distribution points."""
    global _verify
    if _verify is None:
        _verify = httpx.create_ssl_context()
    return _verify


def fetch_crl(url: str, timeout_seconds: float) -> bytes:
    """GET a CRL (DER or PEM); raises httpx.HTTPError or ValueError (not 200)."""
    response = httpx.get(url, timeout=timeout_seconds, follow_redirects=False, verify=_tls())
    if response.status_code != 200:
        raise ValueError(f"HTTP {response.status_code}")
    return response.content


def parse_crl(data: bytes) -> x509.CertificateRevocationList:
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


def ask_ocsp(url: str, cert: x509.Certificate, issuer: x509.Certificate, timeout_seconds: float) -> bytes:
    """POST an OCSP request for ``cert`` (RFC 6960, sha256 CertID); returns the DER response."""
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256()).build()
    response = httpx.post(url, content=request.public_bytes(serialization.Encoding.DER), timeout=timeout_seconds,
                          headers={"Content-Type": "application/ocsp-request"}, verify=_tls())
    if response.status_code != 200:
        raise ValueError(f"HTTP {response.status_code}")
    return response.content


@dataclass(frozen=True)
class CrlState:
    """One distribution point: its last good CRL, and the last failure if the last fetch failed."""

    url: str
    revoked: frozenset[int]
    next_update: float | None
    fetched_at: float | None
    error: str | None = None
    attempted_at: float | None = None


@dataclass(frozen=True)
class _Ocsp:
    status: str  # "good" | "revoked" | "unknown"
    next_update: float


class Revocation:
    """What the gateway knows about revocation; thread-safe; fed by the background refresher."""

    def __init__(self, trusts: Iterable[PartnerTrust], *, policies: Mapping[str, str], grace_seconds: float,
                 on_soft_fail: Callable[[str, str, str], None] | None = None) -> None:
        self.trusts = tuple(trusts)
        self.policies = dict(policies)
        self.grace_seconds = grace_seconds
        self.on_soft_fail = on_soft_fail
        self._crls: dict[str, CrlState] = {}
        self._ocsp: dict[str, _Ocsp] = {}
        self._lock = threading.Lock()
        self._issuers = {a.subject.public_bytes(): a for t in self.trusts for a in t.anchors}
        #: Called after ``retarget`` (the refresher's wake-up: new certificates to watch now).
        self.on_retarget: Callable[[], None] | None = None

    def retarget(self, trusts: Iterable[PartnerTrust], policies: Mapping[str, str]) -> None:
        """New pins, anchors and policies after a reload (gateway/reload.py); what is known of
        CRLs and OCSP answers stays, and the refresher watches the new certificates from its next round."""
        trusts = tuple(trusts)
        with self._lock:
            self.trusts = trusts
            self.policies = dict(policies)
            self._issuers = {a.subject.public_bytes(): a for t in trusts for a in t.anchors}
        if self.on_retarget is not None:
            self.on_retarget()

    # -------------------------------------------------------------- what to watch

    def watched_crls(self) -> list[str]:
        return sorted({u for t in self.trusts for c in t.certificates for u in _pointers(c)[0]})

    def watched_ocsp(self) -> list[tuple[str, x509.Certificate, x509.Certificate]]:
        """(responder, certificate, issuer) for every pinned certificate that names a responder."""
        out: list[tuple[str, x509.Certificate, x509.Certificate]] = []
        for t in self.trusts:
            for c in t.certificates:
                issuer = self.issuer_of(c)
                out.extend((u, c, issuer) for u in _pointers(c)[1] if issuer is not None)
        return out

    def issuer_of(self, cert: x509.Certificate) -> x509.Certificate | None:
        return self._issuers.get(cert.issuer.public_bytes())

    # -------------------------------------------------------------- feeding

    def put_crl(self, url: str, data: bytes, fetched_at: float) -> CrlState:
        """Take a fetched CRL in, after checking it is signed by one of the anchors; raises ValueError."""
        crl = parse_crl(data)
        issuer = self._issuers.get(crl.issuer.public_bytes())
        if issuer is None or not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
            raise ValueError("the CRL is not signed by a configured trust anchor")
        next_update = crl.next_update_utc.timestamp() if crl.next_update_utc else None
        state = CrlState(url, frozenset(r.serial_number for r in crl), next_update, fetched_at)
        with self._lock:
            self._crls[url] = state
        return state

    def failed(self, url: str, error: str, at: float) -> None:
        with self._lock:
            old = self._crls.get(url) or CrlState(url, frozenset(), None, None)
            self._crls[url] = CrlState(url, old.revoked, old.next_update, old.fetched_at, error, at)

    def put_ocsp(self, cert: x509.Certificate, data: bytes, issuer: x509.Certificate, now: float) -> str:
        """Take an OCSP answer in after checking it; returns the status; raises ValueError."""
        response = ocsp.load_der_ocsp_response(data)
        if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise ValueError(f"OCSP status {response.response_status.name}")
        if response.serial_number != cert.serial_number:
            raise ValueError("the OCSP answer is about another certificate")
        _verify_signed_by(issuer, response)
        status = response.certificate_status.name.lower()
        next_update = response.next_update_utc.timestamp() if response.next_update_utc else now
        with self._lock:
            self._ocsp[kid(cert)] = _Ocsp(status, next_update)
        return status

    def crl_states(self) -> list[CrlState]:
        with self._lock:
            return sorted(self._crls.values(), key=lambda s: s.url)

    # -------------------------------------------------------------- the check

    def check(self, cert: x509.Certificate, trust: PartnerTrust, now: dt.datetime) -> None:
        status = self.status(cert, now.timestamp())
        if status == "revoked":
            raise CertificateRevoked("the certificate has been revoked by its CA", partner=trust.partner,
                                     stage="security")
        if status != "unknown":
            return
        if self.policies.get(trust.partner, "hard-fail") == "hard-fail":
            raise CertificateStatusUnknown("the certificate's revocation status is unknown (no fresh CRL or "
                                           "OCSP answer)", partner=trust.partner, stage="security")
        if self.on_soft_fail is not None:
            self.on_soft_fail(trust.partner, kid(cert), "revocation status unknown; accepted (soft-fail)")

    def status(self, cert: x509.Certificate, now: float) -> str:
        """"revoked", "good", "unchecked" (names no CRL or responder) or "unknown"."""
        crls, responders, cert_kid = _pointers(cert)
        if not crls and not responders:
            return "unchecked"
        with self._lock:
            answer = self._ocsp.get(cert_kid) if responders else None
            states = [self._crls.get(u) for u in crls]
        if answer is not None and answer.status == "revoked":
            return "revoked"
        if any(s is not None and cert.serial_number in s.revoked for s in states):
            return "revoked"
        if answer is not None and answer.status == "good" and now <= answer.next_update + self.grace_seconds:
            return "good"
        if any(s is not None and s.fetched_at is not None and self._fresh(s, now) for s in states):
            return "good"
        return "unknown"

    def _fresh(self, state: CrlState, now: float) -> bool:
        return state.next_update is None or now <= state.next_update + self.grace_seconds


def _verify_signed_by(issuer: x509.Certificate, response: ocsp.OCSPResponse) -> None:
    """Raise ValueError unless the issuer's key signed the OCSP answer (RSA PKCS#1 v1.5 or ECDSA)."""
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    key = issuer.public_key()
    algorithm = response.signature_hash_algorithm
    if algorithm is None:
        raise ValueError("the OCSP answer names no hash algorithm")
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(response.signature, response.tbs_response_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(algorithm))
        else:
            raise ValueError("the issuer's key is neither RSA nor EC")
    except InvalidSignature as exc:
        raise ValueError("the OCSP answer is not signed by the certificate's issuer") from exc
