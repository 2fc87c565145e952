"""The sandbox CA on loopback: it serves the CRL and answers OCSP for a ``gateway pki init`` directory.

Never for production. The revoked certificates are listed in ``DIR/revoked.json`` (``revoke``,
what ``gateway pki revoke NAME`` calls); the CRL and the OCSP answers are made afresh from it on
every request and signed with the issuing CA's key (``ca-key.pem``), so a revocation shows at
the next fetch without restarting anything. ``next_update_seconds`` is the CRL's and the OCSP
answers' validity (nextUpdate = now + it): the gateway fetches again then.

    GET  /crl/ca.crl   the CRL (DER)
    POST /ocsp         an OCSP request (DER) -> a signed OCSP answer (DER): good or revoked
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from gateway.security import pki

__all__ = ["SandboxCA", "revoke", "revoked_serials"]

_INDEX = "revoked.json"


def revoke(directory: Path, name: str, *, now: dt.datetime | None = None) -> int:
    """Revoke the sandbox certificate ``DIR/<name>.pem``; returns its serial number."""
    directory = Path(directory)
    path = directory / f"{name}.pem"
    if not path.is_file():
        raise FileNotFoundError(f"no certificate {path}")
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    index = _read_index(directory)
    at = (now or dt.datetime.now(dt.UTC)).timestamp()
    index.setdefault(str(cert.serial_number), {"name": name, "revoked_at": at})
    (directory / _INDEX).write_text(json.dumps(index, indent=2))
    return cert.serial_number


def revoked_serials(directory: Path) -> dict[int, float]:
    """serial -> time of revocation (epoch seconds)."""
    return {int(k): float(v["revoked_at"]) for k, v in _read_index(Path(directory)).items()}


def _read_index(directory: Path) -> dict[str, Any]:
    path = directory / _INDEX
    return json.loads(path.read_text()) if path.exists() else {}


class SandboxCA:
    """The CA of a sandbox PKI directory as an ASGI app (serve it with ``serve_in_thread``)."""

    def __init__(self, directory: Path, *, next_update_seconds: float = 60.0) -> None:
        self.directory = Path(directory)
        self.next_update_seconds = next_update_seconds
        #: How many CRLs and OCSP answers were served (tests see the gateway's fetches).
        self.served = {"crl": 0, "ocsp": 0}
        #: False plays a CA that is down: every request gets 503.
        self.up = True

    # The CA's files are read when first needed: the CA serves before `pki init` wrote them (the
    # certificates name its URL, so it must listen first).
    @property
    def ca_cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate((self.directory / "ca.pem").read_bytes())

    @property
    def ca_key(self) -> Any:
        return pki.ca_key(self.directory / "ca-key.pem")

    def crl(self, now: dt.datetime | None = None) -> bytes:
        now = now or dt.datetime.now(dt.UTC)
        ca_cert, ca_key = self.ca_cert, self.ca_key
        builder = (x509.CertificateRevocationListBuilder()
                   .issuer_name(ca_cert.subject)
                   .last_update(now - dt.timedelta(seconds=1))
                   .next_update(now + dt.timedelta(seconds=self.next_update_seconds)))
        for serial, at in revoked_serials(self.directory).items():
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial)
                .revocation_date(dt.datetime.fromtimestamp(at, dt.UTC)).build())
        return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def ocsp(self, request_der: bytes, now: dt.datetime | None = None) -> bytes:
        now = now or dt.datetime.now(dt.UTC)
        try:
            request = ocsp.load_der_ocsp_request(request_der)
        except ValueError:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.MALFORMED_REQUEST).public_bytes(serialization.Encoding.DER)
        ca_cert, ca_key = self.ca_cert, self.ca_key
        revoked = revoked_serials(self.directory)
        at = revoked.get(request.serial_number)
        status = ocsp.OCSPCertStatus.REVOKED if at is not None else ocsp.OCSPCertStatus.GOOD
        cert = self._issued(request.serial_number, ca_cert)
        if cert is None:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.UNAUTHORIZED).public_bytes(serialization.Encoding.DER)
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=cert, issuer=ca_cert, algorithm=hashes.SHA256(), cert_status=status,
            this_update=now - dt.timedelta(seconds=1), next_update=now + dt.timedelta(seconds=self.next_update_seconds),
            revocation_time=dt.datetime.fromtimestamp(at, dt.UTC) if at is not None else None,
            revocation_reason=None).responder_id(ocsp.OCSPResponderEncoding.HASH, ca_cert)
        return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def _issued(self, serial: int, ca_cert: x509.Certificate) -> x509.Certificate | None:
        """The certificate with this serial that this CA issued (from the directory's files)."""
        for path in sorted(self.directory.glob("*.pem")):
            if path.name.endswith("-key.pem"):
                continue
            try:
                cert = x509.load_pem_x509_certificate(path.read_bytes())
            except ValueError:
                continue
            if cert.serial_number == serial and cert.issuer == ca_cert.subject:
                return cert
        return None

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if not self.up:
            await _answer(send, 503, "text/plain", b"the sandbox CA is down")
        elif scope["method"] == "GET" and scope["path"] == "/crl/ca.crl":
            self.served["crl"] += 1
            await _answer(send, 200, "application/pkix-crl", self.crl())
        elif scope["method"] == "POST" and scope["path"] == "/ocsp":
            self.served["ocsp"] += 1
            await _answer(send, 200, "application/ocsp-response", self.ocsp(body))
        else:
            await _answer(send, 404, "text/plain", b"no such endpoint")


async def _answer(send: Any, status: int, content_type: str, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
