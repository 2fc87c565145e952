"""DUO's side of profile duo-xml, for the sandbox and the tests.

``DuoSimulator`` receives what the gateway posts (``InburgeraarMelding``, ``VorderingStatus``)
and checks it as DUO would: hardened parse, XSD, signature, ``Idempotency-Key`` = berichtId,
dedup on berichtId. ``Faults`` injects the trouble a real partner gives. The sending side
(``post_vorderingoverdracht``, ``generate_vorderingen``) plays DUO handing claims to the gateway.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import re
import threading
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace

import httpx
from lxml import etree
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.duo import codec
from adapters.duo.errors import DUO_NS, DUPLICATE_CODE
from adapters.testpeople import random_bsn
from gateway.core.clock import Clock, SystemClock, iso
from gateway.core.errors import InboundRefused, SchemaInvalid, SecurityRefused
from gateway.core.models import Adres, Debiteur, DuoOntvangstbevestiging, Fout, VorderingOverdracht
from gateway.security import xmldsig
from gateway.security.keys import KeyPair, PartnerTrust
from gateway.wire import xmlsafe
from gateway.wire.server import client_cert_der

__all__ = [
    "Answer",
    "Faults",
    "DuoSimulator",
    "post_vorderingoverdracht",
    "generate_vorderingen",
]

_MEDIA = "application/xml; charset=utf-8"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_NIL = "00000000-0000-0000-0000-000000000000"
_ENDPOINTS = {
    "/inburgering/v1/meldingen": "InburgeraarMelding",
    "/inburgering/v1/vorderingstatussen": "VorderingStatus",
}


@dataclass
class Answer:
    """One scripted answer. ``status`` 200 means: process normally.

    400 processes the message as far as the checks go and then refuses it (fout GESIMULEERD);
    other statuses answer at once without reading the message (429/503 with Retry-After).
    """

    status: int = 200
    retry_after_seconds: float | None = None
    #: Drop the connection before processing (the message is not taken in).
    reset: bool = False
    #: Take the message in, then drop the connection: the acknowledgement is lost.
    lose_ack: bool = False
    #: Take the message in, then alter the signed acknowledgement (its signature breaks).
    tamper_ack: bool = False


@dataclass
class Faults:
    """Trouble to inject; all off by default. ``script`` is consumed first, one item per request."""

    error_rate: float = 0.0  # share of requests answered 503 + Retry-After
    retry_after_seconds: float = 1.0
    latency_seconds: float = 0.0  # before reading the request
    ack_delay_seconds: float = 0.0  # after taking the message in, before answering
    reset_rate: float = 0.0  # share of connections dropped without an answer
    #: A predicate on the simulator's clock, or (start, end) windows: 503 inside.
    downtime: Callable[[dt.datetime], bool] | Collection[tuple[dt.datetime, dt.datetime]] | None = None
    script: list[int | Answer] = field(default_factory=list)
    seed: int = 0


@dataclass(frozen=True)
class _Kept:
    digest: str
    ack: bytes


class _DroppedResponse(Response):
    """Promise a body, send part of it, and stop: the client sees the connection break.

    uvicorn gives an ASGI app no way to close a connection without an answer; a response that
    ends short is the nearest thing (uvicorn logs it and closes the connection).
    """

    def __init__(self) -> None:
        super().__init__(b"", status_code=200)

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", _MEDIA.encode()), (b"content-length", b"4096")]})
        await send({"type": "http.response.body", "body": b"<", "more_body": True})


class DuoSimulator:
    """DUO's receiving endpoints as a Starlette app (``self.app``); thread-safe records."""

    def __init__(self, *, key: KeyPair | None = None, gateway_trust: PartnerTrust | None = None,
                 clock: Clock | None = None, faults: Faults | None = None) -> None:
        self.key = key
        self.gateway_trust = gateway_trust
        self.clock = clock or SystemClock()
        self.faults = faults or Faults()
        self.received: list[tuple[str, str, bytes]] = []
        self._kept: dict[str, _Kept] = {}
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._rng = random.Random(self.faults.seed)
        self.app = Starlette(routes=[Route(path, self._endpoint(tag), methods=["POST"])
                                     for path, tag in _ENDPOINTS.items()])

    def count(self, bericht_id: str) -> int:
        """How often this berichtId was taken in: 0 or 1, since a repeat is answered from the store."""
        with self._lock:
            return self._counts.get(bericht_id, 0)

    def accepted(self) -> int:
        with self._lock:
            return len(self._kept)

    def _endpoint(self, tag: str) -> Callable[[Request], object]:
        async def endpoint(request: Request) -> Response:
            return await self._handle(request, tag)

        return endpoint

    async def _handle(self, request: Request, tag: str) -> Response:
        answer = self._next_answer()
        if self.faults.latency_seconds:
            await asyncio.sleep(self.faults.latency_seconds)
        if answer.reset:
            return _DroppedResponse()
        early = self._early_answer(answer)
        if early is not None:
            return early
        body = await request.body()
        cert = client_cert_der(request.scope)
        status, ack = self._process(body, request.headers.get("idempotency-key"), tag, answer, cert)
        if self.faults.ack_delay_seconds:
            await asyncio.sleep(self.faults.ack_delay_seconds)
        if answer.lose_ack:
            return _DroppedResponse()
        if answer.tamper_ack:
            ack = ack.replace(b">DUO-", b">DUO-9", 1)
        return Response(ack, status_code=status, media_type=_MEDIA)

    def _next_answer(self) -> Answer:
        with self._lock:
            item = self.faults.script.pop(0) if self.faults.script else None
            roll_reset = self._rng.random() < self.faults.reset_rate
        if item is None:
            return Answer(reset=roll_reset)
        return item if isinstance(item, Answer) else Answer(status=item)

    def _early_answer(self, answer: Answer) -> Response | None:
        now = self.clock.now()
        down_for = self._downtime_left(now)
        if down_for is not None:
            return _unavailable(503, down_for)
        if answer.status not in (200, 400):
            wait = answer.retry_after_seconds or self.faults.retry_after_seconds
            return _unavailable(answer.status, wait if answer.status in (429, 503) else None)
        with self._lock:
            failing = self._rng.random() < self.faults.error_rate
        return _unavailable(503, self.faults.retry_after_seconds) if failing else None

    def _downtime_left(self, now: dt.datetime) -> float | None:
        down = self.faults.downtime
        if down is None:
            return None
        if callable(down):
            return self.faults.retry_after_seconds if down(now) else None
        for start, end in down:
            if start <= now < end:
                return max(1.0, (end - now).total_seconds())
        return None

    def _process(self, body: bytes, key: str | None, tag: str, answer: Answer,
                 cert: bytes | None) -> tuple[int, bytes]:
        try:
            root = xmlsafe.parse(body)
        except InboundRefused as exc:
            return self._refuse(_NIL, xmlsafe.sha256_b64(body), exc.code, exc.message)
        bericht_id = _id_of(root)
        digest = xmldsig.message_digest(root)
        problem = self._check(root, tag, key, bericht_id, cert)
        if problem is not None:
            return self._refuse(bericht_id, digest, *problem)
        if answer.status == 400:
            return self._refuse(bericht_id, digest, "GESIMULEERD", "refused by the simulator's script")
        return self._take_in(root, bericht_id, digest, body)

    def _check(self, root: etree._Element, tag: str, key: str | None, bericht_id: str,
               cert: bytes | None) -> tuple[str, str, str | None] | None:
        if root.tag != f"{{{DUO_NS}}}{tag}":
            return ("SCHEMA", f"this endpoint takes {tag}", "/")
        try:
            xmlsafe.validate(root, xmlsafe.DUO_XSD, partner="gateway")
        except SchemaInvalid as exc:
            return ("SCHEMA", exc.message[:1000], exc.path)
        if self.gateway_trust is not None:
            if cert is not None and not self.gateway_trust.matches(cert):
                return ("CERTIFICATE", "the TLS certificate is not the gateway's", None)
            try:
                xmldsig.verify_enveloped(root, self.gateway_trust, now=self.clock.now())
            except SecurityRefused as exc:
                return (exc.code, exc.message[:1000], None)
        if key != bericht_id:
            return ("IDEMPOTENCY_KEY", "Idempotency-Key differs from the message id", None)
        return None

    def _take_in(self, root: etree._Element, bericht_id: str, digest: str, body: bytes) -> tuple[int, bytes]:
        with self._lock:
            kept = self._kept.get(bericht_id)
            if kept is None:
                kenmerk = f"DUO-{len(self._kept) + 1}"
                ack = self._ack(DuoOntvangstbevestiging(bericht_id=bericht_id, status="ONTVANGEN",
                                                        ontvangen_op=iso(self.clock.now()),
                                                        bericht_digest=digest, kenmerk=kenmerk))
                kept = self._kept[bericht_id] = _Kept(digest, ack)
                self.received.append((bericht_id, etree.QName(root).localname, body))
                self._counts[bericht_id] = 1
                return 200, ack
        if kept.digest == digest:
            return 200, kept.ack
        return self._refuse(bericht_id, digest, DUPLICATE_CODE, "this id was used before for other content",
                            status=409)

    def _refuse(self, bericht_id: str, digest: str, code: str, text: str, pad: str | None = None,
                *, status: int = 400) -> tuple[int, bytes]:
        fout = Fout(code=code, omschrijving=text or code, pad=pad)
        return status, self._ack(DuoOntvangstbevestiging(
            bericht_id=bericht_id, status="AFGEWEZEN", ontvangen_op=iso(self.clock.now()),
            bericht_digest=digest, fouten=(fout,)))

    def _ack(self, ack: DuoOntvangstbevestiging) -> bytes:
        root = codec.encode_ontvangstbevestiging(ack)
        if self.key is None:
            return etree.tostring(root, xml_declaration=True, encoding="utf-8")
        return xmldsig.sign_enveloped(root, self.key)


def _unavailable(status: int, retry_after: float | None) -> Response:
    headers = {"Retry-After": str(max(0, round(retry_after)))} if retry_after is not None else {}
    return Response(b"", status_code=status, headers=headers)


def _id_of(root: etree._Element) -> str:
    """berichtId (or vorderingId) when it looks like one; the nil UUID otherwise."""
    for name in ("berichtId", "vorderingId"):
        text = (root.findtext(f"{{{DUO_NS}}}{name}") or "").strip()
        if _UUID.fullmatch(text):
            return text
    return _NIL


# ---------------------------------------------------------------- DUO as sender


def post_vorderingoverdracht(client: httpx.Client, url: str, v: VorderingOverdracht,
                             key: KeyPair | None) -> httpx.Response:
    """Sign (enveloped) and post one claim hand-over, as DUO does, to the gateway's endpoint."""
    root = codec.encode_vorderingoverdracht(v)
    body = xmldsig.sign_enveloped(root, key) if key is not None else etree.tostring(
        root, xml_declaration=True, encoding="utf-8")
    return client.post(url, content=body, headers={"Content-Type": _MEDIA, "Idempotency-Key": v.vordering_id})


_SURNAMES = ("Tesfaye", "Haddad", "Yilmaz", "Kaya", "Nguyen", "Okafor", "Mohammadi", "Silva", "Popescu",
             "Ahmadi", "Bakker", "Osei", "Kowalski", "Hussein", "Mensah", "Rahimi", "Demir", "Abdi")
_FIRST_NAMES = ("Meron", "Rania", "Ahmed", "Fatma", "Linh", "Chidi", "Sara", "Joao", "Ana", "Yusuf",
                "Amina", "Kwame", "Marta", "Omar", "Leila", "Mehmet", "Hodan")
_PLACES = (("Utrecht", "35"), ("Amsterdam", "10"), ("Rotterdam", "30"), ("Den Haag", "25"),
           ("Eindhoven", "56"), ("Groningen", "97"), ("Tilburg", "50"), ("Almere", "13"))
_STREETS = ("Kanaalweg", "Dorpsstraat", "Stationsplein", "Kerkstraat", "Molenweg", "Julianalaan",
            "Beatrixstraat", "Schoolstraat", "Lindelaan", "Havenkade")
_PREFIXES = ("van", "de", "el", "van der", "al")
#: The CJIB rules a broken claim breaks, in turn (see the cjib-rest profile).
BROKEN_RULES = ("BSN_ELFPROEF", "VERVALDATUM_NIET_VERSTREKEN", "AANMANING_VOOR_VERVALDATUM",
                "AANMANINGSTERMIJN_TE_KORT")


def generate_vorderingen(n: int, seed: int, handover_day: dt.date, *,
                         broken_every: int = 0) -> list[VorderingOverdracht]:
    """``n`` realistic, schema-valid claims handed over on ``handover_day``; deterministic per seed.

    With ``broken_every`` k > 0, every k-th claim (the k-th, 2k-th, ...) breaks one of CJIB's
    business rules (codes as ``codec.vordering_rules`` gives them), cycling through
    ``BROKEN_RULES``; it stays schema-valid.
    """
    rng = random.Random(seed)
    out = []
    for i in range(n):
        v = _vordering(rng, handover_day)
        if broken_every and (i + 1) % broken_every == 0:
            v = _break(v, BROKEN_RULES[((i + 1) // broken_every - 1) % len(BROKEN_RULES)], handover_day)
        out.append(v)
    return out


def _vordering(rng: random.Random, handover_day: dt.date) -> VorderingOverdracht:
    aanmaning = handover_day - dt.timedelta(days=rng.randint(14, 90))
    verval = aanmaning - dt.timedelta(days=rng.randint(0, 45))
    besluit = verval - dt.timedelta(days=rng.randint(42, 70))
    boete = rng.random() < 0.75
    return VorderingOverdracht(
        vordering_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        soort_vordering="BESTUURLIJKE_BOETE" if boete else "LENING_INBURGERING",
        debiteur=_debiteur(rng),
        bedrag_in_centen=rng.choice((34000, 50000, 125000, 25000)) if boete else rng.randint(100_000, 1_000_000),
        beschikking_kenmerk=f"DUO-{'BB' if boete else 'LI'}-{besluit.year}-{rng.randint(1, 999999):06d}",
        beschikking_datum=besluit,
        beschikking_grondslag=rng.choice(("WI2013_ART28", "WI2021_ART34")) if boete else "WI2013_ART24",
        vervaldatum=verval,
        aanmaning_verzonden_op=aanmaning,
    )


def _debiteur(rng: random.Random) -> Debiteur:
    place, pc = rng.choice(_PLACES)
    return Debiteur(
        bsn=random_bsn(rng),
        geslachtsnaam=rng.choice(_SURNAMES),
        geboortedatum=dt.date(rng.randint(1955, 2004), rng.randint(1, 12), rng.randint(1, 28)),
        adres=Adres(
            straat=rng.choice(_STREETS),
            huisnummer=rng.randint(1, 250),
            postcode=f"{pc}{rng.randint(10, 99)}{rng.choice('ABCDEGHJKLMNPRSTVWXZ')}{rng.choice('ABCDEGHJKLMNPRSTVWXZ')}",
            woonplaats=place,
            huisnummertoevoeging=rng.choice((None, None, None, "A", "B", "2", "bis")),
        ),
        v_nummer="".join(str(rng.randint(0, 9)) for _ in range(10)) if rng.random() < 0.8 else None,
        voorvoegsel=rng.choice(_PREFIXES) if rng.random() < 0.15 else None,
        voornamen=rng.choice(_FIRST_NAMES) if rng.random() < 0.9 else None,
    )


def _break(v: VorderingOverdracht, rule: str, handover_day: dt.date) -> VorderingOverdracht:
    if rule == "BSN_ELFPROEF":
        bsn = v.debiteur.bsn
        wrong = bsn[:8] + str((int(bsn[8]) + 1) % 10)
        return replace(v, debiteur=replace(v.debiteur, bsn=wrong))
    if rule == "VERVALDATUM_NIET_VERSTREKEN":  # cannot hold without also breaking the reminder term
        return replace(v, vervaldatum=handover_day, aanmaning_verzonden_op=handover_day)
    if rule == "AANMANING_VOOR_VERVALDATUM":
        return replace(v, aanmaning_verzonden_op=v.vervaldatum - dt.timedelta(days=3))
    return replace(v, aanmaning_verzonden_op=handover_day - dt.timedelta(days=5))
