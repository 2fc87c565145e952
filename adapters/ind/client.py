"""The gateway's catch-up client for IND's ``HaalMeldingen`` (profile ind-wus).

zeep builds the request from the vendored WSDL (service ``MeldingenFeedService``, its address
replaced by the configured URL); ``adapters.ind.zeep_wsse.IndWsse`` signs it and verifies IND's
signed answer. The notifications come back as raw ``VergunningMelding`` element bytes, taken
from the verified Body, so the core runs them through the same checks as pushed ones.
"""

from __future__ import annotations

import requests
import zeep
import zeep.exceptions

from adapters.ind import codec
from adapters.ind.zeep_wsse import IND_NS, WSDL, IndWsse, RecordingTransport, close_session, tls_session
from gateway import xmlsafe
from gateway.clock import Clock, SystemClock
from gateway.errors import TransientDelivery
from gateway.models import IndFeedPage
from gateway.security.keys import KeyPair, PartnerTrust

__all__ = ["IndFeedClient"]

_WSDL_NS = "urn:nl:ind:gegevenslevering:inburgering:v1:wsdl"


class IndFeedClient:
    """``feed_url`` is IND's MeldingenFeed endpoint (config); ``ind`` verifies IND's answers.

    Raises ``TransientDelivery`` for no answer, a timeout, an HTTP 5xx or a SOAP fault (asking
    again later is harmless), and the ``SecurityRefused`` family when IND's answer does not
    verify: that is not a network hiccup but something to alarm on.
    """

    partner = "ind"

    def __init__(self, feed_url: str, own: KeyPair | None, ind: PartnerTrust | None, *,
                 ca_file: str | None = None, timeout_seconds: float = 30.0, clock: Clock | None = None) -> None:
        self.feed_url = feed_url
        self.clock = clock or SystemClock()
        self.session = tls_session(own, ca_file)
        self.wsse = IndWsse(own, ind, clock=self.clock)
        self.transport = RecordingTransport(self.session, timeout_seconds)
        self._service = None  # built on first use: reading the WSDL is file I/O

    def haal_meldingen(self, vanaf: int, maximaal: int) -> IndFeedPage:
        service = self._feed_service()
        try:
            service.HaalMeldingen(vanafVolgnummer=vanaf, maximaalAantal=maximaal)
        except zeep.exceptions.Fault as fault:
            raise TransientDelivery(f"IND answered with a SOAP fault ({fault.code})", partner="ind",
                                    http_status=self._status(), stage="sending") from fault
        except (requests.RequestException, zeep.exceptions.Error) as exc:
            raise TransientDelivery(f"no usable answer from IND ({type(exc).__name__})", partner="ind",
                                    http_status=self._status(), stage="sending") from exc
        payload = self.wsse.last_payload
        if payload is None or payload.tag != f"{{{IND_NS}}}HaalMeldingenAntwoord":
            raise TransientDelivery("IND's answer is not a HaalMeldingenAntwoord", partner="ind", stage="receiving")
        xmlsafe.validate(payload, xmlsafe.IND_XSD, partner="ind")
        return codec.decode_haal_antwoord(payload)

    def close(self) -> None:
        close_session(self.session)

    def _feed_service(self):  # type: ignore[no-untyped-def]
        if self._service is None:
            client = zeep.Client(WSDL, wsse=self.wsse, transport=self.transport)
            self._service = client.create_service(f"{{{_WSDL_NS}}}MeldingenFeedBinding", self.feed_url)
        return self._service

    def _status(self) -> int | None:
        last = self.transport.last
        return last[0] if last else None
