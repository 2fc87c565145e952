"""Shared pieces of the benchmarks (and the PostgreSQL failover test): gateway subprocesses,
their CPU and memory from /proc, pushing IND notifications from threads, percentiles.

A gateway process is started as ``python -m gateway.cli run --config DIR/gateway.toml`` with
``GATEWAY__INSTANCE`` and ``GATEWAY__LOG__FILE`` set per process; its ports come from the JSON
``started`` event in its log file.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def timed(fn: Callable[[Any], Any], reps: int, prepare: Callable[[], Any] | None = None) -> float:
    """Median thread CPU seconds of ``fn(prepare())``; ``prepare`` is not timed."""
    samples = []
    for _ in range(reps):
        arg = prepare() if prepare is not None else None
        t0 = time.thread_time()
        fn(arg)
        samples.append(time.thread_time() - t0)
    return median(samples)


# ---------------------------------------------------------------- /proc


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    return _stat_cpu_seconds(Path(f"/proc/{pid}/stat"))


def _stat_cpu_seconds(stat: Path) -> float:
    """utime + stime in a /proc stat file (fields 14 and 15; the name before them may hold spaces)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """Thread id -> (role, CPU seconds: utime + stime) for each live thread of a process.

    The role is the thread's name as the operating system has it (``gateway.core.threads``) without
    its number (``intake_0`` and ``intake_1`` are ``intake``; ``duo-3`` is ``duo``); the main thread
    (asyncio's event loop: the HTTP servers and TLS) is ``main``."""
    out: dict[int, tuple[str, float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().rstrip("\n")
            seconds = _stat_cpu_seconds(task / "stat")
        except OSError:  # the thread ended meanwhile
            continue
        role = "main" if task.name == str(pid) else re.sub(r"[-_]\d+$", "", name)
        out[int(task.name)] = (role, seconds)
    return out


def proc_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def postgres_cpu_seconds() -> float:
    """CPU of every process named postgres on this machine (server side of the store)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() != "postgres":
                    continue
            total += proc_cpu_seconds(int(entry))
        except OSError:
            continue
    return total


def fresh_pg_database(base_dsn: str) -> tuple[str, Callable[[], None]]:
    """A new, empty database on the server of ``base_dsn``; returns (dsn, drop)."""
    import uuid

    import psycopg

    name = f"gw_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(base_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return base_dsn.rpartition("/")[0] + "/" + name, drop


def machine_load() -> str:
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


# ---------------------------------------------------------------- gateway subprocesses


@dataclass
class GatewayProcess:
    """One ``gateway run`` subprocess."""

    name: str
    config_file: Path
    log_file: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    profile_file: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    ports: dict[str, int] = field(default_factory=dict)
    scheme: str = "https"  # "http" when the config has tls.enabled = false
    #: Where this start's lines begin in the log file (a directory used again holds an earlier
    #: run's "started" line, with that run's ports).
    log_offset: int = 0

    def start(self) -> GatewayProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY__")}
        env.update({"GATEWAY__INSTANCE": self.name, "GATEWAY__LOG__FILE": str(self.log_file),
                    "PYTHONPATH": str(REPO)}, **self.extra_env)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        stderr = open(self.log_file.with_suffix(".stderr"), "wb")  # noqa: SIM115 - lives with the process
        launcher = ["-m", "gateway.cli"] if self.profile_file is None else [
            str(REPO / "bench" / "common.py"), "--profile", str(self.profile_file)]
        self.proc = subprocess.Popen([sys.executable, *launcher, "run", "--config", str(self.config_file)],
                                     cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        return self

    def wait_started(self, timeout: float = 60) -> GatewayProcess:
        assert self.proc is not None
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: "
                                   + self.log_file.with_suffix(".stderr").read_text()[-2000:])
            if self.log_file.exists():
                with self.log_file.open("rb") as f:
                    f.seek(self.log_offset)
                    lines = f.read().decode("utf-8", "replace").splitlines()
                for line in lines:
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    if event.get("event") == "started":
                        self.ports = dict(event["ports"])
                        return self
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} did not start within {timeout} s")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.ports['partners']}"

    @property
    def ind_endpoint(self) -> str:
        return self.url + "/ind/meldingen"

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)

    def thread_cpu(self) -> dict[int, tuple[str, float]]:
        return proc_thread_cpu(self.pid)

    def rss_bytes(self) -> int:
        return proc_rss_bytes(self.pid)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def start_processes(config_file: Path, directory: Path, n: int, *, prefix: str = "gw",
                    extra_env: dict[str, str] | None = None, profile: bool = False,
                    secure: bool = True) -> list[GatewayProcess]:
    procs = [GatewayProcess(f"{prefix}-{i}", config_file, directory / f"{prefix}-{i}.log", dict(extra_env or {}),
                            profile_file=directory / f"{prefix}-{i}.profile.json" if profile else None,
                            scheme="https" if secure else "http").start()
             for i in range(n)]
    try:
        for p in procs:
            p.wait_started()
    except BaseException:
        for p in procs:
            p.kill()
        raise
    return procs


def upgrade(config_file: Path) -> None:
    """``gateway db upgrade`` once, before several processes start."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY__")}
    subprocess.run([sys.executable, "-m", "gateway.cli", "db", "upgrade", "--config", str(config_file)],
                   cwd=REPO, env=env, check=True, capture_output=True)


# ---------------------------------------------------------------- pushing


def make_pushers(chain: Any, n: int) -> list[Any]:
    """``n`` IND pushers (zeep + WS-Security + mutual TLS) with IND's key; the chain's own first.

    On an insecure chain (``tls.enabled = false``) the pushers have no key and no anchor: unsigned
    envelopes over plain HTTP, like the chain's own IND simulator.
    """
    from adapters.ind.simulator import IndSimulator
    from gateway.security import keys

    out = [chain.ind]
    if n > 1 and not chain.config.tls.enabled:
        out.extend(IndSimulator() for _ in range(n - 1))
    elif n > 1:
        ind_key = keys.load_keypair(chain.pki["ind-key"], chain.pki["ind"])
        gw_trust = keys.load_trust("gateway", [str(chain.pki["ca"])], [chain.pki["gateway"]])
        for _ in range(n - 1):
            out.append(IndSimulator(key=ind_key, gateway_trust=gw_trust, ca_file=str(chain.pki["ca"])))
    return out


@dataclass
class PushLog:
    sent_at: dict[str, float] = field(default_factory=dict)  # meldingId -> wall time of the first send
    acked: dict[str, float] = field(default_factory=dict)  # meldingId -> wall time of the ack
    failures: int = 0
    #: Why pushes were not acknowledged: SOAP fault and detail code, or the client's error.
    reasons: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def push_stream(pushers: Sequence[Any], meldingen: Sequence[Any], endpoints: Callable[[int], list[str]], *,
                rate: float | None = None, stop: threading.Event | None = None, log: PushLog | None = None,
                on_progress: Callable[[int], None] | None = None, retries: int = 20) -> PushLog:
    """Push each notification once, from ``len(pushers)`` threads, spread over ``endpoints(i)``.

    A push that is not acknowledged (e.g. its process died) is pushed again to the next endpoint,
    as IND retries. ``rate`` (per second, all threads) paces the stream.
    """
    log = log or PushLog()
    stop = stop or threading.Event()
    n = len(pushers)
    t0 = time.monotonic()
    done = [0]

    def run(k: int) -> None:
        sim = pushers[k]
        for j in range(k, len(meldingen), n):
            if stop.is_set():
                return
            if rate:
                delay = t0 + j / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            m = meldingen[j]
            for attempt in range(retries):
                urls = endpoints(j)
                url = urls[(j + attempt) % len(urls)]
                with log.lock:
                    log.sent_at.setdefault(m.melding_id, time.time())
                r = sim.push(url, m)
                if r.accepted:
                    with log.lock:
                        log.acked[m.melding_id] = time.time()
                        done[0] += 1
                        if on_progress:
                            on_progress(done[0])
                    break
                reason = r.error or f"{r.fault_code} {r.detail_code or ''}".strip() or f"HTTP {r.http_status}"
                with log.lock:
                    log.failures += 1
                    log.reasons[reason] = log.reasons.get(reason, 0) + 1
                time.sleep(0.05)

    threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return log


class DuoClock:
    """Receipt times at the simulated DUO: wraps ``DuoSimulator._take_in`` (first receipt per berichtId)."""

    def __init__(self, duo: Any) -> None:
        self.received: dict[str, float] = {}
        original = duo._take_in

        def take_in(root: Any, bericht_id: str, digest: str, body: bytes) -> Any:
            result = original(root, bericht_id, digest, body)
            self.received.setdefault(bericht_id, time.time())
            return result

        duo._take_in = take_in


def bericht_id(m: Any) -> str:
    from gateway.mapping.ind_to_duo import bericht_id_for

    return bericht_id_for(m.melding_id)


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result, indent=2, sort_keys=True))


# ---------------------------------------------------------------- profiling launcher
#
# ``python bench/common.py --profile OUT.json run --config FILE`` runs the gateway with the
# functions below wrapped: each call adds its thread CPU time (``time.thread_time``, so waits for
# the network or the disk do not count) to a per-function total. SIGUSR1 resets the totals,
# SIGUSR2 writes them to OUT.json (also written at exit). Totals are inclusive (a function's time
# includes what it calls), so only sum functions that do not call each other.

PROFILED = {
    "crypto": [("gateway.security.wsse", "verify_envelope"), ("gateway.security.wsse", "sign_envelope"),
               ("gateway.security.xmldsig", "sign_enveloped"), ("gateway.security.xmldsig", "verify_enveloped")],
    "xml": [("gateway.wire.xmlsafe", "parse"), ("gateway.wire.xmlsafe", "validate")],
    "store": [("gateway.core.store", "Store.accept"), ("gateway.core.store", "Store.lookup"), ("gateway.core.store", "Store.claim"),
              ("gateway.core.store", "Store.finish_attempt"), ("gateway.core.store", "Store.next_due"),
              ("gateway.core.store", "Store.heartbeat"), ("gateway.core.store", "Store.log_inbound")],
    "handlers": [("gateway.routes.ind_to_duo", "handle_ontvang_melding"), ("adapters.duo.client", "DuoSender.send"),
                 ("gateway.delivery.outbox", "Worker._finish")],
}


def _install_profile(out: Path) -> None:
    import importlib
    import signal as signal_mod

    lock = threading.Lock()
    totals: dict[str, list[float]] = {}

    def wrap(owner: Any, attr: str, key: str) -> None:
        fn = getattr(owner, attr)

        def wrapper(*a: Any, **kw: Any) -> Any:
            t0 = time.thread_time()
            try:
                return fn(*a, **kw)
            finally:
                dt = time.thread_time() - t0
                with lock:
                    entry = totals.setdefault(key, [0, 0.0])
                    entry[0] += 1
                    entry[1] += dt

        wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
        setattr(owner, attr, wrapper)

    # GW_BENCH_PROFILE_EXTRA="module:Function,module:Class.method": more functions to time (wrapped
    # first, so that modules importing them by name take the wrapper).
    extra = [(m, n) for m, _, n in (x.partition(":") for x in os.environ.get("GW_BENCH_PROFILE_EXTRA", "").split(",") if x)]
    groups: dict[str, list[tuple[str, str]]] = {"extra": extra, **PROFILED}
    for group, items in groups.items():
        for module, name in items:
            mod = importlib.import_module(module)
            if "." in name:
                cls, meth = name.split(".")
                wrap(getattr(mod, cls), meth, f"{group}:{module}.{name}")
            else:
                wrap(mod, name, f"{group}:{module}.{name}")

    def dump(*_: Any) -> None:
        with lock:
            data = {k: {"calls": v[0], "cpu_seconds": v[1]} for k, v in totals.items()}
        data["_process_cpu_seconds"] = {"calls": 0, "cpu_seconds": proc_cpu_seconds(os.getpid())}
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(out)

    def reset(*_: Any) -> None:
        with lock:
            totals.clear()

    signal_mod.signal(signal_mod.SIGUSR1, reset)
    signal_mod.signal(signal_mod.SIGUSR2, dump)
    import atexit

    atexit.register(dump)


def _old_next_due() -> None:
    """A/B only: the query ``Store.next_due`` had before leases were taken into account."""
    from gateway.core import store as store_mod

    def next_due(self: Any, partner: str | None = None) -> float | None:
        with self.tx(write=False) as t:
            row = t.one("SELECT MIN(next_attempt_at) FROM outbox WHERE state = 'pending'"
                        + (" AND partner = :p" if partner else ""), {"p": partner} if partner else {})
        return float(row[0]) if row and row[0] is not None else None

    store_mod.Store.next_due = next_due  # type: ignore[method-assign]


def _levers() -> None:
    """A/B of issue 22's server levers: GW_BENCH_HTTP=h11|httptools, GW_BENCH_LOOP=asyncio|uvloop."""
    http, loop = os.environ.get("GW_BENCH_HTTP"), os.environ.get("GW_BENCH_LOOP")
    if http:
        from gateway.wire import server

        server.DEFAULT_HTTP = http
    if loop:
        from gateway import daemon

        daemon.USE_UVLOOP = loop == "uvloop"


if __name__ == "__main__":
    if os.environ.get("GW_BENCH_OLD_NEXT_DUE"):
        _old_next_due()
    _levers()
    args = sys.argv[1:]
    if args[:1] == ["--profile"]:
        _install_profile(Path(args[1]))
        args = args[2:]
    sys.argv = ["gateway", *args]
    from gateway.cli import main

    main()
