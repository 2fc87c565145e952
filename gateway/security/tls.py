"""TLS contexts for mutual TLS with the partners (TLS 1.2 or newer, both sides authenticated).

The server context requires a client certificate that chains to one of the given anchors; give
each partner's listener only that partner's anchor and the listener identifies the partner.
The client context presents our certificate and checks the server's chain and host name.
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Sequence

from gateway.core.errors import CertificateRefused
from gateway.security.keys import KeyPair
from gateway.wire.server import PeerCertProtocol

__all__ = ["server_context", "client_context", "PeerCertH11Protocol", "server_certificate", "unpinned_server",
           "unpinned_certificate", "server_refusal"]

# The protocol that puts the client certificate into the ASGI scope lives in gateway.wire.server;
# this is the name docs/DESIGN.md gives it.
PeerCertH11Protocol = PeerCertProtocol


def server_context(own: KeyPair, client_anchor_files: Sequence[str]) -> ssl.SSLContext:
    """A server context that refuses clients without a certificate from ``client_anchor_files``."""
    if not client_anchor_files:
        raise ValueError("a server context needs at least one client trust anchor")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(own.cert_file, own.key_file)
    for anchor in client_anchor_files:
        context.load_verify_locations(cafile=str(anchor))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(own: KeyPair, server_anchor_files: Sequence[str]) -> ssl.SSLContext:
    """A client context presenting our certificate and verifying the server against the anchors."""
    if not server_anchor_files:
        raise ValueError("a client context needs at least one server trust anchor")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(own.cert_file, own.key_file)
    for anchor in server_anchor_files:
        context.load_verify_locations(cafile=str(anchor))
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    return context


def server_certificate(response: object) -> bytes | None:
    """The DER certificate the server presented for this httpx response (None over plain HTTP)."""
    extensions = getattr(response, "extensions", {}) or {}
    stream = extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    # Positional argument: httpcore hands out the C-level _SSLSocket, which takes no keywords.
    return ssl_object.getpeercert(True) if ssl_object is not None else None


def unpinned_server(response: object, trust: object | None) -> str | None:
    """Why the server is not the partner we meant to call, or None when it is.

    The CA check in the TLS context accepts any certificate from the partner's anchor; the
    partner's own certificate is pinned here, as it is for signatures.
    """
    if trust is None:
        return None
    return unpinned_certificate(server_certificate(response), trust)


def unpinned_certificate(der: bytes | None, trust: object | None) -> str | None:
    """Why this DER server certificate is not acceptable for the partner, or None when it is.

    The one test behind every outbound call's pin: httpx answers (``unpinned_server``) and the
    requests session of IND's feed client (checked as the connection is made). Besides the pin:
    the partner's OIN in the certificate and its revocation status (``PartnerTrust.check_peer``);
    the reason starts with the refusal's code (``CERT_REVOKED: ...``).
    """
    refusal = server_refusal(der, trust)
    return None if refusal is None else f"{refusal.code}: {refusal.message}"


def server_refusal(der: bytes | None, trust: object | None) -> CertificateRefused | None:
    """The refusal of this DER server certificate for the partner, or None when it is acceptable."""
    if trust is None:
        return None
    if der is None:
        return CertificateRefused("no TLS server certificate", stage="sending")
    if not trust.matches(der):  # type: ignore[attr-defined]
        return CertificateRefused("the TLS server certificate is not one pinned for this partner", stage="sending")
    try:
        trust.check_peer(der, dt.datetime.now(dt.UTC))  # type: ignore[attr-defined]
    except CertificateRefused as exc:
        return exc
    return None
