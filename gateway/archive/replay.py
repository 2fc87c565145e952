"""Replay: run an archive's recorded inbound traffic through the current code and compare.

Each exchange is replayed in recorded order with a ``FixedClock`` set to its recorded time,
against a fresh temporary SQLite store, with no network:

- inbound messages go through the real endpoints (``gateway.routes.ind_to_duo.handle_ontvang_melding``,
  ``gateway.routes.duo_to_cjib.handle_vorderingoverdracht``; feed-fetched IND notifications through
  ``accept_melding`` as ``gateway.routes.ind_to_duo.fetch_from`` does), with signature and certificate checks ON, verified with the
  archive's certificates at the recorded time. The TLS client certificate is taken to be the
  partner's certificate from the archive (TLS itself is not recorded). The checks run in worker
  processes (``prechecks``); an IND push they pass goes on to the route's store part in order;
- each recorded partner answer is handed to a real ``gateway.delivery.outbox.Worker`` through a sender
  that returns it, so retries, dead letters and the claim route's follow-ups
  (``gateway.routes.duo_to_cjib.follow_up``) run as they do live;
- recorded CJIB feed changes go through ``gateway.routes.cjib_to_duo.take_change``, the live feed's intake.

What the gateway produced (outbox payloads and the answers to inbound messages) is then compared
with what was recorded, after ``canonical``: exclusive c14n without comments; ``ds:Signature``,
the ``wsse:Security`` header and ``wsu:Id`` attributes removed (they only exist because of
signing, and signing nonces/timestamps are not reproducible); JSON sorted and indented. The
replay does not sign what it produces, for that reason.
"""

from __future__ import annotations

import datetime as dt
import difflib
import itertools
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from gateway.archive.format import Archive, Entry, write_archive
from gateway.core.adapter import Delivery, Outcome
from gateway.core.clock import FixedClock
from gateway.runtime import Runtime
from gateway.wire.soap import DS_NS, WSA_NS, WSSE_NS, WSU_NS

__all__ = ["Case", "Report", "replay", "canonical", "update_archive", "junit_xml"]

_PARSER = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True, load_dtd=False)


# ---------------------------------------------------------------- canonical form

def canonical(data: bytes | None) -> str:
    """The comparable, readable form of one message (see the module docstring)."""
    form = _canonical_bytes(data)
    if not form.startswith(b"<"):
        return form.decode("utf-8", "replace")
    return etree.tostring(etree.fromstring(form, _PARSER), pretty_print=True, encoding="unicode")


def _canonical_bytes(data: bytes | None) -> bytes:
    """What is compared; ``canonical`` only makes it readable, for diffs."""
    if not data:
        return b""
    head = data.lstrip()[:1]
    if head in (b"{", b"["):
        try:
            return (json.dumps(json.loads(data), sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()
        except ValueError:
            return data
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError:
        return data
    _strip_signing(root)
    return etree.tostring(root, method="c14n", exclusive=True, with_comments=False)


def same(recorded: bytes | None, produced: bytes | None) -> bool:
    return recorded == produced or _canonical_bytes(recorded) == _canonical_bytes(produced)


def _strip_signing(root: etree._Element) -> None:
    # wsa:MessageID is volatile too: every ind-wus answer (a repeat's, a fault's) gets a fresh one
    # (contracts revision 2), as the gateway's own requests do.
    for tag in (f"{{{DS_NS}}}Signature", f"{{{WSSE_NS}}}Security", f"{{{WSA_NS}}}MessageID"):
        for el in list(root.iter(tag)):
            el.getparent().remove(el)
    wsu_id = f"{{{WSU_NS}}}Id"
    for el in root.iter():
        if isinstance(el.tag, str) and wsu_id in el.attrib:
            del el.attrib[wsu_id]


# ---------------------------------------------------------------- the report

@dataclass
class Case:
    """One compared message: an outbound delivery or the answer to one inbound message."""

    name: str
    ok: bool
    diff: str = ""
    entry: Entry | None = None  # the recorded entry, if any
    produced: bytes | None = None
    produced_meta: dict[str, Any] = field(default_factory=dict)
    first: str = ""  # the first difference, in a line ("" when the same)


@dataclass
class Report:
    cases: list[Case]
    seconds: float
    exchanges: int
    #: --rules-from-build: per DUO message whose assessment this build's rule set changes.
    impact: list[dict[str, Any]] = field(default_factory=list)
    ruleset: str | None = None  # --rules-from-build: the rule set assessed with

    @property
    def differences(self) -> list[Case]:
        return [c for c in self.cases if not c.ok]

    def summary(self) -> dict[str, Any]:
        return {"exchanges": self.exchanges, "compared": len(self.cases), "different": len(self.differences),
                "seconds": round(self.seconds, 3), "differing": [c.name for c in self.differences],
                "first_differences": {c.name: c.first for c in self.differences},
                **({"ruleset": self.ruleset, "impact": self.impact} if self.ruleset else {})}


def _diff(name: str, recorded: str, produced: str) -> str:
    lines = difflib.unified_diff(recorded.splitlines(), produced.splitlines(), fromfile=f"recorded {name}",
                                 tofile=f"replayed {name}", lineterm="")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the runtime

class _Quiet:
    """A logger that says nothing: a replay must not repeat the recorded traffic in the logs."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *a, **k: None


@dataclass
class ReplayRuntime(Runtime):
    #: Verify inbound signatures although the replay signs nothing itself.
    verify: bool = True

    @property
    def secure(self) -> bool:
        return self.verify


def _trust(archive: Archive, workdir: Path) -> dict[str, Any]:
    from gateway.security import keys

    for name, pem in archive.certs.items():
        (workdir / name).write_bytes(pem)
    trust = {}
    for partner in ("ind", "duo", "cjib"):
        certs = sorted(workdir.glob(f"{partner}-[0-9]*.pem"))
        anchors = sorted(workdir.glob(f"{partner}-ca-*.pem"))
        if certs and anchors:
            trust[partner] = keys.load_trust(partner, anchors, certs)
    return trust


def _runtime(archive: Archive, config: Any, workdir: Path, verify: bool) -> ReplayRuntime:
    from gateway.core.observability import Metrics
    from gateway.core.store import Store

    # A throwaway store in memory: durability buys nothing here, and fsync per message would cost
    # most of the time. The replay runs on one thread, so the one connection sees one database.
    store = Store("sqlite:///:memory:")
    store.migrate()
    first = archive.entries[0].at if archive.entries else time.time()
    trust = _trust(archive, workdir) if verify else {}
    rt = ReplayRuntime(config=config, store=store, clock=FixedClock(_when(first)), ruleset=_ruleset(archive, config),
                       own=None, trust=trust, metrics=Metrics(), log=_Quiet(), verify=verify and bool(trust))
    return rt


def _ruleset(archive: Archive, config: Any) -> Any:
    """The rule set the recording used (by name, as this build has it), else the configured one."""
    from gateway.runtime import load_ruleset

    versions = archive.manifest.get("rule_set_versions") or []
    names = {str(v).split("@")[0] for v in versions}
    if len(names) == 1:
        name = names.pop()
        if (Path(config.rules.directory) / f"{name}.yaml").exists():
            return load_ruleset(config, name)
    return load_ruleset(config)


def _when(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.UTC)


def default_config() -> Any:
    """The settings a replay runs with when no config file is given: defaults, the shipped rule sets."""
    from gateway.core.config import Config

    return Config()


# ---------------------------------------------------------------- the endpoints' checks, in parallel

_WORKER: dict[str, Any] = {}

#: What the workers found for one inbound push: (seq, passes, the IND endpoint's checked notification,
#: the store-free rest of the IND route for it, ``gateway.routes.ind_to_duo.Prepared``).
Verdict = tuple[int, bool, Any, Any]

#: One inbound push for the workers: (seq, partner, raw, recorded time, the rule set file to assess with).
Item = tuple[int, str, bytes, float, str | None]


def _init_worker(pems: dict[str, bytes], config: Any, items: list[Item], rulesets: dict[str, Any]) -> None:
    """``items``: every push to check, handed over once with the pool (under fork, without being
    pickled) so that a task is a span of them rather than their bytes. ``rulesets``: those the
    replaying process has loaded, by file, so that each worker need not parse them again."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = Archive(manifest={}, entries=[], certs=pems)
        trust = _trust(archive, Path(tmp))
    _WORKER.update(trust=trust, config=config, certs={p: _cert_der(t) for p, t in trust.items()},
                   rulesets=dict(rulesets), items=items)


def _verdicts(span: tuple[int, int]) -> list[Verdict]:
    """The verdicts on consecutive pushes (``span`` of the items): every push's checks first, then
    what the IND route makes of each that passed before the store. The two apart, because
    interleaved each evicts the other's working set from the CPU caches (a replay of 3,000 pushes
    took about 6% more CPU so)."""
    chunk: list[Item] = _WORKER["items"][span[0]:span[1]]
    checks = [_verifies(item) for item in chunk]
    return [(seq, passes, verified, _prepared(rt, verified, item[4]) if rt is not None else None)
            for (seq, passes, verified, rt), item in zip(checks, chunk, strict=True)]


def _verifies(item: Item) -> tuple[int, bool, Any, ReplayRuntime | None]:
    """Does one inbound message pass the endpoint's checks (signature, certificate, timestamp, ...)?
    For an IND push, also IND's checked notification and the runtime it was checked with."""
    seq, partner, raw, t, _ = item
    trust = _WORKER["trust"].get(partner)
    if trust is None:
        return seq, False, None, None
    if partner == "ind":
        rt = _worker_runtime(trust, _when(t))
        verified = _ind_checked(rt, raw)
        return seq, verified is not None, verified, rt
    return seq, _duo_verifies(raw, trust, _when(t)), None, None


def _worker_runtime(trust: Any, now: dt.datetime) -> ReplayRuntime:
    # No store: the checks need none, and one that reached for it would fail here and run again,
    # whole, in the replaying process. No key of our own, as in the replaying process (_runtime).
    return ReplayRuntime(config=_WORKER["config"], store=None, clock=FixedClock(now), ruleset=None,  # type: ignore[arg-type]
                         own=None, trust={"ind": trust}, metrics=None, log=_Quiet())  # type: ignore[arg-type]


def _ind_checked(rt: ReplayRuntime, raw: bytes) -> Any:
    """IND's endpoint with every check on, up to the store: its checked notification, or None."""
    from gateway.routes import ind_to_duo

    try:
        return ind_to_duo.check_push(rt, raw, client_cert_der=_WORKER["certs"]["ind"], now=rt.clock.now())
    except Exception:  # noqa: BLE001 - the replaying process runs the endpoint again and meets it there
        return None


def _prepared(rt: ReplayRuntime, verified: Any, rules: str | None) -> Any:
    """``ind_to_duo.prepare`` for a checked push, assessed with the rule set file ``rules``; None
    when that cannot be made here (the replaying process then makes it itself)."""
    from gateway.routes import ind_to_duo
    from gateway.rules import engine

    if verified is None or rules is None:
        return None
    try:
        ruleset = _WORKER["rulesets"].get(rules) or _WORKER["rulesets"].setdefault(rules, engine.load(rules))
        return ind_to_duo.prepare(rt, verified, rt.clock.now(), ruleset)
    except Exception:  # noqa: BLE001 - the replaying process makes it again and meets it there
        return None


def _duo_verifies(raw: bytes, trust: Any, now: dt.datetime) -> bool:
    from gateway.core.errors import GatewayError
    from gateway.security import xmldsig
    from gateway.wire import xmlsafe

    try:
        xmldsig.verify_enveloped(xmlsafe.parse(raw, max_bytes=_WORKER["config"].ind.max_message_bytes), trust, now=now)
        return True
    except (GatewayError, ValueError, etree.LxmlError):
        return False


@contextmanager
def prechecks(archive: Archive, config: Any, workers: int, rules: dict[int, str] | None = None,
              rulesets: dict[str, Any] | None = None) -> Iterator[Iterator[Verdict]]:
    """(seq, passes, checked notification, prepared) for every inbound push, in order, checked on
    ``workers`` processes.

    Why: the endpoint's checks and parsing are most of a replay's CPU time and independent of
    each other, so they run in parallel with the (necessarily sequential) store part. An IND push
    that passes is handed, as IND's endpoint checked it, to the route's store part
    (``accept_verified``), as the live route does, without parsing it again (the same bytes, trust
    and time give the same result); a DUO push that passes is replayed without checking its
    signature again. One that fails is replayed with the checks on, so its refusal comes from the
    real code path.

    ``rules``: per seq, the rule set file an IND push will be assessed with (``_rules_plan``); the
    workers then also make the route's store-free part (``ind_to_duo.prepare``: the mapping, the
    DUO message and the acknowledgement), which would otherwise be most of the sequential part.
    ``rulesets``: rule sets already loaded, by file (``RuleSet.path``), which the workers take
    instead of loading them again.
    """
    from concurrent.futures import ProcessPoolExecutor

    rules = rules or {}
    items: list[Item] = [(e.seq, e.meta["partner"], e.payload or b"", e.at, rules.get(e.seq))
                         for e in sorted(archive.entries, key=lambda x: x.seq) if _checked(e)]
    args = (archive.certs, config, items, rulesets or {})
    chunks = [(n, min(n + 32, len(items))) for n in range(0, len(items), 32)]
    if workers <= 1 or len(items) < 50:  # a pool costs more than it saves for a few
        _init_worker(*args)
        try:
            yield itertools.chain.from_iterable(map(_verdicts, chunks))
        finally:
            _WORKER.pop("items", None)  # this process's: the archive's bytes are not kept after the replay
        return
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=args) as pool:
        yield itertools.chain.from_iterable(pool.map(_verdicts, chunks))


def _checked(e: Entry) -> bool:
    return e.kind == "inbound" and e.meta.get("channel") != "feed"


def _rules_plan(archive: Archive, entries: list[Entry], rt: ReplayRuntime, follow_history: bool) -> dict[int, str]:
    """Per checked push, the rule set file it will be assessed with, foreseeing the switches of
    ``_Replayer._history_until``. A guess, for the workers: the replaying process takes their
    assessment only if it was made with the rule set in force then (``Prepared.ruleset``), so a
    wrong guess costs time, never a difference."""
    from gateway.runtime import ruleset_path

    path = str(rt.ruleset.path)
    history = RulesHistory((archive.manifest.get("rule_set_history") or []) if follow_history else [])
    plan = {}
    for e in entries:
        for event in history.due(e.at):
            candidate = ruleset_path(rt.config, _ruleset_name(event))
            if history.switches(event) and candidate.exists():
                path = str(candidate)
        if _checked(e):
            plan[e.seq] = path
    return plan


def _ruleset_name(event: dict[str, Any]) -> str:
    """The rule set a history event names ("name@sha256:..." in the archive)."""
    return str(event.get("version", "")).split("@")[0]


# ---------------------------------------------------------------- replaying

class _RecordedSender:
    """Answers each attempt with the recorded answer set just before it."""

    def __init__(self, partner: str) -> None:
        self.partner = partner
        self.outcome: Outcome = Outcome("retry")

    def send(self, delivery: Delivery) -> Outcome:
        return self.outcome

    def close(self) -> None:
        pass


class RulesHistory:
    """The archive's rule-set history (``manifest.json`` ``rule_set_history``), in time order.

    Which rule set assesses a notification is what the *process* assesses with: it starts with
    one (a ``start`` event), and takes up a rule set rolled out with ``rules apply`` within a second
    (gateway/reload.py records that as a ``start`` too). So the assessment switches at ``start``
    events; an archive whose history has none switches at ``apply`` events.
    """

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.pending = sorted((dict(e) for e in events if "t" in e), key=lambda e: float(e["t"]))
        self.by_start = any(e.get("source") == "start" for e in self.pending)

    def due(self, t: float) -> Iterator[dict[str, Any]]:
        while self.pending and float(self.pending[0]["t"]) <= t:
            yield self.pending.pop(0)

    def switches(self, event: dict[str, Any]) -> bool:
        return event.get("source") == ("start" if self.by_start else "apply")


class _Replayer:
    def __init__(self, rt: ReplayRuntime, archive: Archive, verdicts: Iterator[Verdict], *,
                 prechecked: bool) -> None:
        from gateway.delivery.outbox import CircuitBreaker, Worker
        from gateway.routes import duo_to_cjib

        self.rt = rt
        self.certs = {p: _cert_der(t) for p, t in rt.trust.items()}
        self.senders = {p: _RecordedSender(p) for p in ("duo", "cjib")}
        self.workers = {p: Worker(rt, s, CircuitBreaker(10**9, 1.0), name=f"replay-{p}",
                                  follow_up=duo_to_cjib.follow_up(rt) if p == "cjib" else None)
                        for p, s in self.senders.items()}
        self.answers: list[tuple[Entry, int, bytes]] = []
        self.checks = prechecked
        self.verdicts = verdicts
        #: What happened to each delivery (partner, key), in order: queued, each attempt, stray answers.
        self.events: dict[tuple[str, str], list[str]] = {}
        #: seq of an inbound or feed entry -> what the gateway made of it (outcome, fault code).
        self.taken: dict[int, tuple[str | None, str | None]] = {}
        self._seen = {"outbox": 0, "inbound": 0, "messages": 0}
        self.history = RulesHistory(archive.manifest.get("rule_set_history") or [])
        self.problems: list[Case] = []  # rule sets of the history that this build lacks

    def run(self, entries: list[Entry], progress: Callable[[int, int], None] | None = None,
            *, follow_history: bool = True) -> None:
        clock = self.rt.clock
        for n, e in enumerate(entries, 1):
            if follow_history:
                self._history_until(e.at)
            clock.set(_when(e.at))  # type: ignore[attr-defined]
            step = getattr(self, f"_{e.kind}")
            step(e)
            self._note(e)
            if progress is not None and (n % 100 == 0 or n == len(entries)):
                progress(n, len(entries))
        if follow_history:
            self._history_until(float("inf"))
        self._note_queued()

    def _history_until(self, t: float) -> None:
        """Switch rule sets and queue roll-out corrections recorded up to ``t``, at their times."""
        from gateway.rules import rollout

        for event in self.history.due(t):
            ruleset = self._ruleset(event)
            if ruleset is None:
                continue
            self.rt.clock.set(_when(event["t"]))  # type: ignore[attr-defined]
            if self.history.switches(event):
                self.rt.ruleset = ruleset
            if event.get("source") == "apply" and event.get("corrections") is not None:
                rollout.apply_corrections(self.rt, ruleset, "replay")
            self._note_queued()

    def _ruleset(self, event: dict[str, Any]) -> Any:
        from gateway.core.errors import ConfigError
        from gateway.runtime import load_ruleset

        name = _ruleset_name(event)
        try:
            return load_ruleset(self.rt.config, name)
        except ConfigError:
            text = (f"rule set {name} ({event.get('source')} at {event.get('at')}) is not in this build's "
                    f"rules directory")
            self.problems.append(Case(f"rule set history {event.get('at')} {name}", False, text + "\n",
                                      first=text))
            return None

    def _note_queued(self) -> None:
        """Note the deliveries queued since the last call, in the order they were queued.

        Called before each recorded answer and at the end rather than after every exchange (a
        read, one transaction, per exchange): a delivery's story only grows by "queued" (here) and
        by the attempts that answers make, so each story keeps its order."""
        for oid, partner, key in self.rt.store.query(
                "SELECT id, partner, idempotency_key FROM outbox WHERE id > :n ORDER BY id", {"n": self._seen["outbox"]}):
            self.events.setdefault((partner, key), []).append("queued")
            self._seen["outbox"] = int(oid)

    def _note(self, e: Entry) -> None:
        """Record what became of an inbound or feed entry (the deliveries it queued: ``_note_queued``)."""
        if e.kind == "inbound":
            rows = self.rt.store.query("SELECT id, outcome, fault_code FROM inbound WHERE id > :n ORDER BY id",
                                       {"n": self._seen["inbound"]})
            if rows:
                self._seen["inbound"] = int(rows[-1][0])
            self.taken[e.seq] = (rows[-1][1], rows[-1][2]) if rows else (None, None)
        elif e.kind == "feed":
            rows = self.rt.store.query("SELECT MAX(id) FROM messages WHERE id > :n AND route = 'cjib-duo'",
                                       {"n": self._seen["messages"]})
            new = rows[0][0] is not None
            if new:
                self._seen["messages"] = int(rows[0][0])
            self.taken[e.seq] = ("taken" if new else "repeat", None)

    def _inbound(self, e: Entry) -> None:
        from gateway.routes import duo_to_cjib, ind_to_duo

        meta, raw = e.meta, e.payload or b""
        if self.checks and _checked(e):
            seq, passes, checked, prepared = next(self.verdicts)
            assert seq == e.seq, "signature checks out of step with the replay"
            self.rt.verify = not passes
            if checked is not None and self._stored(e, checked, prepared):
                return
        if meta["partner"] == "duo":
            headers = {"idempotency-key": meta["message_key"]} if meta.get("message_key") else {}
            answer = duo_to_cjib.handle_vorderingoverdracht(self.rt, raw, headers, self.certs.get("duo"))
        elif meta.get("channel") == "feed":
            status, body = self._from_feed(e)
            self.answers.append((e, status, body))
            return
        else:
            answer = ind_to_duo.handle_ontvang_melding(self.rt, raw, client_cert_der=self.certs.get("ind"))
        self.answers.append((e, answer.status, answer.body))

    def _stored(self, e: Entry, verified: Any, prepared: Any) -> bool:
        """The rest of ``gateway.routes.ind_to_duo.handle_ontvang_melding`` for a push that IND's
        endpoint passed in a worker: the route's store part, at the recorded time, with what the
        worker ``prepared`` if that was assessed with the rule set in force now. False when that
        refuses it (a meldingId used before for other content) or the store fails: the store then
        wrote nothing (one transaction, or refused before it), and the whole endpoint runs again so
        the answer and its record come from the real code."""
        from gateway.core.errors import InboundRefused, StoreError
        from gateway.core.store import InboundRecord
        from gateway.routes import ind_to_duo

        received = self.rt.clock.now()
        record = InboundRecord(partner="ind", operation=ind_to_duo.OPERATION, raw=e.payload or b"",
                               received_at=received.timestamp(), message_key=verified.message_id)
        try:
            answer = ind_to_duo.accept_verified(self.rt, verified, record, received, self._usable(prepared))
        except (InboundRefused, StoreError):
            self.rt.verify = True
            return False
        self.answers.append((e, answer.status, answer.body))
        return True

    def _usable(self, prepared: Any) -> Any:
        # The worker assessed with the rule set it foresaw and made no signatures (as this process,
        # whose runtime has no key of its own): anything else is made again here.
        if prepared is None or prepared.ruleset != self.rt.ruleset.version or self.rt.own is not None:
            return None
        return prepared

    def _from_feed(self, e: Entry) -> tuple[int, bytes]:
        # The same steps as gateway.routes.ind_to_duo.fetch_from for one fetched notification.
        from gateway.core.errors import InboundRefused
        from gateway.core.store import InboundRecord
        from gateway.routes import ind_to_duo as route
        from gateway.routes.common import record_refusal
        from gateway.wire import xmlsafe

        received = self.rt.clock.now()
        record = InboundRecord(partner="ind", operation=e.meta["operation"], raw=e.payload or b"",
                               received_at=received.timestamp(), channel="feed")
        try:
            element = xmlsafe.parse(record.raw, max_bytes=self.rt.config.ind.max_message_bytes)
            answer = route.accept_melding(self.rt, element, record, received)
            return answer.status, answer.body
        except InboundRefused as exc:
            record_refusal(self.rt, record, exc, status=0, body=b"")
            return 0, b""

    def _feed(self, e: Entry) -> None:
        from gateway.core.models import CjibStatuswijziging, Fout
        from gateway.routes import cjib_to_duo

        c = json.loads(e.payload or b"{}")
        change = CjibStatuswijziging(
            volgnummer=c["volgnummer"], zaaknummer=c["zaaknummer"], opdrachtgever_referentie=c["opdrachtgeverReferentie"],
            status=c["status"], openstaand_centen=c["openstaandCenten"], tijdstip=c["tijdstip"],
            redenen=tuple(Fout(r["code"], r["omschrijving"], r.get("pad")) for r in c.get("redenen", [])))
        cjib_to_duo.take_change(self.rt, change)

    def _answer(self, e: Entry) -> None:
        meta = e.meta
        if str(meta.get("outcome", "")).endswith("-lease-lost") or meta["partner"] not in self.workers:
            return
        self._note_queued()
        story = self.events.setdefault((meta["partner"], meta["message_key"]), [])
        delivery = self._lease(meta["partner"], meta["message_key"])
        if delivery is None:  # not queued (yet), or already final: the comparison reports it
            story.append(f"answer to attempt {meta.get('attempt')} with no delivery waiting for it")
            return
        outcome = _outcome(e)
        self.senders[meta["partner"]].outcome = outcome
        self.workers[meta["partner"]].attempt(delivery)
        story.append(attempt_event(delivery.attempt, outcome.kind, outcome.http_status))

    def _lease(self, partner: str, key: str) -> Delivery | None:
        owner = self.workers[partner].owner
        with self.rt.store.tx() as t:
            row = t.one("UPDATE outbox SET lease_owner = :o, lease_expires_at = :u, attempts = attempts + 1 "
                        "WHERE partner = :p AND idempotency_key = :k AND state = 'pending' "
                        "RETURNING id, operation, payload, attempts, created_at",
                        {"o": owner, "u": self.rt.clock.time() + 3600, "p": partner, "k": key})
        if row is None:
            return None
        return Delivery(id=int(row[0]), partner=partner, operation=row[1], idempotency_key=key,
                        payload=self.rt.store.unseal("outbox.payload", row[2]) or b"", attempt=int(row[3]),
                        created_at=float(row[4]))

    def _outbound(self, e: Entry) -> None:
        pass  # an expectation, compared at the end


def _cert_der(trust: Any) -> bytes | None:
    from cryptography.hazmat.primitives.serialization import Encoding

    return trust.certificates[0].public_bytes(Encoding.DER) if trust.certificates else None


def _outcome(e: Entry) -> Outcome:
    """The recorded answer as this build's adapter classifies it (so a changed answer, or a changed
    classification, shows as a difference in the attempt)."""
    meta, body = e.meta, e.payload
    status = meta.get("http_status")
    if meta["partner"] == "cjib" and status is not None and body is not None:
        from gateway.routes.duo_to_cjib import cjib_outcome

        return cjib_outcome(int(status), {}, body)
    if meta["partner"] == "duo":
        from gateway.routes.ind_to_duo import duo_outcome

        outcome: Outcome = duo_outcome(None if status is None else int(status), {}, body)
        return outcome
    kind = meta.get("outcome") if meta.get("outcome") in ("success", "retry", "permanent") else "retry"
    return Outcome(kind, http_status=status, receipt=body, detail="recorded answer")  # type: ignore[arg-type]


def attempt_event(attempt: Any, kind: Any, status: Any) -> str:
    return f"attempt {attempt}: {kind} (HTTP {status if status is not None else '-'})"


# ---------------------------------------------------------------- comparing

def _compare_answers(answers: list[tuple[Entry, int, bytes]], taken: dict[int, tuple[str | None, str | None]]
                     ) -> list[Case]:
    """One case per inbound message: what the gateway made of it (accepted, repeat, refused with
    which code) and what it answered (status and body)."""
    cases = []
    for e, status, body in answers:
        m = e.meta
        name = f"seq {e.seq} answer to {m['partner']} {m['operation']} {m.get('message_key') or ''}".strip()
        outcome, fault = taken.get(e.seq, (None, None))
        first = _first_of([
            ("outcome", _fate(m.get("outcome"), m.get("fault_code")), _fate(outcome, fault)),
            ("HTTP status", m.get("http_status"), status),
        ])
        if first is None and not same(e.response, body):
            first = "the answer's content differs"
        diff = "" if first is None else _diff(
            name, f"{_fate(m.get('outcome'), m.get('fault_code'))}, HTTP {m.get('http_status')}\n" + canonical(e.response),
            f"{_fate(outcome, fault)}, HTTP {status}\n" + canonical(body))
        cases.append(Case(name, first is None, diff, e, body,
                          {"http_status": status, "outcome": outcome, "fault_code": fault}, first or ""))
    return cases


def _fate(outcome: Any, fault: Any) -> str:
    return f"{outcome} {fault}" if fault else str(outcome)


def _first_of(pairs: list[tuple[str, Any, Any]]) -> str | None:
    for what, recorded, replayed in pairs:
        if recorded != replayed:
            return f"{what}: recorded {recorded}, replayed {replayed}"
    return None


def _compare_feed(entries: list[Entry], taken: dict[int, tuple[str | None, str | None]]) -> list[Case]:
    """Every recorded feed change was a new one when it was taken in; a repeat is a duplicated exchange."""
    cases = []
    previous: int | None = None
    for e in sorted(entries, key=lambda x: x.seq):
        if e.kind == "feed":
            got = taken.get(e.seq, (None, None))[0]
            first = None if got == "taken" else f"feed change: recorded taken in, replayed {got}"
            # The feed is read from a cursor: every change, in CJIB's order, none twice. A gap means
            # a change is missing from the archive, which may have had no effect of its own.
            number = _volgnummer(e)
            if first is None and previous is not None and number is not None and number != previous + 1:
                first = f"feed sequence: volgnummer {number} follows {previous}"
            previous = number if number is not None else previous
            name = f"seq {e.seq} feed {e.meta.get('message_key')}"
            cases.append(Case(name, first is None, "" if first is None else first + "\n", e, e.payload,
                              {}, first or ""))
    return cases


def _volgnummer(e: Entry) -> int | None:
    try:
        return int(json.loads(e.payload or b"{}")["volgnummer"])
    except (ValueError, KeyError, TypeError):
        return None


#: Final states that replay cannot reach by itself: an operator resolves a dead letter by hand.
_OPERATOR_STATES = {"resolved": "dead"}


def recorded_stories(entries: list[Entry]) -> dict[tuple[str, str], list[str]]:
    """Per delivery (partner, key), the recorded events in order: queued, then each attempt."""
    stories: dict[tuple[str, str], list[str]] = {}
    for e in sorted(entries, key=lambda x: x.seq):
        m = e.meta
        if e.kind == "outbound":
            stories.setdefault((m["partner"], m["message_key"]), []).append("queued")
        elif e.kind == "answer" and not str(m.get("outcome", "")).endswith("-lease-lost"):
            stories.setdefault((m["partner"], m["message_key"]), []).append(
                attempt_event(m.get("attempt"), m.get("outcome"), m.get("http_status")))
    return stories


def _last_receipts(entries: list[Entry]) -> dict[tuple[str, str], bytes | None]:
    last: dict[tuple[str, str], bytes | None] = {}
    for e in sorted(entries, key=lambda x: x.seq):
        if e.kind == "answer":
            last[(e.meta["partner"], e.meta["message_key"])] = e.payload
    return last


def _compare_outbound(rt: Runtime, entries: list[Entry], events: dict[tuple[str, str], list[str]]) -> list[Case]:
    """One case per delivery: its content, the order of its events and each attempt's classified
    outcome, its final state and the receipt kept; the first difference names the case."""
    expected = {(e.meta["partner"], e.meta["message_key"]): e for e in entries if e.kind == "outbound"}
    rows = rt.store.query("SELECT o.partner, o.operation, o.idempotency_key, o.order_key, o.payload, o.created_at, "
                          "m.route, o.state, o.receipt FROM outbox o JOIN messages m ON m.id = o.message_id ORDER BY o.id")
    produced = {(r[0], r[2]): r for r in rows}
    stories, receipts = recorded_stories(entries), _last_receipts(entries)
    cases = []
    keys = list(expected) + [k for k in produced if k not in expected]
    keys += [k for k in stories if k not in expected and k not in produced]  # answers to nothing
    for key in keys:
        e, row = expected.get(key), produced.get(key)
        operation = e.meta["operation"] if e else row[1] if row else "answer"
        name = f"{key[0]} {operation} {key[1]}"
        made = rt.store.unseal("outbox.payload", row[4]) if row else None
        meta = {} if row is None else {"route": row[6], "partner": row[0], "operation": row[1],
                                       "message_key": row[2], "order_key": row[3], "t": float(row[5]),
                                       "state": row[7]}
        first = _delivery_difference(e, row, made, stories.get(key, []), events.get(key, []),
                                     receipts.get(key), None if row is None else rt.store.unseal("outbox.receipt", row[8]))
        diff = "" if first is None else first + "\n" + _diff(
            name, canonical(e.payload) if e else "(not recorded)\n", canonical(made) if row else "(not produced)\n")
        cases.append(Case(name, first is None, diff, e, made, meta, first or ""))
    return cases


def _delivery_difference(e: Entry | None, row: Any, made: bytes | None, recorded: list[str], replayed: list[str],
                         receipt: bytes | None, kept: bytes | None) -> str | None:
    if e is None and row is None:
        return "answered, but neither recorded nor produced as a delivery"
    if e is None:
        return "produced, but not recorded"
    if row is None:
        return "recorded, but not produced"
    if not same(e.payload, made):
        return "the message's content differs"
    for n, (was, now) in enumerate(zip(recorded, replayed, strict=False), 1):
        if was != now:
            return f"event {n}: recorded {was}, replayed {now}"
    if len(recorded) != len(replayed):
        n = min(len(recorded), len(replayed)) + 1
        was = recorded[n - 1] if len(recorded) >= n else "nothing"
        now = replayed[n - 1] if len(replayed) >= n else "nothing"
        return f"event {n}: recorded {was}, replayed {now}"
    state = _OPERATOR_STATES.get(str(e.meta.get("outcome")), e.meta.get("outcome"))
    if state != row[7]:
        return f"final state: recorded {e.meta.get('outcome')}, replayed {row[7]}"
    if receipt is not None and not same(receipt, kept):
        return "the receipt kept differs"
    return None


def replay(archive: Archive, *, config: Any | None = None, verify: bool = True,
           workers: int | None = None, progress: Callable[[int, int], None] | None = None,
           rules_from_build: bool = False) -> Report:
    """Replay the whole archive; the report holds one case per compared message.

    ``workers``: processes for the endpoints' checks (default: one per CPU; ``prechecks``). 0: no
    such processes, every inbound message goes through its whole endpoint in this process, checks
    on: slower, the path the faster one is tested against. By default the
    archive's rule-set history is followed (rule sets switched and roll-out corrections queued at
    their recorded times); ``rules_from_build`` assesses everything with this build's active rule
    set instead and reports whose indication would differ (``Report.impact``).
    """
    import os

    started = time.perf_counter()
    config = config or default_config()
    entries = sorted(archive.entries, key=lambda e: e.seq)
    with tempfile.TemporaryDirectory(prefix="gateway-replay-") as tmp, ExitStack() as stack:
        rt = _runtime(archive, config, Path(tmp), verify)
        if rules_from_build:
            from gateway.runtime import load_ruleset

            rt.ruleset = load_ruleset(config)
        verdicts: Iterator[Verdict] = iter(())
        if rt.verify and workers != 0:
            plan = _rules_plan(archive, entries, rt, follow_history=not rules_from_build)
            verdicts = stack.enter_context(prechecks(archive, config, workers or os.cpu_count() or 1, plan,
                                                     {str(rt.ruleset.path): rt.ruleset}))
        try:
            replayer = _Replayer(rt, archive, verdicts, prechecked=rt.verify and workers != 0)
            replayer.run(entries, progress, follow_history=not rules_from_build)
            outbound = _compare_outbound(rt, entries, replayer.events)
            impact: list[dict[str, Any]] = []
            if rules_from_build:
                outbound, impact = _impact(outbound, rt.ruleset.version)
            cases = (replayer.problems + _compare_answers(replayer.answers, replayer.taken)
                     + _compare_feed(entries, replayer.taken) + outbound)
        finally:
            rt.store.close()
    return Report(cases=cases, seconds=time.perf_counter() - started, exchanges=len(entries), impact=impact,
                  ruleset=rt.ruleset.version if rules_from_build else None)


def _assessment(data: bytes | None) -> dict[str, str] | None:
    """plichtIndicatie, regel, regelsetVersie and meldingId of a DUO InburgeraarMelding, if it is one."""
    if not data:
        return None
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError:
        return None
    found = {name: root.findtext(f".//{{*}}{name}") for name in ("plichtIndicatie", "regel", "regelsetVersie",
                                                                 "meldingId")}
    return {k: v for k, v in found.items() if v is not None} if found["plichtIndicatie"] else None


def _impact(cases: list[Case], version: str) -> tuple[list[Case], list[dict[str, Any]]]:
    """For --rules-from-build: the people whose indication this build's rule set changes.

    The DUO messages of IND notifications are compared on their assessment only (their
    ``regelsetVersie`` differs by design); the recorded roll-out's corrections are left out (this
    mode does not replay the roll-out; the impact list is what a roll-out would correct).
    """
    kept, rows = [], []
    for c in cases:
        e = c.entry
        if e is not None and e.meta.get("route") == "rules-duo":
            continue
        was, now = _assessment(e.payload if e else None), _assessment(c.produced)
        if was is None or now is None:
            kept.append(c)
            continue
        if (was["plichtIndicatie"], was.get("regel")) == (now["plichtIndicatie"], now.get("regel")):
            kept.append(Case(c.name, True, "", e, c.produced, c.produced_meta))
            continue
        if was["plichtIndicatie"] == now["plichtIndicatie"]:
            kept.append(Case(c.name, True, "", e, c.produced, c.produced_meta))  # another rule, same indication
            continue
        rows.append({"berichtId": c.name.split()[-1], "meldingId": was.get("meldingId"),
                     "old": {k: was.get(k) for k in ("plichtIndicatie", "regel", "regelsetVersie")},
                     "new": {"plichtIndicatie": now["plichtIndicatie"], "regel": now.get("regel"),
                             "regelsetVersie": version}})
        first = (f"indication: recorded {was['plichtIndicatie']} ({was.get('regel')}), this build "
                 f"{now['plichtIndicatie']} ({now.get('regel')})")
        kept.append(Case(c.name, False, first + "\n", e, c.produced, c.produced_meta, first))
    return kept, rows


# ---------------------------------------------------------------- --update, --junit

def update_archive(path: Path, archive: Archive, report: Report) -> int:
    """Make the archive's expectations what this replay produced; returns how many changed."""
    from gateway.archive.format import KIND_ORDER

    entries = list(archive.entries)
    dropped: set[int] = set()
    changed = 0
    for case in report.differences:
        e = case.entry
        if e is not None and e.kind == "inbound":
            e.response = case.produced
            for k in ("http_status", "outcome", "fault_code"):
                e.meta[k] = case.produced_meta.get(k)
        elif e is not None and e.kind == "feed":
            continue  # an input, not an expectation: nothing to rewrite
        elif e is not None and case.produced is None:
            dropped.add(e.seq)
        elif e is not None:
            e.payload = case.produced
            e.meta["outcome"] = case.produced_meta.get("state", e.meta.get("outcome"))
        elif case.produced is None:
            continue  # answers to a delivery neither recorded nor produced: inputs, kept
        else:
            made = {k: v for k, v in case.produced_meta.items() if k != "state"}
            meta = {**made, "kind": "outbound", "outcome": case.produced_meta.get("state"),
                    "at": _when(case.produced_meta["t"]).isoformat(), "seq": 10**9}
            entries.append(Entry(meta, case.produced))
        changed += 1
    entries = [e for e in entries if e.seq not in dropped]
    ordered = sorted(entries, key=lambda x: (x.at, KIND_ORDER[x.kind], x.seq))
    for seq, e in enumerate(ordered, 1):
        e.meta["seq"] = seq
    keep = ("counts", "exchanges", "index_sha256", "certificates", "format")
    manifest = {k: v for k, v in archive.manifest.items() if k not in keep}
    manifest["updated"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    write_archive(path, ordered, manifest, archive.certs, replace=True)
    return changed


def junit_xml(report: Report) -> str:
    out = [f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="gateway-replay" tests="{len(report.cases)}" '
           f'failures="{len(report.differences)}" time="{report.seconds:.3f}">']
    for c in report.cases:
        out.append(f"  <testcase classname=\"replay\" name={quoteattr(c.name)}>")
        if not c.ok:
            out.append(f"    <failure message={quoteattr(c.first or 'differs from the recording')}>"
                       f"{escape(c.diff)}</failure>")
        out.append("  </testcase>")
    out.append("</testsuite>\n")
    return "\n".join(out)
