"""Rule-set operations over the store: impact of a new rule set, its roll-out with corrections, delays.

- :func:`impact` re-evaluates every stored IND notification under a new rule set and lists the
  people whose ``plichtIndicatie`` would change. It reads the notification from the raw bytes
  as received (``inbound.raw``), not from ``messages.facts``, because the facts hold no birth
  date or nationality. It only reads: nothing in the store changes.
- :func:`apply_corrections` makes the new rule set the active one (``state_kv`` ``rules.active``,
  which :func:`gateway.runtime.build_runtime` prefers over the config) and queues a DUO
  ``InburgeraarMelding`` CORRECTIE per change on route ``rules-duo``. The correction's berichtId
  is derived from the earlier berichtId and the rule set's version, so running it twice queues
  nothing new.
- :func:`delays` reports the notifications that reached the gateway after the delivery window.

"Old" is what DUO holds now: the berichtId and indication last sent for that notification, i.e.
the original, or the latest correction already queued. A notification that a later IND CORRECTIE
replaced is left out: the correction is what counts for DUO.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from gateway.core.errors import GatewayError
from gateway.core.models import IndMelding
from gateway.core.store import RULES_CHANNEL, Store
from gateway.routes import ind_to_duo as route
from gateway.routes.ind_to_duo import decode_raw
from gateway.rules import engine as rules
from gateway.rules.engine import ACTIVE_KEY, active_name

__all__ = [
    "ACTIVE_KEY",
    "ROUTE",
    "DELAY_BUCKETS",
    "Change",
    "ImpactReport",
    "DelayReport",
    "active_name",
    "impact",
    "apply_corrections",
    "activate",
    "note_started",
    "delays",
    "export_delay_metrics",
    "decode_raw",
]

ROUTE = route.CORRECTION_ROUTE
_IND_ROUTE = "ind-duo"
#: (label, lowest, highest) days past the window; None: no upper bound.
DELAY_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("1-7", 1, 7), ("8-30", 8, 30), ("31-90", 31, 90), ("over 90", 91, None))


# ---------------------------------------------------------------- impact

@dataclass(frozen=True)
class Change:
    """One notification whose indication the new rule set changes."""

    message_id: int
    melding_id: str
    received_at: float
    earlier_bericht_id: str  # what DUO holds now; the correction replaces it
    old_indicatie: str
    old_regel: str
    old_versie: str
    new_indicatie: str
    new_regel: str
    regime: str  # the new rule set's regime for ingangsdatum
    ingangsdatum: str
    person: dict[str, Any]  # unmasked; mask before showing
    melding: IndMelding = field(repr=False, compare=False)
    leveringstermijn_dagen: int = 7

    def to_dict(self, unmask: bool = False) -> dict[str, Any]:
        from gateway.ops.views import fmt_time, mask_person

        return {
            "meldingId": self.melding_id, "received": fmt_time(self.received_at),
            "berichtId": self.earlier_bericht_id, "ingangsdatum": self.ingangsdatum, "regime": self.regime,
            "old": {"plichtIndicatie": self.old_indicatie, "regel": self.old_regel,
                    "regelsetVersie": self.old_versie},
            "new": {"plichtIndicatie": self.new_indicatie, "regel": self.new_regel},
            "person": mask_person(self.person, unmask),
        }


@dataclass
class ImpactReport:
    ruleset: str  # the new rule set's version
    since: float | None
    evaluated: int = 0
    unchanged: int = 0
    superseded: int = 0  # replaced by a later IND CORRECTIE, so not evaluated
    unreadable: int = 0  # no raw notification stored, or it no longer decodes
    rule_only: int = 0  # same indication, another rule: no correction needed
    changes: list[Change] = field(default_factory=list)

    def by_indication(self) -> dict[str, int]:
        return _count(f"{c.old_indicatie} -> {c.new_indicatie}" for c in self.changes)

    def by_rule(self) -> dict[str, int]:
        return _count(f"{c.old_regel} -> {c.new_regel}" for c in self.changes)

    def by_regime(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for regime in sorted({c.regime for c in self.changes}):
            mine = [c for c in self.changes if c.regime == regime]
            out[regime] = {"count": len(mine),
                           "by_indication": _count(f"{c.old_indicatie} -> {c.new_indicatie}" for c in mine)}
        return out

    def to_dict(self, unmask: bool = False) -> dict[str, Any]:
        from gateway.ops.views import fmt_time

        return {
            "ruleset": self.ruleset, "since": fmt_time(self.since) if self.since is not None else None,
            "evaluated": self.evaluated, "unchanged": self.unchanged, "superseded": self.superseded,
            "unreadable": self.unreadable, "rule_only_changes": self.rule_only, "changed": len(self.changes),
            "by_indication": self.by_indication(), "by_rule": self.by_rule(), "by_regime": self.by_regime(),
            "people": [c.to_dict(unmask) for c in self.changes],
        }


def _count(keys: Any) -> dict[str, int]:
    return dict(sorted(Counter(keys).items()))


def impact(store: Store, new_ruleset: rules.RuleSet, since: float | None = None, *,
           only: int | None = None) -> ImpactReport:
    """Who would get another indication under ``new_ruleset`` (or only the notification with
    message id ``only``: the console's correction of one message); read-only."""
    report = ImpactReport(ruleset=new_ruleset.version, since=since)
    superseded = _superseded(store)
    latest = _latest_corrections(store)
    for message_id, received_at, facts, person, raw in _notifications(store, since, only):
        melding_id = facts.get("meldingId", "")
        if melding_id in superseded:
            report.superseded += 1
            continue
        try:
            melding = decode_raw(raw)
        except (GatewayError, etree.LxmlError, ValueError):
            report.unreadable += 1  # counted, never a crash: one bad row must not hide the rest
            continue
        report.evaluated += 1
        last = latest.get(melding_id, facts)
        verdict = new_ruleset.evaluate(_rule_input(melding))
        if verdict.plicht_indicatie == last.get("plichtIndicatie"):
            report.unchanged += 1
            report.rule_only += int(verdict.regel != last.get("regel"))
            continue
        report.changes.append(Change(
            message_id=message_id, melding_id=melding_id, received_at=received_at,
            earlier_bericht_id=last["berichtId"], old_indicatie=str(last.get("plichtIndicatie")),
            old_regel=str(last.get("regel")), old_versie=str(last.get("regelsetVersie")),
            new_indicatie=verdict.plicht_indicatie, new_regel=verdict.regel, regime=verdict.regime,
            ingangsdatum=melding.verblijf.ingangsdatum.isoformat(), person=person or {}, melding=melding,
            leveringstermijn_dagen=int(facts.get("leveringstermijnDagen", 7))))
    return report


def _rule_input(m: IndMelding) -> rules.RuleInput:
    return rules.RuleInput(
        wettelijke_grondslag=m.verblijf.wettelijke_grondslag, verblijfsdoel=m.verblijf.verblijfsdoel,
        nationaliteiten=m.persoon.nationaliteiten, geboortedatum=m.persoon.geboortedatum,
        ingangsdatum=m.verblijf.ingangsdatum)


def _notifications(store: Store, since: float | None,
                   message_id: int | None = None) -> list[tuple[int, float, dict[str, Any], Any, bytes]]:
    """(message id, received at, facts, person, raw bytes) of each accepted IND notification."""
    sql = ("SELECT m.id, m.received_at, m.facts, m.person, i.raw FROM messages m "
           "JOIN inbound i ON i.message_id = m.id AND i.outcome = 'accepted' "
           "WHERE m.route = :route" + (" AND m.received_at >= :since" if since is not None else "")
           + (" AND m.id = :mid" if message_id is not None else "") + " ORDER BY m.id")
    seen: set[int] = set()
    out = []
    for r in store.query(sql, {"route": _IND_ROUTE, "since": since, "mid": message_id}):
        if int(r[0]) in seen:
            continue
        seen.add(int(r[0]))
        out.append((int(r[0]), float(r[1]), json.loads(r[2]), store.person(r[3]) or None,
                    store.unseal("inbound.raw", r[4]) or b""))
    return out


def _superseded(store: Store) -> set[str]:
    """meldingIds that a later IND CORRECTIE names in correctieVan (whatever --since says)."""
    # facts is stored with sorted keys and no spaces, so the LIKE is exact and keeps the scan small.
    rows = store.query("SELECT facts FROM messages WHERE route = :route AND facts LIKE :pattern",
                       {"route": _IND_ROUTE, "pattern": '%"soortMelding":"CORRECTIE"%'})
    return {f["correctieVan"] for f in (json.loads(r[0]) for r in rows) if f.get("correctieVan")}


def _latest_corrections(store: Store) -> dict[str, dict[str, Any]]:
    """The facts of the latest rule-set correction per meldingId: what DUO holds now."""
    rows = store.query("SELECT facts FROM messages WHERE route = :route ORDER BY id", {"route": ROUTE})
    latest: dict[str, dict[str, Any]] = {}
    for r in rows:
        facts = json.loads(r[0])
        latest[facts["meldingId"]] = facts
    return latest


# ---------------------------------------------------------------- roll-out

def apply_corrections(rt: Any, new_ruleset: rules.RuleSet, operator: str, *, channel: str = "cli") -> int:
    """Queue one DUO CORRECTIE per changed indication, then make ``new_ruleset`` active; return how many.

    ``rt`` is a :class:`gateway.runtime.Runtime` (its keys sign the corrections). Re-running
    queues nothing new: a change already corrected is no longer a change, and the berichtId
    of a correction is deterministic (unique key on route + berichtId).
    """
    report = impact(rt.store, new_ruleset)
    queued = sum(route.queue_correction(rt, c, new_ruleset, operator) for c in report.changes)
    activate(rt.store, new_ruleset, operator, note=f"{queued} correction(s) queued", corrections=queued,
             channel=channel)
    if queued:
        rt.notify("duo")
    return queued


def correct_one(rt: Any, message_id: int, operator: str) -> dict[str, Any] | None:
    """Queue the CORRECTIE for one notification whose indication the active rule set changes.

    None when there is nothing to correct (the same indication, superseded, or not an IND
    notification); otherwise what changed and whether a correction was queued (False when this
    rule set's correction was queued before: its berichtId is deterministic).
    """
    report = impact(rt.store, rt.ruleset, only=message_id)
    if not report.changes:
        return None
    change = report.changes[0]
    queued = route.queue_correction(rt, change, rt.ruleset, operator)
    if queued:
        rt.notify("duo")
    return {"meldingId": change.melding_id, "from": change.old_indicatie, "to": change.new_indicatie,
            "queued": queued}


def activate(store: Store, ruleset: rules.RuleSet, operator: str, note: str | None = None,
             corrections: int | None = None, *, channel: str = "cli") -> None:
    """Record ``ruleset`` as the active one, with who and when in the operator log and in the rule-set
    history (``corrections``: how many were queued; None when none were asked for)."""
    now = time.time()
    with store.tx() as t:
        t.set_kv(ACTIVE_KEY, ruleset.name)
        t.notify(RULES_CHANNEL, ruleset.name)  # the running processes take it up (gateway/reload.py)
        t.operator_action(operator, "rules-apply", f"ruleset:{ruleset.version}", note, now, channel=channel)
        _history_row(t, now, ruleset.version, "apply", operator, corrections)


def note_started(store: Store, ruleset: rules.RuleSet, actor: str) -> None:
    """A process starts assessing with ``ruleset``: add it to the history when it differs from the
    version the last process started with (restarts with the same rule set add nothing)."""
    with store.tx() as t:
        last = t.one("SELECT version FROM rules_history WHERE source = 'start' ORDER BY at DESC, id DESC LIMIT 1")
        if last is None or last[0] != ruleset.version:
            _history_row(t, time.time(), ruleset.version, "start", actor, None)


def _history_row(t: Any, at: float, version: str, source: str, actor: str | None, corrections: int | None) -> None:
    t.execute("INSERT INTO rules_history (at, version, source, actor, corrections) "
              "VALUES (:at, :v, :s, :a, :c)", {"at": at, "v": version, "s": source, "a": actor, "c": corrections})


# ---------------------------------------------------------------- delays

@dataclass
class DelayReport:
    since: float | None
    rows: list[dict[str, Any]] = field(default_factory=list)  # unmasked person inside

    @property
    def total(self) -> int:
        return len(self.rows)

    @property
    def total_days(self) -> int:
        return sum(r["vertragingDagen"] for r in self.rows)

    def buckets(self) -> dict[str, int]:
        out = {label: 0 for label, _, _ in DELAY_BUCKETS}
        for r in self.rows:
            out[_bucket(r["vertragingDagen"])] += 1
        return out

    def to_dict(self, unmask: bool = False) -> dict[str, Any]:
        from gateway.ops.views import fmt_time, mask_person

        return {
            "since": fmt_time(self.since) if self.since is not None else None,
            "total": self.total, "total_days": self.total_days, "distribution": self.buckets(),
            "people": [{**{k: v for k, v in r.items() if k != "person"},
                        "received": fmt_time(r["received_at"]), "person": mask_person(r["person"], unmask)}
                       for r in self.rows],
        }


def _bucket(days: int) -> str:
    for label, low, high in DELAY_BUCKETS:
        if days >= low and (high is None or days <= high):
            return label
    raise ValueError("a delay is at least one day")


def delays(store: Store, since: float | None = None) -> DelayReport:
    """IND notifications that reached the gateway after the delivery window (vertragingDagen > 0)."""
    sql = ("SELECT id, received_at, facts, person FROM messages WHERE route = :route "
           "AND facts NOT LIKE :on_time" + (" AND received_at >= :since" if since is not None else "")
           + " ORDER BY received_at, id")
    report = DelayReport(since=since)
    for r in store.query(sql, {"route": _IND_ROUTE, "on_time": '%"vertragingDagen":0,%', "since": since}):
        facts = json.loads(r[2])
        days = int(facts.get("vertragingDagen") or 0)
        if days <= 0:
            continue
        report.rows.append({
            "messageId": int(r[0]), "meldingId": facts.get("meldingId"), "received_at": float(r[1]),
            "datumBesluit": facts.get("datumBesluit"), "leveringstermijnDagen": facts.get("leveringstermijnDagen"),
            "vertragingDagen": days, "person": store.person(r[3]),
        })
    return report


#: ``vertragingDagen`` out of the facts JSON, per dialect (PostgreSQL keeps facts as text).
_DELAY_DAYS = {"sqlite": "CAST(json_extract(facts, '$.vertragingDagen') AS INTEGER)",
               "postgresql": "CAST(CAST(facts AS json) ->> 'vertragingDagen' AS INTEGER)"}


def late_summary(store: Store, since: float, more_than_days: int) -> tuple[int, int]:
    """(how many, the most days late) of the IND notifications received since ``since`` that came
    more than ``more_than_days`` late: the alerts job's question, counted by the database.

    ``delays`` answers the same for the report, row by row with each person opened; done every
    minute over a day's notifications (a quarter of them late in the soak) that cost CPU and
    memory in proportion to the traffic (bench/RESULTS.md, the soak).
    """
    days = _DELAY_DAYS[store.dialect]
    sql = (f"SELECT COUNT(*), MAX(d) FROM (SELECT {days} AS d FROM messages WHERE route = :route "
           "AND received_at >= :since AND facts NOT LIKE :on_time) late WHERE d > :days")
    ((count, worst),) = store.query(sql, {"route": _IND_ROUTE, "on_time": '%"vertragingDagen":0,%', "since": since,
                                          "days": max(more_than_days, 0)})
    return int(count or 0), int(worst or 0)


def export_delay_metrics(rt: Any) -> None:
    """Late notifications per delay bucket and their total days, as gauges in the runtime's registry."""
    from prometheus_client import Gauge

    g = rt.metrics.extra("delays", lambda r: (
        Gauge("gateway_delayed_notifications", "IND notifications stored past the delivery window, "
              "by days late", ["bucket"], registry=r),
        Gauge("gateway_delayed_notifications_days", "Days past the delivery window, summed over all "
              "late IND notifications", registry=r),
    ))
    report = delays(rt.store)
    for label, n in report.buckets().items():
        g[0].labels(label).set(n)
    g[1].set(report.total_days)
