"""zeep plumbing for profile ind-wus: our own WS-Addressing + WS-Security, and a recording transport.

zeep is the WSDL/types client here; its own WS-Security (``zeep.wsse.Signature``) signs only
Body and Timestamp with SHA-1 by default and does not check which parts were signed (NOTES.md).
``IndWsse`` plugs into zeep's ``wsse=`` hook instead: zeep calls ``apply(envelope, headers)``
on the way out and ``verify(envelope)`` on the way in.

On the way out we keep only zeep's serialized payload and rebuild the envelope with
``gateway.wire.soap.build_envelope`` (zeep's own WS-Addressing plugin also runs, because the WSDL
names ``wsam:Action``; its random MessageID must not be what we send), then sign it with
``gateway.security.wsse.sign_envelope``. On the way in we verify with ``verify_envelope`` and
check ``RelatesTo`` against the MessageID we sent and the signed ``wsse11:SignatureConfirmation``
against the ``SignatureValue`` we sent (contracts revision 2, Digikoppeling WB014). The verified result (what signxml returned
as signed) is kept per thread in ``last_verified`` so that callers read the payload from it,
not from zeep's own look-up in the document.

SOAP faults of the gateway are unsigned (``gateway.wire.soap.fault``): they are left to zeep, which
raises ``zeep.exceptions.Fault``; a fault is never taken as an acceptance.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence

import requests
from lxml import etree
from zeep.transports import Transport

from adapters.ind import codec
from gateway.core.clock import Clock, SystemClock
from gateway.core.errors import MalformedInput, SignatureInvalid
from gateway.security import wsse
from gateway.security.keys import KeyPair, PartnerTrust
from gateway.wire import soap
from gateway.wire.xmlsafe import XSD_DIR

__all__ = ["IND_NS", "WSDL", "IndWsse", "RecordingTransport", "tls_session", "close_session"]

IND_NS = codec.IND_NS
WSDL = str(XSD_DIR / "ind-vergunningmelding-v1.wsdl")

_FAULT = f"{{{soap.SOAP_NS}}}Fault"


class IndWsse:
    """zeep ``wsse`` object: sign requests, verify signed responses (``trust`` None: no checks)."""

    def __init__(self, key: KeyPair | None, trust: PartnerTrust | None, *, clock: Clock | None = None,
                 request_parts: Sequence[str] = wsse.REQUEST_PARTS,
                 response_parts: Sequence[str] = wsse.CONFIRMED_RESPONSE_PARTS) -> None:
        self.key = key
        self.trust = trust
        self.clock = clock or SystemClock()
        self.request_parts = tuple(request_parts)
        self.response_parts = tuple(response_parts)
        self._local = threading.local()

    @property
    def last_verified(self) -> wsse.VerifiedEnvelope | None:
        """The verified response of this thread's last call (None when unchecked or a fault)."""
        return getattr(self._local, "verified", None)

    @property
    def last_sent_payload(self) -> etree._Element | None:
        """The payload element exactly as this thread's last request carried it."""
        return getattr(self._local, "sent_payload", None)

    @property
    def last_payload(self) -> etree._Element | None:
        """The response payload of this thread's last call: the verified one when checked."""
        return getattr(self._local, "payload", None)

    def apply(self, envelope: etree._Element, headers: dict[str, str]) -> tuple[etree._Element, dict[str, str]]:
        payload = _zeep_payload(envelope)
        action = headers.get("SOAPAction", "").strip('"')
        message_id = _message_id(payload)
        own = soap.build_envelope(payload, to=_zeep_to(envelope), action=action, message_id=message_id)
        self._local.sent_message_id = message_id
        self._local.sent_signature_value = None
        self._local.verified = None
        self._local.payload = None
        if self.key is not None:
            own = etree.fromstring(wsse.sign_envelope(own, self.key, parts=self.request_parts,
                                                      now=self.clock.now()))
            self._local.sent_signature_value = wsse.signature_value(own)
        self._local.sent_payload = _zeep_payload(own)
        return own, headers

    def verify(self, envelope: etree._Element) -> None:
        body = envelope.find(f"{{{soap.SOAP_NS}}}Body")
        if body is not None and body.find(_FAULT) is not None:
            return
        if self.trust is None:
            self._local.payload = soap.split(envelope).payload
            return
        verified = wsse.verify_envelope(envelope, self.trust, parts=self.response_parts, now=self.clock.now())
        if verified.relates_to != getattr(self._local, "sent_message_id", None):
            raise SignatureInvalid("wsa:RelatesTo does not name the request's MessageID", stage="security")
        sent_value = getattr(self._local, "sent_signature_value", None)
        # WB014: the answer confirms the signature of this very request (the parts make it signed).
        if "SignatureConfirmation" in self.response_parts and verified.confirmation != sent_value:
            raise SignatureInvalid("the SignatureConfirmation does not carry the request's SignatureValue",
                                   stage="security")
        self._local.verified = verified
        self._local.payload = verified.payload


def _zeep_payload(envelope: etree._Element) -> etree._Element:
    body = envelope.find(f"{{{soap.SOAP_NS}}}Body")
    children = [c for c in body if isinstance(c.tag, str)] if body is not None else []
    if len(children) != 1:
        raise MalformedInput("zeep built a Body without exactly one element", stage="sending")
    return children[0]


def _zeep_to(envelope: etree._Element) -> str:
    # zeep's WS-Addressing plugin puts the port address (the overridden one) into wsa:To.
    to = envelope.findtext(f"{{{soap.SOAP_NS}}}Header/{{{soap.WSA_NS}}}To")
    if not to:
        raise ValueError("zeep gave no wsa:To; is the operation's wsam:Action missing?")
    return to.strip()


def _message_id(payload: etree._Element) -> str:
    # The profile: for OntvangMelding the MessageID's UUID is the meldingId, so a retry repeats it.
    if payload.tag == f"{{{IND_NS}}}VergunningMelding":
        melding_id = payload.findtext(f"{{{IND_NS}}}meldingId")
        if melding_id:
            return "urn:uuid:" + melding_id.strip()
    return f"urn:uuid:{uuid.uuid4()}"


class RecordingTransport(Transport):
    """zeep's requests transport, remembering this thread's last HTTP status and body."""

    def __init__(self, session: requests.Session, timeout_seconds: float = 30.0) -> None:
        super().__init__(session=session, timeout=timeout_seconds, operation_timeout=timeout_seconds)
        self._local = threading.local()

    def post(self, address, message, headers):
        self._local.last = None
        response = super().post(address, message, headers)
        self._local.last = (response.status_code, response.content)
        return response

    @property
    def last(self) -> tuple[int, bytes] | None:
        return getattr(self._local, "last", None)


def tls_session(key: KeyPair | None, ca_file: str | None) -> requests.Session:
    """A requests session for mutual TLS: our certificate and key, and the anchor to check the server."""
    session = requests.Session()
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (and proxy variables) override the
    # session's own ``verify``: the partner's anchor must win, so ignore the environment.
    session.trust_env = False
    if key is not None:
        session.cert = (key.cert_file, key.key_file)
    session.verify = ca_file if ca_file else True
    return session


def close_session(session: requests.Session) -> None:
    """Close the session and really close its sockets.

    urllib3 2.x's ``PoolManager.clear()`` (what ``Session.close`` calls) forgets its pools without
    closing them; their sockets then stay open until garbage collection, which an exception's
    traceback can postpone indefinitely (a TLS server's graceful shutdown waits for them).
    """
    for adapter in session.adapters.values():
        manager = getattr(adapter, "poolmanager", None)
        if manager is None:
            continue
        for key in list(manager.pools.keys()):
            pool = manager.pools.get(key)
            if pool is not None:
                pool.close()
    session.close()
