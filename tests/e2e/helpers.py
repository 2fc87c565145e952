"""Shared helpers for the end-to-end tests: waiting, the daemon as a real subprocess, reading
its JSON log, IND pushing the way IND does (again and again until acknowledged), and queries.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is truthy or ``timeout`` seconds passed; returns the last result."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def bericht_id(melding_id: str) -> str:
    from gateway.mapping.ind_to_duo import bericht_id_for

    return bericht_id_for(melding_id)


# ---------------------------------------------------------------- logs


def log_events(path: Path, event: str | None = None, *, offset: int = 0) -> list[dict[str, Any]]:
    """The JSON log lines of ``path`` from byte ``offset`` on (optionally one event only)."""
    if not path.exists():
        return []
    out = []
    with path.open("rb") as f:
        f.seek(offset)
        for line in f:
            line = line.strip()
            if not line.startswith(b"{"):
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut short by SIGKILL
            if event is None or rec.get("event") == event:
                out.append(rec)
    return out


# ---------------------------------------------------------------- the daemon as a subprocess


@dataclass
class GatewayProcess:
    """``gateway run --config FILE`` as a child process; ports read from its "started" log line."""

    config_file: Path
    log_file: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    ports: dict[str, int] = field(default_factory=dict)
    starts: int = 0

    def start(self, timeout: float = 30.0) -> GatewayProcess:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        env = {**os.environ, "PYTHONPATH": str(REPO), **self.env}
        stderr = (self.config_file.parent / "gateway.stderr").open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "--config", str(self.config_file)],
                                     cwd=str(REPO), env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        stderr.close()
        self.starts += 1
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            started = [e for e in log_events(self.log_file, "started", offset=offset)]
            if started:
                self.ports = {k: int(v) for k, v in started[-1]["ports"].items()}
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway run exited with {self.proc.returncode} during start-up; "
                                   f"see {self.config_file.parent / 'gateway.stderr'}")
            time.sleep(0.02)
        self.kill()
        raise RuntimeError("gateway run did not log 'started' in time")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def ind_endpoint(self) -> str:
        return f"https://127.0.0.1:{self.ports['partners']}/ind/meldingen"

    @property
    def operator_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['operator']}"

    def kill(self) -> None:
        """SIGKILL: no drain, no clean-up; whatever was in flight stays as it was."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.operator_url + path, timeout=10)


# ---------------------------------------------------------------- IND as a persistent sender


class Pusher(threading.Thread):
    """Pushes notifications in order, each until IND holds an acknowledgement for it, like IND.

    ``endpoint`` is called before every try (the daemon's port may change between restarts);
    it returns None while there is no daemon. Refusals other than 503 / no answer are bugs here.
    """

    def __init__(self, ind: Any, endpoint: Callable[[], str | None], meldingen: Iterable[Any], *,
                 pause: float = 0.0, retry_pause: float = 0.1) -> None:
        super().__init__(name="ind-pusher", daemon=True)
        self.ind = ind
        self.endpoint = endpoint
        self.meldingen = list(meldingen)
        self.pause = pause
        self.retry_pause = retry_pause
        self.acked: dict[str, bytes] = {}
        self.tries = 0
        self.failed_tries: list[str] = []
        self.unexpected: list[str] = []
        self.stop_event = threading.Event()
        self.abort_event = threading.Event()

    def run(self) -> None:
        for m in self.meldingen:
            if self.stop_event.is_set():
                return
            # Once begun, a notification is pushed until acknowledged (or refused), as IND does;
            # stopping takes effect between notifications, so every stored one was acknowledged.
            while not self.abort_event.is_set():
                url = self.endpoint()
                if url is None:
                    time.sleep(self.retry_pause)
                    continue
                self.tries += 1
                r = self.ind.push(url, m)
                if r.accepted:
                    self.acked[m.melding_id] = r.acknowledgement or b""
                    break
                reason = f"{r.http_status} {r.fault_code} {r.detail_code} {r.error}"
                self.failed_tries.append(reason)
                if r.http_status not in (None, 503) and r.error is None:
                    # A refusal of a sound notification: not what a crash may cause.
                    self.unexpected.append(f"volgnummer {m.volgnummer}: {reason}")
                    break
                time.sleep(self.retry_pause)
            if self.abort_event.is_set():
                return
            if self.pause:
                time.sleep(self.pause)


# ---------------------------------------------------------------- the store


def outbox_rows(store: Any, partner: str = "duo") -> list[dict[str, Any]]:
    cols = ("id", "message_id", "operation", "idempotency_key", "state", "attempts", "lease_owner",
            "lease_expires_at", "dead_reason", "next_attempt_at")
    rows = store.query(f"SELECT {', '.join(cols)} FROM outbox WHERE partner = :p ORDER BY id", {"p": partner})
    return [dict(zip(cols, r, strict=True)) for r in rows]


def attempt_rows(store: Any, outbox_id: int | None = None) -> list[dict[str, Any]]:
    cols = ("outbox_id", "attempt", "worker", "started_at", "duration_ms", "http_status", "outcome", "detail")
    sql = f"SELECT {', '.join(cols)} FROM attempts"
    params: dict[str, Any] = {}
    if outbox_id is not None:
        sql += " WHERE outbox_id = :id"
        params["id"] = outbox_id
    return [dict(zip(cols, r, strict=True)) for r in store.query(sql + " ORDER BY id", params)]


def cli(args: list[str], *, operator: str = "e2e-operator") -> tuple[int, str]:
    """Run a ``gateway`` command in this process (typer's runner); (exit code, standard output)."""
    from typer.testing import CliRunner

    from gateway.cli import app

    result = CliRunner().invoke(app, args, env={"GATEWAY_OPERATOR": operator})
    return result.exit_code, result.stdout


def meldingen(n: int, seed: int, start: int = 1, now: Any = None) -> list[Any]:
    """``n`` generated notifications without corrections (they need their original pushed
    first), numbered ``start`` on without gaps, so the gateway sees an unbroken sequence."""
    import dataclasses

    from adapters.ind.simulator import generate_meldingen

    out = [m for m in generate_meldingen(n * 2, seed, now=now) if m.soort_melding != "CORRECTIE"][:n]
    assert len(out) == n
    return [dataclasses.replace(m, volgnummer=start + i) for i, m in enumerate(out)]


def duo_policy(**policy: Any) -> dict[str, Any]:
    """Config overrides for DUO's retry policy (``start_chain(overrides=...)``)."""
    return {"partners": {"duo": {"policy": policy}}}


def metric(text: str, name: str, **labels: str) -> float | None:
    """One sample's value from Prometheus text output."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None
