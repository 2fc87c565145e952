"""Build "the past" for rule-set tests: IND notifications taken in through the real intake path.

``accept_melding`` is the code the IND endpoint and the feed use; here it runs with signing off
(``tls.enabled = false``), so thousands of notifications go in quickly and are stored exactly as
the daemon stores them: raw bytes in ``inbound`` (a SOAP envelope for a push, the bare element
for a feed fetch), facts and person in ``messages``, the DUO message in ``outbox``.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lxml import etree

from adapters.ind import codec
from gateway.core import config as config_mod
from gateway.core.models import IndMelding
from gateway.core.store import InboundRecord, Store
from gateway.routes.ind_to_duo import accept_melding
from gateway.runtime import Runtime, build_runtime
from gateway.sandbox import write_toml
from gateway.wire import soap, xmlsafe

REPO = Path(__file__).resolve().parent.parent
FAULTY = "inburgeringsplicht-2025.9-faulty"
CURRENT = "inburgeringsplicht-2026.1"
ZAMBRANO_DOEL = "VERBLIJF_BIJ_MINDERJARIG_NEDERLANDS_KIND"


def rules_dir(directory: Path) -> Path:
    """A rules directory holding the current rule set (with its cases) and the faulty one."""
    target = directory / "rules"
    target.mkdir(parents=True, exist_ok=True)
    for path in (REPO / "config" / "rules").glob("*.yaml"):
        shutil.copy(path, target / path.name)
    shutil.copy(REPO / "tests" / "fixtures" / "rules" / f"{FAULTY}.yaml", target / f"{FAULTY}.yaml")
    return target


def write_config(directory: Path, dsn: str, *, active: str = FAULTY, **extra: Any) -> Path:
    """An insecure config (no TLS, no signing) on ``dsn`` whose rule set is ``active``."""
    data: dict[str, Any] = {
        "instance": "rules-test",
        "store": {"dsn": dsn},
        "tls": {"enabled": False},
        "rules": {"directory": str(rules_dir(directory)), "active": active},
        **extra,
    }
    path = directory / "gateway.toml"
    write_toml(data, path)
    return path


def runtime(config_file: Path, store: Store) -> Runtime:
    return build_runtime(config_mod.load(config_file), store=store)


def received_shortly_after_creation(m: IndMelding) -> dt.datetime:
    return dt.datetime.fromisoformat(m.aangemaakt_op) + dt.timedelta(minutes=1)


def intake(rt: Runtime, meldingen: Iterable[IndMelding],
           received_at: Callable[[IndMelding], dt.datetime] = received_shortly_after_creation) -> None:
    """Take each notification in as IND would deliver it: odd volgnummers pushed, even ones fetched."""
    for m in meldingen:
        element = codec.encode_melding(m)
        if m.volgnummer % 2:
            env = soap.build_envelope(element, to="https://gateway.test/ind/meldingen", action=codec.ACTION_ONTVANG,
                                      message_id=f"urn:uuid:{m.melding_id}")
            raw, channel = etree.tostring(env, xml_declaration=True, encoding="utf-8"), "push"
            payload = soap.split(xmlsafe.parse(raw)).payload
        else:
            raw, channel = etree.tostring(element, encoding="utf-8"), "feed"
            payload = xmlsafe.parse(raw)
        when = received_at(m)
        record = InboundRecord(partner="ind", operation="OntvangMelding", raw=raw, received_at=when.timestamp(),
                               channel=channel, message_key=m.melding_id)
        answer = accept_melding(rt, payload, record, when)
        assert answer.status == 200, answer


def superseded(meldingen: Iterable[IndMelding]) -> set[str]:
    return {m.correctie_van for m in meldingen if m.correctie_van}


def zambrano_parents(meldingen: list[IndMelding]) -> set[str]:
    """meldingIds of art. 8(e) parents of a Dutch minor that no later IND CORRECTIE replaced."""
    gone = superseded(meldingen)
    return {m.melding_id for m in meldingen
            if m.melding_id not in gone
            and m.verblijf.wettelijke_grondslag == "VW2000_ART8_E"
            and m.verblijf.verblijfsdoel == ZAMBRANO_DOEL
            and m.verblijf.unierechtelijke_grondslag in ("ZAMBRANO", "CHAVEZ_VILCHEZ")}


def snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order: equal snapshots mean an unchanged database."""
    tables = ("inbound", "messages", "outbox", "attempts", "events", "operator_actions", "ind_sequence",
              "state_kv", "job_leases", "schema_version")
    out = {}
    for table in tables:
        rows = store.query(f"SELECT * FROM {table}")
        out[table] = sorted((tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows), key=repr)
    return out
