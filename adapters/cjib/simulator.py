"""CJIB's side of the cjib-rest profile, for the sandbox and the tests.

``CjibSimulator`` is an ASGI app (Starlette inside) that follows ``cjib-portaal-v1.openapi.yaml``:

- mutual TLS: over TLS the client certificate must be one pinned in ``trust`` (else 401);
  over plain HTTP (unit tests, schemathesis) there is no certificate to check;
- requests with a body must carry a valid ``X-JWS-Signature`` (alg, kid, signature, htm,
  htu, iat: ``gateway.security.jws``), else 401; ``check_jws=False`` turns this off for
  property-based tests; every answer with a body is signed with the simulator's own key;
- ``Idempotency-Key``: the same key and body get the original status and body again, another
  body 422, a key whose first request is still being processed 409;
- CJIB's business rules (400 with ``errors``), schema checks (400 with ``errors``, code SCHEMA);
- cases move through statuses over simulated time, computed on read: IN_BEHANDELING at
  acceptance, DWANGBEVEL_UITGEVAARDIGD after ``dwangbevel_after_days``, then VOLDAAN or
  GEDEELTELIJK_BETAALD (chosen from the claim's reference) after ``settle_after_days``.
  Simulated time is ``clock.now()`` plus what ``advance`` added; JWS ``iat`` checks use the
  plain ``clock.now()``, because the client's clock does not jump;
- the status feed with opaque cursors (``volgnummer`` strictly increasing);
- fault injection (``Faults``), changeable while running with ``set_faults``;
- ``accepted_count(referentie)``: cases opened per ``opdrachtgeverReferentie``. A second
  Idempotency-Key for a reference already taken opens a second case on purpose, so that a test
  asserting "accepted exactly once" catches a gateway that changed its key.

A connection reset is a real close without any answer. ASGI has no way to say "drop this
connection", so the simulator reaches uvicorn's transport through the ``receive`` callable
(a bound method of uvicorn's request cycle) and aborts it; should that ever be missing, it falls
back to sending only the status line and then failing, which makes uvicorn close the connection
before the body (the client still gets no usable answer). The reset happens after the body was
read; with ``lost_answer_rate`` the claim is processed first, so the client sees no answer
although CJIB accepted it.

The app runs on uvicorn's thread while tests read counters from theirs; all state sits behind
one lock, held only for short, non-awaiting sections.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import math
import random
import re
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.cjib import codec
from gateway.core.bsn import bsn_valid
from gateway.core.clock import AMS, Clock, iso
from gateway.core.errors import InboundRefused, SecurityRefused
from gateway.security import jws
from gateway.security.keys import KeyPair, PartnerTrust
from gateway.wire.server import client_cert_der

__all__ = ["Faults", "CjibSimulator", "business_errors"]

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_ZAAKNUMMER = re.compile(r"^CJIB-[0-9]{4}-[0-9]{6,10}$")
_PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class Faults:
    """What goes wrong, and how often. Rates are 0..1, drawn from a generator seeded with ``seed``."""

    #: Share of requests answered 503 (with Retry-After) at random.
    error_rate: float = 0.0
    #: Real seconds every request waits before it is handled.
    latency_seconds: float = 0.0
    #: Real seconds a POST holds its Idempotency-Key "in flight" (a repeat meanwhile gets 409).
    processing_seconds: float = 0.0
    #: (start, end) windows of ``clock.now()`` during which every request gets 503.
    downtime: tuple[tuple[dt.datetime, dt.datetime], ...] = ()
    #: 429 bursts: this many requests in a row get 429, at the start of every
    #: ``burst_429_every`` requests (0: one burst only, at the start).
    burst_429_length: int = 0
    burst_429_every: int = 0
    #: Retry-After for 429 and random 503s.
    retry_after_seconds: int = 1
    #: Share of requests whose connection is closed without an answer, before processing.
    reset_rate: float = 0.0
    #: Share of POSTs processed (claim accepted) whose answer is then lost (connection closed).
    lost_answer_rate: float = 0.0
    #: Share of feed entries served twice (the next page starts with it again).
    duplicate_feed_rate: float = 0.0
    seed: int = 0


@dataclass
class _Case:
    zaaknummer: str
    referentie: str
    centen: int
    accepted_at: dt.datetime
    #: (simulated time, status, openstaand) still to happen, oldest first.
    pending: list[tuple[dt.datetime, str, int]] = field(default_factory=list)
    status: str = "IN_BEHANDELING"
    openstaand: int = 0
    updated_at: dt.datetime | None = None


@dataclass
class _Key:
    digest: bytes
    status: int | None = None  # None while in flight
    body: bytes = b""
    media_type: str = "application/json"


def business_errors(v: dict[str, Any], handover_day: dt.date) -> list[dict[str, str]]:
    """CJIB's business rules for a schema-valid ``Vordering``; an empty list means accepted."""
    errors = []
    if not bsn_valid(v["debiteur"]["bsn"]):
        errors.append(_error("BSN_ELFPROEF", "/debiteur/bsn", "Het bsn voldoet niet aan de elfproef."))
    verval = dt.date.fromisoformat(v["vervaldatum"])
    aanmaning = dt.date.fromisoformat(v["aanmaningsdatum"])
    if verval >= handover_day:
        errors.append(_error("VERVALDATUM_NIET_VERSTREKEN", "/vervaldatum",
                             "De vervaldatum ligt niet voor de dag van overdracht."))
    if aanmaning < verval:
        errors.append(_error("AANMANING_VOOR_VERVALDATUM", "/aanmaningsdatum",
                             "De aanmaningsdatum ligt voor de vervaldatum."))
    if aanmaning > handover_day - dt.timedelta(days=14):
        errors.append(_error("AANMANING_TE_RECENT", "/aanmaningsdatum",
                             "De aanmaning is minder dan 14 dagen voor de overdracht verstuurd."))
    return errors


def _error(code: str, pointer: str, omschrijving: str) -> dict[str, str]:
    return {"code": code, "pointer": pointer, "omschrijving": omschrijving}


class CjibSimulator:
    """CJIB's portal; an ASGI callable. See the module docstring."""

    def __init__(self, key: KeyPair, trust: PartnerTrust, clock: Clock, *, faults: Faults | None = None,
                 check_jws: bool = True, dwangbevel_after_days: float = 14, settle_after_days: float = 42,
                 first_zaak: int = 1) -> None:
        self._key = key
        self._trust = trust
        self._clock = clock
        self._check_jws = check_jws
        self._dwangbevel_after = dt.timedelta(days=dwangbevel_after_days)
        self._settle_after = dt.timedelta(days=settle_after_days)
        # Re-entrant: answers are built (and counted) both inside and outside locked sections.
        self._lock = threading.RLock()
        self._offset = dt.timedelta(0)
        self._faults = faults or Faults()
        self._rng = random.Random(self._faults.seed)
        self._requests = 0
        self._next_zaak = first_zaak
        self._keys: dict[str, _Key] = {}
        self._cases: dict[str, _Case] = {}
        self._feed: list[dict[str, Any]] = []
        self._duplicated: set[int] = set()
        self._accepted: Counter[str] = Counter()
        self._answers: Counter[int] = Counter()
        self._resets = 0
        self._app = Starlette(routes=[
            Route("/v1/vorderingen", self._post_vordering, methods=["POST"]),
            Route("/v1/vorderingen/{zaaknummer}", self._get_zaak, methods=["GET"]),
            Route("/v1/statuswijzigingen", self._get_feed, methods=["GET"]),
        ], exception_handlers={HTTPException: self._http_exception})

    # ------------------------------------------------------------ control (any thread)

    def set_faults(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults
            self._rng = random.Random(faults.seed)
            self._requests = 0

    def advance(self, seconds: float) -> None:
        """Move simulated time on (case statuses), without touching the shared clock."""
        with self._lock:
            self._offset += dt.timedelta(seconds=seconds)

    def accepted_count(self, referentie: str) -> int:
        """How many cases were opened for this ``opdrachtgeverReferentie`` (must be at most 1)."""
        with self._lock:
            return self._accepted[referentie]

    def accepted_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._accepted)

    def answer_counts(self) -> dict[int, int]:
        """HTTP statuses answered so far (resets are counted by ``reset_count``)."""
        with self._lock:
            return dict(self._answers)

    def in_flight(self) -> int:
        """POSTs whose Idempotency-Key is reserved but not yet answered."""
        with self._lock:
            return sum(1 for k in self._keys.values() if k.status is None)

    def reset_count(self) -> int:
        with self._lock:
            return self._resets

    # ------------------------------------------------------------ ASGI

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self._app(scope, receive, send)
        with self._lock:
            faults, reset, lost = self._faults, self._draw(self._faults.reset_rate), \
                self._draw(self._faults.lost_answer_rate)
        if faults.latency_seconds:
            await asyncio.sleep(faults.latency_seconds)
        if reset:
            await _drain(receive)
            return await self._reset(receive, send)
        if lost and scope["method"] == "POST":
            await self._app(scope, receive, _swallow)
            return await self._reset(receive, send)
        return await self._app(scope, receive, send)

    async def _reset(self, receive: Any, send: Any) -> None:
        with self._lock:
            self._resets += 1
        cycle = getattr(receive, "__self__", None)
        transport = getattr(cycle, "transport", None)
        if transport is not None:
            transport.abort()
            for _ in range(20):  # let uvicorn notice the connection is gone, or it answers 500 into the void
                if getattr(cycle, "disconnected", True):
                    break
                await asyncio.sleep(0.001)
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1")]})
        raise ConnectionResetError("simulated connection reset")

    def _draw(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    # ------------------------------------------------------------ checks every request passes

    def _gate(self, request: Request) -> Response | None:
        """mTLS identity first, then the injected faults."""
        der = client_cert_der(request.scope)
        if request.url.scheme == "https" and (der is None or not self._trust.matches(der)):
            return self._problem(401, "Onbekende client", "The client certificate is not a known partner's.")
        with self._lock:
            return self._fault_answer()

    def _fault_answer(self) -> Response | None:
        f = self._faults
        self._requests += 1
        now = self._clock.now()
        for start, end in f.downtime:
            if start <= now < end:
                wait = max(1, math.ceil((end - now).total_seconds()))
                return self._unavailable(503, wait, "CJIB is down for maintenance.")
        n = self._requests - 1
        if f.burst_429_length and (n % f.burst_429_every if f.burst_429_every else n) < f.burst_429_length:
            return self._unavailable(429, f.retry_after_seconds, "Too many requests.")
        if self._draw(f.error_rate):
            return self._unavailable(503, f.retry_after_seconds, "CJIB is temporarily unavailable.")
        return None

    def _check_signature(self, request: Request, body: bytes) -> Response | None:
        if not self._check_jws:
            return None
        value = request.headers.get("x-jws-signature")
        if not value:
            return self._problem(401, "Handtekening ontbreekt", "The request has no X-JWS-Signature.")
        # htu is compared with the path and query exactly as they came over the wire.
        htu = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
        query = request.scope.get("query_string", b"").decode("latin-1")
        htu += f"?{query}" if query else ""
        try:
            jws.verify_detached(value, body, self._trust, now=self._clock.now(), htm=request.method, htu=htu)
        except SecurityRefused as exc:
            return self._problem(401, "Handtekening geweigerd", f"The X-JWS-Signature was refused ({exc.code}).")
        return None

    # ------------------------------------------------------------ POST /v1/vorderingen

    async def _post_vordering(self, request: Request) -> Response:
        body = await request.body()
        refusal = self._gate(request) or self._check_signature(request, body)
        if refusal is not None:
            return refusal
        key = request.headers.get("idempotency-key", "")
        if not _UUID.match(key):
            return self._problem(400, "Idempotency-Key ongeldig", "The Idempotency-Key header must be a UUID.")
        digest = hashlib.sha256(body).digest()
        with self._lock:
            earlier = self._reserve(key, digest)
        if earlier is not None:
            return earlier
        try:
            if self._faults.processing_seconds:
                await asyncio.sleep(self._faults.processing_seconds)
            status, answer, media_type = self._process(request, body)
        except BaseException:
            with self._lock:
                self._keys.pop(key, None)  # not processed: a repeat may try again
            raise
        with self._lock:
            self._keys[key] = _Key(digest, status, answer, media_type)
        return self._signed(status, answer, media_type)

    def _reserve(self, key: str, digest: bytes) -> Response | None:
        """Under the lock: the answer for a known key, or None after reserving a new one."""
        known = self._keys.get(key)
        if known is None:
            self._keys[key] = _Key(digest)
            return None
        if known.digest != digest:
            return self._problem(422, "Idempotency-Key hergebruikt",
                                 "This Idempotency-Key was used before for a different body.")
        if known.status is None:
            return self._problem(409, "Verzoek in behandeling",
                                 "The first request with this Idempotency-Key is still being processed.")
        return self._signed(known.status, known.body, known.media_type)

    def _process(self, request: Request, body: bytes) -> tuple[int, bytes, str]:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return self._problem_parts(400, "Verkeerd mediatype", "The body must be application/json.")
        try:
            vordering = codec.decode_vordering(body)
        except InboundRefused as exc:
            errors = [_error("SCHEMA", exc.path or "", "Het bericht voldoet niet aan het schema.")]
            return self._problem_parts(400, "Ongeldige vordering", "The body does not fit the schema.", errors)
        with self._lock:
            now = self._sim_now()
            errors = business_errors(vordering, now.astimezone(AMS).date())
            if errors:
                return self._problem_parts(400, "Vordering afgewezen", "Business rules are not met.", errors)
            case = self._open_case(vordering, now)
        ontvangst = {
            "zaaknummer": case.zaaknummer,
            "opdrachtgeverReferentie": case.referentie,
            "status": "IN_BEHANDELING",
            "ontvangenOp": iso(now),
            "payloadDigest": base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode(),
        }
        return 201, codec.encode_json(ontvangst), "application/json"

    def _open_case(self, v: dict[str, Any], now: dt.datetime) -> _Case:
        """Under the lock: a new case, its first feed entry and its future status moves."""
        self._materialize(now)
        centen = int(v["bedrag"]["centen"])  # JSON Schema counts 3911.0 as an integer too
        zaaknummer = f"CJIB-{now.astimezone(AMS).year:04d}-{self._next_zaak:06d}"
        self._next_zaak += 1
        case = _Case(zaaknummer, v["opdrachtgeverReferentie"], centen, now, openstaand=centen, updated_at=now)
        paid_in_full = uuid.UUID(case.referentie).int % 2 == 0
        final = ("VOLDAAN", 0) if paid_in_full else ("GEDEELTELIJK_BETAALD", centen - centen // 2)
        case.pending = [(now + self._dwangbevel_after, "DWANGBEVEL_UITGEVAARDIGD", centen),
                        (now + self._settle_after, *final)]
        self._cases[zaaknummer] = case
        self._accepted[case.referentie] += 1
        self._append_feed(case, now)
        return case

    # ------------------------------------------------------------ time and the feed

    def _sim_now(self) -> dt.datetime:
        return self._clock.now() + self._offset

    def _materialize(self, now: dt.datetime) -> None:
        """Under the lock: apply every status move due by ``now``, oldest first, to the feed."""
        due = sorted(((at, seq, case) for seq, case in enumerate(self._cases.values())
                      for at, _, _ in case.pending if at <= now), key=lambda t: (t[0], t[1]))
        for at, _, case in due:
            _, case.status, case.openstaand = case.pending.pop(0)
            case.updated_at = at
            self._append_feed(case, at)

    def _append_feed(self, case: _Case, at: dt.datetime) -> None:
        self._feed.append({
            "volgnummer": len(self._feed) + 1,
            "zaaknummer": case.zaaknummer,
            "opdrachtgeverReferentie": case.referentie,
            "status": case.status,
            "openstaandCenten": case.openstaand,
            "tijdstip": iso(at),
        })

    async def _get_feed(self, request: Request) -> Response:
        refusal = self._gate(request)
        if refusal is not None:
            return refusal
        given = request.query_params.get("na")
        position = _cursor_position(given) if given is not None else 0
        limit = _limit(request.query_params.get("limiet"))
        if position is None or limit is None:
            return self._problem(400, "Ongeldige parameter", "na or limiet is not valid.")
        with self._lock:
            self._materialize(self._sim_now())
            page = self._page(position, limit, given)
        return self._signed(200, codec.encode_json(page), "application/json")

    def _page(self, position: int, limit: int, given: str | None) -> dict[str, Any]:
        """Under the lock: up to ``limit`` entries after ``position``."""
        position = min(position, len(self._feed))
        entries = self._feed[position:position + limit]
        end = position + len(entries)
        if entries and self._faults.duplicate_feed_rate:
            last = entries[-1]["volgnummer"]
            if last not in self._duplicated and self._draw(self._faults.duplicate_feed_rate):
                self._duplicated.add(last)
                end -= 1  # the next page starts with this entry again
        cursor = given if not entries and given is not None else _cursor(end)
        return {"wijzigingen": entries, "volgendeCursor": cursor, "meer": end < len(self._feed)}

    # ------------------------------------------------------------ GET /v1/vorderingen/{zaaknummer}

    async def _get_zaak(self, request: Request) -> Response:
        refusal = self._gate(request)
        if refusal is not None:
            return refusal
        zaaknummer = request.path_params["zaaknummer"]
        with self._lock:
            self._materialize(self._sim_now())
            case = self._cases.get(zaaknummer) if _ZAAKNUMMER.match(zaaknummer) else None
            if case is None:
                return self._problem(404, "Onbekende zaak", "There is no case with this zaaknummer.")
            zaak = {"zaaknummer": case.zaaknummer, "opdrachtgeverReferentie": case.referentie,
                    "status": case.status, "openstaandCenten": case.openstaand,
                    "bijgewerktOp": iso(case.updated_at or case.accepted_at)}
        return self._signed(200, codec.encode_json(zaak), "application/json")

    # ------------------------------------------------------------ answers

    async def _http_exception(self, request: Request, exc: Exception) -> Response:
        """Starlette's own 404/405, as signed problems like every other answer (Allow kept)."""
        assert isinstance(exc, HTTPException)
        status, body, media_type = self._problem_parts(exc.status_code, "Niet gevonden of niet toegestaan",
                                                       "No such resource or method.")
        return self._signed(status, body, media_type, headers=dict(exc.headers or {}))

    def _signed(self, status: int, body: bytes, media_type: str,
                headers: dict[str, str] | None = None) -> Response:
        signature = jws.sign_detached(body, self._key, now=self._clock.now())
        with_signature = {**(headers or {}), "X-JWS-Signature": signature}
        self._count_answer(status)
        return Response(body, status_code=status, media_type=media_type, headers=with_signature)

    def _count_answer(self, status: int) -> None:
        with self._lock:
            self._answers[status] += 1

    def _problem_parts(self, status: int, title: str, detail: str,
                       errors: list[dict[str, str]] | None = None) -> tuple[int, bytes, str]:
        problem: dict[str, Any] = {"type": f"https://cjib.example/problemen/{status}", "title": title,
                                   "status": status, "detail": detail}
        if errors:
            problem["errors"] = errors
        return status, codec.encode_json(problem), _PROBLEM

    def _problem(self, status: int, title: str, detail: str,
                 errors: list[dict[str, str]] | None = None) -> Response:
        return self._signed(*self._problem_parts(status, title, detail, errors))

    def _unavailable(self, status: int, retry_after: int, detail: str) -> Response:
        parts = self._problem_parts(status, "Tijdelijk niet beschikbaar", detail)
        return self._signed(*parts, headers={"Retry-After": str(retry_after)})



def _cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"cjib-feed:{position}".encode()).rstrip(b"=").decode()


def _cursor_position(cursor: str) -> int | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    prefix, _, number = raw.partition(":")
    if prefix != "cjib-feed" or not number.isdigit() or len(number) > 12:
        return None
    return int(number)


def _limit(value: str | None) -> int | None:
    if value is None:
        return 100
    if not re.fullmatch(r"[0-9]{1,3}", value.strip()):
        return None
    limit = int(value)
    return limit if 1 <= limit <= 500 else None


async def _drain(receive: Any) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


async def _swallow(message: Any) -> None:
    return None

