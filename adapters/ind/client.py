"""The gateway's catch-up client for IND's ``HaalMeldingen`` (profile ind-wus).

zeep builds the request from the vendored WSDL (service ``MeldingenFeedService``, its address
replaced by the configured URL); ``adapters.ind.zeep_wsse.IndWsse`` signs it and verifies IND's
signed answer. The notifications come back as raw ``VergunningMelding`` element bytes, taken
from the verified Body, so the core runs them through the same checks as pushed ones.

IND's TLS server certificate is pinned like every other partner's on outbound calls: the CA
check accepts any certificate from IND's trust anchor, so each new connection's certificate
must also be one of IND's pinned certificates (``gateway.security.tls.unpinned_certificate``),
checked as the connection is made, before a request is sent on it.
"""

from __future__ import annotations

import ssl
import threading
import time
from typing import Any

import requests
import urllib3
import zeep
import zeep.exceptions
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPSConnection

from adapters.ind import codec
from adapters.ind.zeep_wsse import IND_NS, WSDL, IndWsse, RecordingTransport, close_session, tls_session
from gateway.core.clock import Clock, SystemClock
from gateway.core.errors import CertificateRefused, TransientDelivery
from gateway.core.models import IndFeedPage
from gateway.security import tls
from gateway.security.keys import KeyPair, PartnerTrust
from gateway.wire import xmlsafe

__all__ = ["IndFeedClient", "PinnedAdapter"]

_WSDL_NS = "urn:nl:ind:gegevenslevering:inburgering:v1:wsdl"


class IndFeedClient:
    """``feed_url`` is IND's MeldingenFeed endpoint (config); ``ind`` verifies IND's answers.

    Raises ``TransientDelivery`` for no answer, a timeout, an HTTP 5xx or a SOAP fault (asking
    again later is harmless), and the ``SecurityRefused`` family when IND's answer does not
    verify or the server's TLS certificate is not one pinned for IND (``CertificateRefused``):
    that is not a network hiccup but something to alarm on.
    """

    partner = "ind"

    def __init__(self, feed_url: str, own: KeyPair | None, ind: PartnerTrust | None, *,
                 ca_file: str | None = None, timeout_seconds: float = 30.0, clock: Clock | None = None,
                 max_session_seconds: float | None = None) -> None:
        self.feed_url = feed_url
        self.clock = clock or SystemClock()
        self.session = tls_session(own, ca_file)
        self._pin: PinnedAdapter | None = None
        if ind is not None:
            self._pin = PinnedAdapter(ind, max_session_seconds=max_session_seconds)
            self.session.mount("https://", self._pin)
        self.wsse = IndWsse(own, ind, clock=self.clock)
        self.transport = RecordingTransport(self.session, timeout_seconds)
        self._service = None  # built on first use: reading the WSDL is file I/O

    def haal_meldingen(self, vanaf: int, maximaal: int) -> IndFeedPage:
        service = self._feed_service()
        if self._pin is not None:
            self._pin.problem = None
        try:
            service.HaalMeldingen(vanafVolgnummer=vanaf, maximaalAantal=maximaal)
        except zeep.exceptions.Fault as fault:
            raise TransientDelivery(f"IND answered with a SOAP fault ({fault.code})", partner="ind",
                                    http_status=self._status(), stage="sending") from fault
        except (requests.RequestException, zeep.exceptions.Error) as exc:
            refusal = self._pin.problem if self._pin is not None else None
            if refusal is not None:
                # The refusal's own class and code (CERT_REVOKED, OIN_TLS_CERTIFICATE, CERTIFICATE).
                refusal.message = f"IND's feed at {self.feed_url}: {refusal.message}"
                refusal.partner = "ind"
                raise refusal from exc
            raise TransientDelivery(f"no usable answer from IND ({type(exc).__name__})", partner="ind",
                                    http_status=self._status(), stage="sending") from exc
        payload = self.wsse.last_payload
        if payload is None or payload.tag != f"{{{IND_NS}}}HaalMeldingenAntwoord":
            raise TransientDelivery("IND's answer is not a HaalMeldingenAntwoord", partner="ind", stage="receiving")
        xmlsafe.validate(payload, xmlsafe.IND_XSD, partner="ind")
        return codec.decode_haal_antwoord(payload)

    def close(self) -> None:
        close_session(self.session)

    def _feed_service(self):
        if self._service is None:
            client = zeep.Client(WSDL, wsse=self.wsse, transport=self.transport)
            self._service = client.create_service(f"{{{_WSDL_NS}}}MeldingenFeedBinding", self.feed_url)
        return self._service

    def _status(self) -> int | None:
        last = self.transport.last
        return last[0] if last else None


class PinnedAdapter(HTTPAdapter):
    """requests' transport adapter whose HTTPS connections must present a pinned certificate.

    The check runs in the connection's ``connect``, right after the TLS handshake (which has
    already checked the chain and host name), so nothing is sent to a server that is not the
    partner, nor to one whose certificate lacks IND's OIN or is revoked. A refused connection
    raises ``ssl.SSLCertVerificationError`` (requests' ``SSLError``); ``problem`` is the refusal
    (``CertificateRefused`` or a subclass), for this thread's last call.
    """

    def __init__(self, trust: PartnerTrust, *, max_session_seconds: float | None = None, **kwargs: Any) -> None:
        self.trust = trust
        #: WT008: a connection older than this is closed before a request and made afresh.
        self.max_session_seconds = max_session_seconds
        self._local = threading.local()
        super().__init__(**kwargs)

    @property
    def problem(self) -> CertificateRefused | None:
        return getattr(self._local, "problem", None)

    @problem.setter
    def problem(self, value: CertificateRefused | None) -> None:
        self._local.problem = value

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        adapter = self

        class PinnedConnection(HTTPSConnection):
            def connect(self) -> None:
                super().connect()
                self._born = time.monotonic()
                self._check()

            def request(self, *args: Any, **kwargs: Any) -> None:
                limit = adapter.max_session_seconds
                if self.sock is not None and limit is not None and time.monotonic() - self._born > limit:
                    self.close()  # aged (WT008): http.client connects again for this request
                # Again before every request on a kept-alive connection (a revocation since).
                if self.sock is not None:
                    self._check()
                super().request(*args, **kwargs)

            def _check(self) -> None:
                sock = self.sock
                der = sock.getpeercert(True) if isinstance(sock, ssl.SSLSocket) else None
                problem = tls.server_refusal(der, adapter.trust)
                if problem is not None:
                    adapter.problem = problem
                    self.close()
                    raise ssl.SSLCertVerificationError(f"{problem.code}: {problem.message}")

        class PinnedPool(urllib3.HTTPSConnectionPool):
            ConnectionCls = PinnedConnection

        self.poolmanager.pool_classes_by_scheme = {"http": urllib3.HTTPConnectionPool, "https": PinnedPool}
