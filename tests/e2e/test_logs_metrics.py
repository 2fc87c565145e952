"""Structured logs and metrics of a real ``gateway run`` process.

Proves: exactly one JSON ``attempt`` event per recorded attempt, with partner, operation,
message_id, attempt, duration_ms and outcome; and no personal data (BSN, V-number, names, birth
date of the generated notifications) anywhere in the log file, the process's standard error or
the /metrics output.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.duo.simulator import Answer, Faults
from gateway.core.store import Store
from gateway.runtime import store_for
from tests.e2e.helpers import (
    GatewayProcess,
    bericht_id,
    duo_policy,
    log_events,
    meldingen,
    metric,
    wait_until,
)


@pytest.fixture
def rig(make_chain: Any) -> Iterator[tuple[Any, GatewayProcess, Store]]:
    chain = make_chain(start=False, duo_faults=Faults(script=[503, Answer(429, retry_after_seconds=1), 503, 400],
                                                      retry_after_seconds=0),
                       overrides=duo_policy(backoff_initial_seconds=0.1, backoff_max_seconds=0.3))
    gp = GatewayProcess(chain.config_file, chain.directory / "gateway.log")
    store = store_for(chain.config)
    try:
        yield chain, gp, store
    finally:
        gp.kill()
        store.close()


def _personal_values(ms: list[Any]) -> set[str]:
    values: set[str] = set()
    for m in ms:
        p = m.persoon
        values.update(v for v in (p.bsn, p.v_nummer, p.geslachtsnaam, p.voornamen) if v)
        if p.geboortedatum != "0000-00-00":
            values.add(p.geboortedatum)
        values.add(" ".join(x for x in (p.voornamen, p.voorvoegsel, p.geslachtsnaam) if x))
    return values


def test_one_attempt_event_per_attempt_and_no_personal_data(rig: tuple[Any, GatewayProcess, Store]) -> None:
    chain, gp, store = rig
    ms = meldingen(8, seed=81)
    gp.start()
    for m in ms:
        assert chain.ind.push(gp.ind_endpoint, m).accepted
    # Seven delivered; the one DUO refused with 400 is dead.
    assert wait_until(lambda: sum(chain.duo.count(bericht_id(m.melding_id)) for m in ms) == 7, 30)
    assert wait_until(lambda: not store.query("SELECT id FROM outbox WHERE state = 'pending'"), 10)
    metrics_text = gp.get("/metrics").text
    health_text = gp.get("/health").text
    assert gp.terminate(timeout=30) == 0

    rows = store.query("SELECT o.partner, o.operation, o.idempotency_key, a.attempt, a.outcome, a.http_status "
                       "FROM attempts a JOIN outbox o ON o.id = a.outbox_id")
    assert len(rows) == 8 + 3  # one final attempt each, after three transient failures
    events = log_events(gp.log_file, "attempt")
    for e in events:
        for key in ("partner", "operation", "message_id", "attempt", "duration_ms", "outcome", "stage"):
            assert key in e, (key, e)
        assert isinstance(e["duration_ms"], (int, float)) and e["duration_ms"] >= 0
        assert e["outcome"] in ("success", "retry", "permanent")
    got = Counter((e["partner"], e["operation"], e["message_id"], e["attempt"], e["outcome"]) for e in events)
    want = Counter((r[0], r[1], r[2], int(r[3]), r[4]) for r in rows)
    assert got == want
    assert Counter(e["outcome"] for e in events) == {"success": 7, "retry": 3, "permanent": 1}
    # The metrics agree with the log.
    assert metric(metrics_text, "gateway_delivery_attempts_total", partner="duo", outcome="success") == 7
    assert metric(metrics_text, "gateway_delivery_attempts_total", partner="duo", outcome="retry") == 3
    assert metric(metrics_text, "gateway_dead_letters", route="ind-duo") == 1

    log_text = gp.log_file.read_text()
    stderr_text = (chain.directory / "gateway.stderr").read_text()
    assert '"event": "started"' in log_text and '"event": "stopped"' in log_text
    for value in _personal_values(ms):
        pattern = re.compile(r"(?<![\w-])" + re.escape(value) + r"(?![\w-])")
        for where, text in (("log file", log_text), ("stderr", stderr_text), ("/metrics", metrics_text),
                            ("/health", health_text)):
            assert not pattern.search(text), f"personal data in {where}"


def _thread_names(pid: int) -> list[str]:
    return [(task / "comm").read_text().rstrip("\n") for task in Path(f"/proc/{pid}/task").iterdir()]


def test_threads_carry_their_names_for_the_operating_system(rig: tuple[Any, GatewayProcess, Store]) -> None:
    """``top -H`` / ``ps -L`` tell the intake, each partner's workers and the jobs apart."""
    chain, gp, store = rig
    gp.start()
    m = meldingen(1, seed=82)[0]
    assert chain.ind.push(gp.ind_endpoint, m).accepted  # the intake pool starts its first thread
    assert gp.proc is not None
    names = _thread_names(gp.proc.pid)
    assert gp.terminate(timeout=30) == 0
    assert {"intake_0", "jobs", "heartbeat", "revocation"} <= set(names), names
    assert sorted(n for n in names if n.startswith("duo-")) == [f"duo-{i}" for i in range(4)], names
