"""IND's side of profile ind-wus, for the sandbox and the tests.

- ``generate_meldingen``: realistic, schema-valid notifications, deterministic per seed and ``now``.
- ``IndSimulator.push`` / ``push_all``: IND calling the gateway's ``OntvangMelding`` with zeep
  (vendored WSDL) and our own WS-Addressing + WS-Security (``adapters.ind.zeep_wsse``), over
  mutual TLS with a requests session: zeep's synchronous client only takes a requests-based
  transport (its httpx transport is async-only), and requests takes ``cert=(cert, key)``.
- ``IndSimulator.push_raw``: exact bytes over the same TLS session, for hostile-input tests.
- ``IndSimulator.app``: IND's ``HaalMeldingen`` feed (Starlette), serving every notification
  issued so far, including pushes that were dropped on purpose.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import requests
import zeep
import zeep.exceptions
from lxml import etree
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.ind import codec
from adapters.ind.zeep_wsse import IND_NS, WSDL, IndWsse, RecordingTransport, close_session, tls_session
from adapters.testpeople import random_bsn
from gateway.core.clock import Clock, SystemClock, iso
from gateway.core.errors import (
    CertificateRefused,
    GatewayError,
    InboundRefused,
    MalformedInput,
    SchemaInvalid,
)
from gateway.core.models import IndMelding, IndPersoon, IndVerblijf
from gateway.security import wsse
from gateway.security.keys import KeyPair, PartnerTrust
from gateway.wire import soap, xmlsafe
from gateway.wire.server import client_cert_der

__all__ = [
    "ACTION_ONTVANG",
    "ACTION_HAAL",
    "ACTION_HAAL_RESPONSE",
    "generate_meldingen",
    "PushFaults",
    "PushResult",
    "IndSimulator",
]

ACTION_ONTVANG = codec.ACTION_ONTVANG
ACTION_HAAL = codec.ACTION_HAAL
ACTION_HAAL_RESPONSE = codec.ACTION_HAAL_RESPONSE
_WSDL_NS = "urn:nl:ind:gegevenslevering:inburgering:v1:wsdl"
_ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"
_SOAP_MEDIA = "text/xml; charset=utf-8"


# ---------------------------------------------------------------- generator

@dataclass(frozen=True)
class _Scenario:
    documentsoort: str
    doelen: tuple[str, ...]
    grondslag: str
    unierecht: tuple[str, ...] = ()
    nationaliteiten: tuple[str, ...] = ()
    years: int | None = 5  # validity; None for a permanent right


_THIRD = ("SYR", "ERI", "AFG", "MAR", "IRQ", "IND", "CHN", "USA", "BRA", "UKR", "NGA", "IRN", "SOM", "YEM")
_EU = ("DEU", "POL", "ESP", "ITA", "ROU", "BGR", "FRA", "PRT", "GRC", "HUN")
_SCENARIOS: tuple[tuple[_Scenario, int], ...] = (
    (_Scenario("VERBLIJFSVERGUNNING_REGULIER_BEPAALDE_TIJD", ("GEZINSHERENIGING", "GEZINSVORMING"),
               "VW2000_ART8_A", nationaliteiten=_THIRD), 24),
    (_Scenario("VERBLIJFSVERGUNNING_ASIEL_BEPAALDE_TIJD", ("ASIEL", "NAREIS_ASIEL"), "VW2000_ART8_C",
               nationaliteiten=("SYR", "ERI", "AFG", "YEM", "IRN", "SOM", "XXA", "XXB")), 20),
    # Zambrano / Chavez-Vilchez: a third-country parent of a Dutch minor child, under art. 8(e).
    (_Scenario("EU_VERBLIJFSDOCUMENT", ("VERBLIJF_BIJ_MINDERJARIG_NEDERLANDS_KIND",), "VW2000_ART8_E",
               ("ZAMBRANO", "CHAVEZ_VILCHEZ"), nationaliteiten=_THIRD), 12),
    (_Scenario("EU_VERBLIJFSDOCUMENT", ("VERBLIJF_ALS_FAMILIELID_VAN_UNIEBURGER",), "VW2000_ART8_E",
               ("RICHTLIJN_2004_38", "TERUGKEREND_UNIEBURGER"), nationaliteiten=_THIRD), 6),
    (_Scenario("EU_VERBLIJFSDOCUMENT", ("VERBLIJF_ALS_UNIEBURGER",), "VW2000_ART8_E", ("RICHTLIJN_2004_38",),
               nationaliteiten=_EU), 5),
    (_Scenario("EU_VERBLIJFSDOCUMENT", ("VERBLIJF_OP_GROND_VAN_ASSOCIATIERECHT_EU_TURKIJE",), "VW2000_ART8_E",
               ("ASSOCIATIEBESLUIT_1_80",), nationaliteiten=("TUR",)), 4),
    (_Scenario("VERBLIJFSVERGUNNING_REGULIER_BEPAALDE_TIJD", ("GEZINSHERENIGING",), "VW2000_ART8_A",
               nationaliteiten=("TUR",)), 5),
    (_Scenario("VERBLIJFSVERGUNNING_REGULIER_BEPAALDE_TIJD",
               ("KENNISMIGRANT", "STUDIE", "ARBEID_IN_LOONDIENST", "AU_PAIR", "SEIZOENSARBEID", "ZELFSTANDIGE"),
               "VW2000_ART8_A", nationaliteiten=_THIRD, years=2), 12),
    (_Scenario("VERBLIJFSVERGUNNING_REGULIER_ONBEPAALDE_TIJD", ("OVERIG",), "VW2000_ART8_B",
               nationaliteiten=_THIRD, years=None), 4),
    (_Scenario("EU_LANGDURIG_INGEZETENE", ("OVERIG",), "VW2000_ART8_B", nationaliteiten=_THIRD, years=None), 3),
    (_Scenario("VERBLIJFSVERGUNNING_ASIEL_ONBEPAALDE_TIJD", ("ASIEL",), "VW2000_ART8_D",
               nationaliteiten=("SYR", "ERI", "AFG", "XXB"), years=None), 5),
)
_SURNAMES = ("Haddad", "Tesfaye", "Yilmaz", "Kaya", "Nguyen", "Okafor", "Mohammadi", "Silva", "Popescu",
             "Ahmadi", "Osei", "Kowalski", "Hussein", "Mensah", "Rahimi", "Demir", "Abdi", "Santos",
             "Chen", "Kumar", "Alemu", "Novak", "Haile", "Bouzid")
_FIRST_NAMES = ("Rania", "Meron", "Ahmed", "Fatma", "Linh", "Chidi", "Sara", "Joao", "Ana", "Yusuf",
                "Amina", "Kwame", "Marta", "Omar", "Leila", "Mehmet", "Hodan", "Wei", "Priya", "Dawit")
_PREFIXES = ("el", "al", "de", "van", "dos", "da")
_GEMEENTEN = ("0363", "0599", "0518", "0344", "0772", "0014", "0034", "0855", "0193", "0153")


def generate_meldingen(n: int, seed: int, start_volgnummer: int = 1,
                       now: dt.datetime | None = None) -> list[IndMelding]:
    """``n`` notifications with volgnummer ``start_volgnummer`` on, created up to ``now``.

    Deterministic for the same ``seed`` and ``now`` (``now`` defaults to the current time).
    About 5% are corrections of an earlier notification in the list, about 5% arrive late
    (datumBesluit 10-40 days back), and the rest were decided 1-6 days before ``now``.
    """
    rng = random.Random(seed)
    now = now or dt.datetime.now(dt.UTC)
    out: list[IndMelding] = []
    for i in range(n):
        aangemaakt = now - dt.timedelta(minutes=7 * (n - i))
        volgnummer = start_volgnummer + i
        if out and rng.random() < 0.05:
            out.append(_correction(rng, rng.choice(out), volgnummer, aangemaakt))
        else:
            out.append(_melding(rng, volgnummer, aangemaakt))
    return out


def _melding(rng: random.Random, volgnummer: int, aangemaakt: dt.datetime) -> IndMelding:
    scenario = rng.choices([s for s, _ in _SCENARIOS], weights=[w for _, w in _SCENARIOS])[0]
    soort = rng.choices(("VERLEEND", "GEWIJZIGD", "BEEINDIGD"), weights=(85, 10, 5))[0]
    return IndMelding(
        melding_id=_uuid(rng),
        volgnummer=volgnummer,
        soort_melding=soort,
        aangemaakt_op=iso(aangemaakt),
        persoon=_persoon(rng, scenario),
        verblijf=_verblijf(rng, scenario, aangemaakt.date()),
    )


def _correction(rng: random.Random, earlier: IndMelding, volgnummer: int, aangemaakt: dt.datetime) -> IndMelding:
    # IND corrects a date or a name; the corrected notification is otherwise the same person and right.
    verblijf = replace(earlier.verblijf, ingangsdatum=earlier.verblijf.ingangsdatum - dt.timedelta(days=rng.randint(1, 20)))
    persoon = replace(earlier.persoon, geslachtsnaam=rng.choice(_SURNAMES)) if rng.random() < 0.3 else earlier.persoon
    return IndMelding(
        melding_id=_uuid(rng),
        volgnummer=volgnummer,
        soort_melding="CORRECTIE",
        aangemaakt_op=iso(aangemaakt),
        persoon=persoon,
        verblijf=verblijf,
        correctie_van=earlier.melding_id,
    )


def _persoon(rng: random.Random, scenario: _Scenario) -> IndPersoon:
    nationaliteiten = [rng.choice(scenario.nationaliteiten)]
    if rng.random() < 0.08:
        second = rng.choice(_EU + ("TUR",) + _THIRD)
        if second not in nationaliteiten:
            nationaliteiten.append(second)
    return IndPersoon(
        v_nummer="".join(str(rng.randint(0, 9)) for _ in range(10)),
        geslachtsnaam=rng.choice(_SURNAMES),
        geboortedatum=_geboortedatum(rng),
        geslacht=rng.choices(("M", "V", "X", "O"), weights=(48, 48, 2, 2))[0],
        nationaliteiten=tuple(nationaliteiten),
        bsn=random_bsn(rng) if rng.random() < 0.8 else None,
        voorvoegsel=rng.choice(_PREFIXES) if rng.random() < 0.12 else None,
        voornamen=rng.choice(_FIRST_NAMES) if rng.random() < 0.9 else None,
        gemeentecode=rng.choice(_GEMEENTEN) if rng.random() < 0.75 else None,
    )


def _geboortedatum(rng: random.Random) -> str:
    # Mostly adults; some minors and some past pension age, so every age rule gets exercised.
    year = rng.choices((rng.randint(1962, 2006), rng.randint(2009, 2015), rng.randint(1940, 1957)),
                       weights=(88, 6, 6))[0]
    kind = rng.choices(("full", "year", "month", "unknown"), weights=(88, 6, 4, 2))[0]
    if kind == "unknown":
        return "0000-00-00"
    if kind == "year":
        return f"{year:04d}-00-00"
    month = rng.randint(1, 12)
    if kind == "month":
        return f"{year:04d}-{month:02d}-00"
    return f"{year:04d}-{month:02d}-{rng.randint(1, 28):02d}"


def _verblijf(rng: random.Random, scenario: _Scenario, today: dt.date) -> IndVerblijf:
    late = rng.random() < 0.05
    besluit = today - dt.timedelta(days=rng.randint(10, 40) if late else rng.randint(1, 6))
    ingang = besluit - dt.timedelta(days=rng.randint(0, 60))
    eind = None
    if scenario.years is not None:
        eind = ingang + dt.timedelta(days=365 * rng.randint(1, scenario.years))
    return IndVerblijf(
        documentnummer="NL" + "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ0123456789") for _ in range(7)),
        documentsoort=scenario.documentsoort,
        verblijfsdoel=rng.choice(scenario.doelen),
        wettelijke_grondslag=scenario.grondslag,
        datum_besluit=besluit,
        ingangsdatum=ingang,
        unierechtelijke_grondslag=rng.choice(scenario.unierecht) if scenario.unierecht else None,
        einddatum=eind,
    )


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# ---------------------------------------------------------------- pusher

@dataclass
class PushFaults:
    """Trouble on IND's sending side: dropped pushes stay in the feed; duplicates are sent twice."""

    drop: set[int] = field(default_factory=set)  # volgnummers not pushed
    duplicate: set[int] = field(default_factory=set)  # volgnummers pushed twice
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class PushResult:
    """One push attempt as IND saw it. ``acknowledgement`` holds the raw answer bytes."""

    volgnummer: int
    melding_id: str
    http_status: int | None
    acknowledgement: bytes | None = None
    fault_code: str | None = None
    detail_code: str | None = None
    #: Why the answer was not taken as an acknowledgement (no personal data); None when it was.
    error: str | None = None
    #: Whether meldingDigest is the digest of what this push carried. It may differ on a repeat:
    #: when the receiver took the notification in from the feed first, its (byte-identical)
    #: acknowledgement digests the feed's spelling of the element.
    digest_matches: bool | None = None

    @property
    def accepted(self) -> bool:
        return self.http_status == 200 and self.error is None and self.fault_code is None


class IndSimulator:
    """IND: issues notifications, pushes them to the gateway, and serves the catch-up feed.

    ``key`` signs what IND sends; ``gateway_trust`` verifies the gateway's signed answers and
    the gateway's feed requests (None: no checks); ``ca_file`` is the anchor for the server's
    TLS certificate. ``app`` is the feed's ASGI app (POST ``feed_path``).
    """

    def __init__(self, *, key: KeyPair | None = None, gateway_trust: PartnerTrust | None = None,
                 ca_file: str | None = None, clock: Clock | None = None, timeout_seconds: float = 30.0,
                 feed_path: str = "/ind/feed") -> None:
        self.key = key
        self.gateway_trust = gateway_trust
        self.clock = clock or SystemClock()
        self.session = tls_session(key, ca_file)
        self.wsse = IndWsse(key, gateway_trust, clock=self.clock)
        self.transport = RecordingTransport(self.session, timeout_seconds)
        self._zeep: zeep.Client | None = None
        self._services: dict[str, object] = {}
        self._issued: dict[int, IndMelding] = {}
        self.dropped: list[int] = []
        self._lock = threading.Lock()
        #: The feed's SignatureConfirmation: "right", or "missing"/"wrong" to play a faulty IND.
        self.confirmation = "right"
        self.app = Starlette(routes=[Route(feed_path, self._feed, methods=["POST"])])

    # -- issuing

    def issue(self, meldingen: list[IndMelding]) -> None:
        """Make notifications part of the feed (pushing does this too)."""
        with self._lock:
            for m in meldingen:
                self._issued[m.volgnummer] = m

    def issued(self) -> list[IndMelding]:
        with self._lock:
            return [self._issued[k] for k in sorted(self._issued)]

    # -- pushing

    def push(self, url: str, m: IndMelding) -> PushResult:
        """Call OntvangMelding once with zeep; never raises for what the gateway answers."""
        self.issue([m])
        service = self._service(url)
        try:
            service.OntvangMelding(**zeep_kwargs(m))
        except zeep.exceptions.Fault as fault:
            return self._result(m, fault_code=fault.code, detail_code=_detail_code(fault.detail))
        except GatewayError as exc:
            return self._result(m, error=f"{exc.code}: {exc.message}")
        except (requests.RequestException, zeep.exceptions.Error) as exc:
            return self._result(m, error=type(exc).__name__)
        return self._acknowledged(m)

    def push_all(self, url: str, meldingen: list[IndMelding], faults: PushFaults | None = None) -> list[PushResult]:
        """Push each in order, issuing it to the feed at its turn (as IND creates it); dropped ones
        are issued but not pushed; duplicates go twice in a row."""
        faults = faults or PushFaults()
        rng = random.Random(faults.seed)
        results: list[PushResult] = []
        for m in meldingen:
            if m.volgnummer in faults.drop or rng.random() < faults.drop_rate:
                self.issue([m])
                self.dropped.append(m.volgnummer)
                continue
            times = 2 if m.volgnummer in faults.duplicate or rng.random() < faults.duplicate_rate else 1
            results.extend(self.push(url, m) for _ in range(times))
        return results

    def push_raw(self, url: str, envelope: bytes, *, action: str = ACTION_ONTVANG) -> tuple[int, bytes]:
        """POST exactly these bytes over the same TLS session; returns (status, body)."""
        response = self.session.post(url, data=envelope, timeout=self.transport.operation_timeout,
                                     headers={"Content-Type": _SOAP_MEDIA, "SOAPAction": f'"{action}"'})
        return response.status_code, response.content

    def envelope(self, url: str, m: IndMelding) -> bytes:
        """A signed OntvangMelding envelope built without zeep, to tamper with and ``push_raw``."""
        env = soap.build_envelope(codec.encode_melding(m), to=url, action=ACTION_ONTVANG,
                                  message_id="urn:uuid:" + m.melding_id)
        if self.key is None:
            return etree.tostring(env, xml_declaration=True, encoding="utf-8")
        return wsse.sign_envelope(env, self.key, parts=wsse.REQUEST_PARTS, now=self.clock.now())

    def close(self) -> None:
        close_session(self.session)

    def _service(self, url: str):
        with self._lock:
            if self._zeep is None:
                self._zeep = zeep.Client(WSDL, wsse=self.wsse, transport=self.transport)
            if url not in self._services:
                self._services[url] = self._zeep.create_service(f"{{{_WSDL_NS}}}MeldingOntvangstBinding", url)
            return self._services[url]

    def _result(self, m: IndMelding, *, fault_code: str | None = None, detail_code: str | None = None,
                error: str | None = None, digest_matches: bool | None = None) -> PushResult:
        status, body = self.transport.last or (None, None)
        return PushResult(m.volgnummer, m.melding_id, status, acknowledgement=body, fault_code=fault_code,
                          detail_code=detail_code, error=error, digest_matches=digest_matches)

    def _acknowledged(self, m: IndMelding) -> PushResult:
        payload = self.wsse.last_payload
        if payload is None or payload.tag != f"{{{IND_NS}}}Ontvangstbevestiging":
            return self._result(m, error="the answer is not an Ontvangstbevestiging")
        if payload.findtext(f"{{{IND_NS}}}meldingId") != m.melding_id:
            return self._result(m, error="the acknowledgement names another meldingId")
        sent = self.wsse.last_sent_payload
        digest = xmlsafe.sha256_b64(xmlsafe.exc_c14n(sent)) if sent is not None else None
        return self._result(m, digest_matches=payload.findtext(f"{{{IND_NS}}}meldingDigest") == digest)

    # -- the feed

    async def _feed(self, request: Request) -> Response:
        body = await request.body()
        try:
            answer = self._answer_feed(body, client_cert_der(request.scope))
        except InboundRefused as exc:
            return Response(soap.fault(exc), status_code=500, media_type=_SOAP_MEDIA)
        return Response(answer, status_code=200, media_type=_SOAP_MEDIA)

    def _answer_feed(self, body: bytes, cert: bytes | None) -> bytes:
        root = xmlsafe.parse(body)
        envelope = soap.split(root)
        payload, action, message_id = envelope.payload, envelope.action, envelope.message_id
        if self.gateway_trust is not None:
            if cert is not None and not self.gateway_trust.matches(cert):
                raise CertificateRefused("the TLS certificate is not the gateway's", stage="security")
            verified = wsse.verify_envelope(root, self.gateway_trust, parts=wsse.REQUEST_PARTS,
                                            now=self.clock.now())
            payload, action, message_id = verified.payload, verified.action, verified.message_id
        if action != ACTION_HAAL:
            raise MalformedInput("wsa:Action is not HaalMeldingen", stage="receiving")
        if payload.tag != f"{{{IND_NS}}}HaalMeldingenVerzoek":
            raise SchemaInvalid("the Body is not a HaalMeldingenVerzoek", stage="processing")
        xmlsafe.validate(payload, xmlsafe.IND_XSD, partner="gateway")
        vanaf, maximaal = codec.decode_haal_verzoek(payload)
        confirm = self._confirmation(root)
        return self._feed_answer(vanaf, maximaal, message_id or f"urn:uuid:{uuid.uuid4()}", confirm)

    def _confirmation(self, request: etree._Element) -> str | None:
        """What the answer's SignatureConfirmation carries (``confirmation`` plays a faulty IND)."""
        if self.key is None or self.confirmation == "missing":
            return None
        try:
            value = wsse.signature_value(request)
        except InboundRefused:  # an unsigned request has nothing to confirm
            return None
        return value[::-1] if self.confirmation == "wrong" else value

    def _feed_answer(self, vanaf: int, maximaal: int, relates_to: str, confirm: str | None = None) -> bytes:
        with self._lock:
            numbers = sorted(k for k in self._issued if k >= vanaf)[:maximaal]
            page = [self._issued[k] for k in numbers]
            laatste = max(self._issued, default=0)
        antwoord = codec.encode_haal_antwoord([codec.encode_melding(m) for m in page], laatste)
        env = soap.build_envelope(antwoord, to=_ANONYMOUS, action=ACTION_HAAL_RESPONSE,
                                  message_id=f"urn:uuid:{uuid.uuid4()}", relates_to=relates_to)
        if self.key is None:
            return etree.tostring(env, xml_declaration=True, encoding="utf-8")
        parts = wsse.CONFIRMED_RESPONSE_PARTS if confirm is not None else wsse.RESPONSE_PARTS
        return wsse.sign_envelope(env, self.key, parts=parts, now=self.clock.now(), confirm=confirm)


def zeep_kwargs(m: IndMelding) -> dict[str, object]:
    """The keyword arguments for zeep's ``OntvangMelding`` (element VergunningMelding)."""
    p, v = m.persoon, m.verblijf
    persoon = {"vNummer": p.v_nummer, "bsn": p.bsn, "geslachtsnaam": p.geslachtsnaam,
               "voorvoegsel": p.voorvoegsel, "voornamen": p.voornamen, "geboortedatum": p.geboortedatum,
               "geslacht": p.geslacht, "nationaliteit": list(p.nationaliteiten), "gemeentecode": p.gemeentecode}
    verblijf = {"documentnummer": v.documentnummer, "documentsoort": v.documentsoort,
                "verblijfsdoel": v.verblijfsdoel, "wettelijkeGrondslag": v.wettelijke_grondslag,
                "unierechtelijkeGrondslag": v.unierechtelijke_grondslag, "datumBesluit": v.datum_besluit,
                "ingangsdatum": v.ingangsdatum, "einddatum": v.einddatum}
    melding = {"meldingId": m.melding_id, "volgnummer": m.volgnummer, "soortMelding": m.soort_melding,
               "correctieVan": m.correctie_van, "aangemaaktOp": m.aangemaakt_op,
               "persoon": _present(persoon), "verblijf": _present(verblijf)}
    return _present(melding)


def _present(d: Mapping[str, object]) -> dict[str, object]:
    return {k: v for k, v in d.items() if v is not None}


def _detail_code(detail: etree._Element | None) -> str | None:
    if detail is None:
        return None
    code = detail.findtext("code")
    return code.strip() if code else None
