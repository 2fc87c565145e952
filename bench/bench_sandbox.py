"""Push N IND notifications through the sandbox chain and measure the gateway.

The simulated partners (IND pushing with zeep, DUO receiving) run in this process; the gateway
runs as ``gateway run`` subprocess(es), so its CPU time is read exactly from /proc/<pid>/stat
and does not include the partners' work (zeep on IND's side is not the gateway's cost).

Reported (JSON on stdout, progress on stderr):
- throughput (notifications/s, first IND send to last DUO receipt) and latency p50/p99 from
  IND's send to DUO's receipt;
- the gateway's CPU per notification (all its threads), PostgreSQL server CPU per notification
  when on PostgreSQL, and the idle CPU of the gateway (to subtract background polling);
- the CPU of the unavoidable steps, timed in this same run with ``time.thread_time`` (per call,
  median of ``--step-reps``): lxml parse, XSD validation, a durable commit on the same backend,
  one HTTPS exchange with httpx keep-alive (client side, TLS included), WS-Security verify and
  sign, enveloped sign and verify; and the ratio gateway CPU / unavoidable steps;
- with ``--profile``, per-message CPU inside the gateway by function (crypto, XML, store, ...).

With ``--insecure`` the same on the unsigned path (``start_chain(secure=False)``: tls.enabled =
false, no signatures, plain HTTP, the CJIB route off): the steps are then parse, XSD validation,
a durable commit and one plain-HTTP keep-alive exchange, without crypto or TLS.

    python bench/bench_sandbox.py --count 1000
    python bench/bench_sandbox.py --insecure --count 400 --repeat 3 --profile
    python bench/bench_sandbox.py --count 1000 --pg postgresql://postgres@127.0.0.1:5432/postgres --processes 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    DuoClock,
    bericht_id,
    emit,
    fresh_pg_database,
    machine_load,
    make_pushers,
    median,
    percentile,
    postgres_cpu_seconds,
    progress,
    push_stream,
    start_processes,
    timed,
    upgrade,
)

#: The revocation refresher at the config's defaults (OCSP every 300 s, CRLs every hour), not the
#: sandbox's test pace (OCSP every 2 s, each ask a new TLS client): that cost about 25 ms/s of the
#: gateway's CPU, idle or not, and is no part of the cost per notification (issue 22).
PRODUCTION_REVOCATION = {"ocsp_interval_seconds": 300.0, "refresh_seconds": 3600.0, "retry_seconds": 60.0}
#: How long the sandbox CA's CRLs and OCSP answers stay valid in a benchmark. The sandbox's own 10 s
#: (made so that a revocation shows at once) has every process fetch each CRL again every 10 s, which
#: is most of an idle gateway's CPU; CRLs of a production CA are valid for a day or more.
PRODUCTION_CRL_VALIDITY_SECONDS = 86400.0

# ---------------------------------------------------------------- the unavoidable steps


def _steps(chain: Any, dsn: str, directory: Path, reps: int) -> dict[str, float]:
    import uuid

    import httpx

    from adapters.duo import codec as duo_codec
    from adapters.ind import codec as ind_codec
    from adapters.ind.simulator import generate_meldingen
    from gateway.core.clock import iso
    from gateway.core.models import DuoOntvangstbevestiging
    from gateway.mapping import ind_to_duo
    from gateway.rules import engine as rules
    from gateway.security import keys, tls, wsse, xmldsig
    from gateway.wire import soap, xmlsafe

    paths = chain.pki
    ca = str(paths["ca"])
    gw = keys.load_keypair(paths["gateway-key"], paths["gateway"])
    ind_trust = keys.load_trust("ind", [ca], [paths["ind"]])
    duo_trust = keys.load_trust("duo", [ca], [paths["duo"]])
    ruleset = rules.load(Path(chain.config.rules.directory) / f"{chain.config.rules.active}.yaml")
    (m,) = generate_meldingen(1, 99, start_volgnummer=10_000_000)
    now = dt.datetime.now(dt.UTC)
    url = "https://127.0.0.1:1/ind/meldingen"
    envelope = chain.ind.envelope(url, m)
    out: dict[str, float] = {"ind_envelope_bytes": len(envelope)}

    out["parse"] = timed(lambda _: xmlsafe.parse(envelope), reps)
    out["wss_verify"] = timed(lambda root: wsse.verify_envelope(root, ind_trust, parts=wsse.REQUEST_PARTS, now=now),
                               reps, lambda: xmlsafe.parse(envelope))
    payload = wsse.verify_envelope(xmlsafe.parse(envelope), ind_trust, parts=wsse.REQUEST_PARTS, now=now).payload
    out["xsd_validate"] = timed(lambda _: xmlsafe.validate(payload, xmlsafe.IND_XSD, partner="ind"), reps)

    def ack_env() -> Any:
        body = ind_codec.encode_ontvangstbevestiging(str(uuid.uuid4()), m.melding_id, m.volgnummer, iso(now), "x" * 44)
        return soap.build_envelope(body, to="http://www.w3.org/2005/08/addressing/anonymous",
                                   action=ind_codec.ACTION_ONTVANG_RESPONSE, message_id=f"urn:uuid:{uuid.uuid4()}",
                                   relates_to=f"urn:uuid:{m.melding_id}")

    out["wss_sign"] = timed(lambda env: wsse.sign_envelope(env, gw, parts=wsse.RESPONSE_PARTS, now=now), reps, ack_env)
    duo = ind_to_duo.to_inburgeraarmelding(m, received_at=now, ruleset=ruleset)
    out["enveloped_sign"] = timed(lambda el: xmldsig.sign_enveloped(el, gw), reps,
                                   lambda: duo_codec.encode_inburgeraarmelding(duo))
    signed = xmldsig.sign_enveloped(duo_codec.encode_inburgeraarmelding(duo), gw)
    ack = chain.duo._ack(DuoOntvangstbevestiging(bericht_id=duo.bericht_id, status="ONTVANGEN",
                                                 ontvangen_op=iso(now), bericht_digest="x" * 44, kenmerk="DUO-1"))
    out["ack_verify"] = timed(lambda root: xmldsig.verify_enveloped(root, duo_trust, now=now), reps,
                               lambda: xmlsafe.parse(ack))

    out.update(_commit_steps(dsn, directory, reps))

    # One HTTPS exchange with keep-alive (client CPU; TLS record work included), to the simulated DUO.
    client = httpx.Client(verify=tls.client_context(gw, [ca]), timeout=30)
    post_url = chain.servers["duo"].url + "/inburgering/v1/meldingen"
    headers = {"Content-Type": "application/xml; charset=utf-8", "Idempotency-Key": duo.bericht_id}
    client.post(post_url, content=signed, headers=headers)  # the connection, the handshake: once
    out["https_exchange"] = timed(lambda _: client.post(post_url, content=signed, headers=headers), min(reps, 100))
    t0 = time.thread_time()
    fresh = httpx.Client(verify=tls.client_context(gw, [ca]), timeout=30)
    fresh.post(post_url, content=signed, headers=headers)
    out["https_first_exchange_with_handshake"] = time.thread_time() - t0
    fresh.close()
    client.close()
    return out


def _steps_insecure(chain: Any, dsn: str, directory: Path, reps: int) -> dict[str, float]:
    """The unavoidable steps of the unsigned path: no crypto, no TLS."""
    import httpx

    from adapters.duo import codec as duo_codec
    from adapters.ind.simulator import generate_meldingen
    from gateway.mapping import ind_to_duo
    from gateway.rules import engine as rules
    from gateway.wire import soap, xmlsafe

    ruleset = rules.load(Path(chain.config.rules.directory) / f"{chain.config.rules.active}.yaml")
    (m,) = generate_meldingen(1, 99, start_volgnummer=10_000_000)
    now = dt.datetime.now(dt.UTC)
    envelope = chain.ind.envelope("http://127.0.0.1:1/ind/meldingen", m)  # unsigned: the IND simulator has no key
    out: dict[str, float] = {"ind_envelope_bytes": len(envelope)}
    out["parse"] = timed(lambda _: xmlsafe.parse(envelope), reps)
    payload = soap.split(xmlsafe.parse(envelope)).payload
    out["xsd_validate"] = timed(lambda _: xmlsafe.validate(payload, xmlsafe.IND_XSD, partner="ind"), reps)
    out.update(_commit_steps(dsn, directory, reps))

    # One plain-HTTP exchange with keep-alive (client CPU), to the simulated DUO, with the unsigned message.
    duo = ind_to_duo.to_inburgeraarmelding(m, received_at=now, ruleset=ruleset)
    from lxml import etree

    body = etree.tostring(duo_codec.encode_inburgeraarmelding(duo), xml_declaration=True, encoding="utf-8")
    client = httpx.Client(timeout=30)
    post_url = chain.servers["duo"].url + "/inburgering/v1/meldingen"
    assert post_url.startswith("http://")
    headers = {"Content-Type": "application/xml; charset=utf-8", "Idempotency-Key": duo.bericht_id}
    client.post(post_url, content=body, headers=headers)  # the connection: once
    out["http_exchange"] = timed(lambda _: client.post(post_url, content=body, headers=headers), min(reps, 100))
    client.close()
    return out


def _commit_steps(dsn: str, directory: Path, reps: int) -> dict[str, float]:
    """A durable commit on the same backend: one ~3 KB row, its own transaction."""
    from gateway.core.store import Store

    if dsn.startswith("sqlite"):
        commit_store = Store(f"sqlite:///{directory / 'commit-bench.db'}")
    else:
        commit_store = Store(dsn)
    with commit_store.tx() as t:
        t.execute("CREATE TABLE IF NOT EXISTS bench_commit (id INTEGER, payload {blob})")
    blob = b"x" * 3000

    def commit(_: Any) -> None:
        with commit_store.tx() as t:
            t.execute("INSERT INTO bench_commit (id, payload) VALUES (:i, :p)", {"i": 1, "p": blob})

    commit_wall = []
    for _ in range(min(reps, 100)):
        t0 = time.perf_counter()
        commit(None)
        commit_wall.append(time.perf_counter() - t0)
    out = {"commit": timed(commit, min(reps, 100)), "commit_wall": median(commit_wall)}
    with commit_store.tx() as t:
        t.execute("DROP TABLE bench_commit")
    commit_store.close()
    return out


def unavoidable_insecure(steps: dict[str, float]) -> dict[str, float]:
    """The unsigned path: (a) the brief's set, parse + validate + commit + one HTTP exchange; (b) what
    the protocol obliges without signatures: parse IND's envelope and DUO's ack; validate IND's payload,
    our DUO message and DUO's ack; commit before acknowledging and after DUO's receipt; one HTTP
    exchange in (server side, taken as equal to the client side) and one out."""
    minimal = steps["parse"] + steps["xsd_validate"] + steps["commit"] + steps["http_exchange"]
    full = 2 * steps["parse"] + 3 * steps["xsd_validate"] + 2 * steps["commit"] + 2 * steps["http_exchange"]
    return {"minimal": minimal, "protocol": full}


def unavoidable(steps: dict[str, float]) -> dict[str, float]:
    """Two sums of the steps: the brief's minimal set, and what the protocol actually obliges."""
    minimal = (steps["parse"] + steps["xsd_validate"] + steps["commit"] + steps["https_exchange"]
               + steps["wss_verify"] + steps["enveloped_sign"] + steps["ack_verify"])
    # Per notification the protocol needs: parse IND's envelope and DUO's ack; validate IND's payload,
    # our DUO message and DUO's ack; verify IND's signature; sign the acknowledgement to IND (WS-Security)
    # and the message to DUO (enveloped); verify DUO's ack; commit before acknowledging and after
    # DUO's receipt; one HTTPS exchange in (server side, taken as equal to the client side) and one out.
    full = (2 * steps["parse"] + 3 * steps["xsd_validate"] + steps["wss_verify"] + steps["wss_sign"]
            + steps["enveloped_sign"] + steps["ack_verify"] + 2 * steps["commit"] + 2 * steps["https_exchange"])
    return {"minimal": minimal, "protocol": full}


# ---------------------------------------------------------------- one run


def run(*, count: int, pg: str | None, processes: int, pushers: int, directory: Path, profile: bool,
        step_reps: int, warmup: int = 30, seed: int = 2026, lease_seconds: float | None = None,
        duo_faults: Any = None, extra_policy: dict[str, Any] | None = None,
        extra_env: dict[str, str] | None = None, secure: bool = True,
        rate: float | None = None, idle_after_seconds: float = 0.0) -> dict[str, Any]:
    """One run; ``rate`` (notifications/s) paces the pushers; ``step_reps=0`` skips timing the steps;
    ``idle_after_seconds``: also measure the idle CPU that long, 2 s after the last delivery."""
    from adapters.ind.simulator import generate_meldingen
    from gateway.core.store import Store
    from gateway.sandbox import start_chain, wait_until

    if directory.exists() and any(directory.iterdir()):
        # An earlier run's store would make every notification a repeat, its log lend its ports.
        raise SystemExit(f"bench: {directory} is not empty (an earlier run's); give a new --dir")
    directory.mkdir(parents=True, exist_ok=True)
    drop = None
    if pg:
        dsn, drop = fresh_pg_database(pg)
    else:
        dsn = f"sqlite:///{directory / 'gateway.db'}"
    policy: dict[str, Any] = dict(extra_policy or {})
    if lease_seconds:
        policy["lease_seconds"] = lease_seconds
    overrides: dict[str, Any] = {"ind": {"reconcile_interval_seconds": 3600.0, "gap_grace_seconds": 60.0},
                                 "revocation": PRODUCTION_REVOCATION}
    if policy:
        overrides["partners"] = {"duo": {"policy": policy}}
    chain = start_chain(directory, dsn=dsn, start=False, with_cjib=False, overrides=overrides,
                        duo_faults=duo_faults, secure=secure,
                        crl_next_update_seconds=PRODUCTION_CRL_VALIDITY_SECONDS)
    duo_clock = DuoClock(chain.duo)
    procs: list[Any] = []
    sims = make_pushers(chain, pushers)
    store = Store(dsn)
    try:
        upgrade(chain.config_file)
        procs = start_processes(chain.config_file, directory, processes, profile=profile, extra_env=extra_env,
                                secure=secure)
        progress(f"{processes} gateway process(es) up on {'PostgreSQL' if pg else 'SQLite'}; pushers {pushers}; "
                 f"{'signed, mutual TLS' if secure else 'unsigned, plain HTTP'}")
        endpoints = [p.ind_endpoint for p in procs]
        all_m = generate_meldingen(warmup + count, seed)
        warm, meldingen = all_m[:warmup], all_m[warmup:]

        def delivered_all(ms: list[Any]) -> bool:
            return all(bericht_id(m) in duo_clock.received for m in ms)

        warm_log = push_stream(sims, warm, lambda j: endpoints)
        if not wait_until(lambda: delivered_all(warm), timeout=60):
            # Measuring on would only push every notification 20 times into the same wall.
            raise RuntimeError(f"the warm-up was not delivered within 60 s (pushes not acknowledged: "
                               f"{warm_log.reasons or 'none'}); the gateway's log: {procs[0].log_file}")
        time.sleep(1.0)
        idle0 = sum(p.cpu_seconds() for p in procs)
        time.sleep(3.0)
        idle_rate = (sum(p.cpu_seconds() for p in procs) - idle0) / 3.0

        for p in procs:
            if profile:
                p.proc.send_signal(signal.SIGUSR1)  # type: ignore[union-attr]
        time.sleep(0.2)
        cpu0 = {p.name: p.cpu_seconds() for p in procs}
        threads0 = [p.thread_cpu() for p in procs]
        pg0 = postgres_cpu_seconds() if pg else 0.0
        load0 = machine_load()
        t0 = time.time()
        step = max(1, count // 10)
        log = push_stream(sims, meldingen, lambda j: endpoints, rate=rate,
                          on_progress=lambda n: progress(f"acknowledged {n}/{count}") if n % step == 0 else None)
        progress("all pushed; waiting for DUO receipts")
        ok = wait_until(lambda: delivered_all(meldingen), timeout=120 + count * 0.05, interval=0.2)
        t_end = max((duo_clock.received.get(bericht_id(m), 0.0) for m in meldingen), default=time.time())
        cpu1 = {p.name: p.cpu_seconds() for p in procs}
        threads1 = [p.thread_cpu() for p in procs]
        pg1 = postgres_cpu_seconds() if pg else 0.0
        rss = {p.name: p.rss_bytes() for p in procs}
        idle_after = None
        idle_by_thread = None
        if idle_after_seconds:
            time.sleep(2.0)
            i0, idle_threads0 = sum(p.cpu_seconds() for p in procs), [p.thread_cpu() for p in procs]
            time.sleep(idle_after_seconds)
            idle_after = (sum(p.cpu_seconds() for p in procs) - i0) / idle_after_seconds
            # µs per second of the window by thread role, all processes (the same sum as idle_after).
            idle_by_thread = _by_thread(idle_threads0, [p.thread_cpu() for p in procs], idle_after * idle_after_seconds,
                                        idle_after_seconds)
        profiles: dict[str, Any] = {}
        if profile:
            for p in procs:
                p.proc.send_signal(signal.SIGUSR2)  # type: ignore[union-attr]
            time.sleep(0.5)
            for p in procs:
                assert p.profile_file is not None
                profiles[p.name] = json.loads(p.profile_file.read_text())
        elapsed = t_end - t0
        gateway_cpu = sum(cpu1.values()) - sum(cpu0.values())
        latencies = [duo_clock.received[bericht_id(m)] - log.sent_at[m.melding_id]
                     for m in meldingen if bericht_id(m) in duo_clock.received]
        exactly_once = sum(1 for m in meldingen if chain.duo.count(bericht_id(m)) == 1)
        retries = int(store.query("SELECT COUNT(*) FROM attempts WHERE outcome <> 'success'")[0][0])
        failure_details = {str(r[0])[:160]: int(r[1]) for r in store.query(
            "SELECT detail, COUNT(*) FROM attempts WHERE outcome <> 'success' GROUP BY detail "
            "ORDER BY COUNT(*) DESC LIMIT 5")}
        claims = None
        if profile:
            claims = sum(p_.get("store:gateway.core.store.Store.claim", {}).get("calls", 0)
                         for p_ in profiles.values())
        if step_reps:
            progress("timing the unavoidable steps in the same run")
            steps = (_steps if secure else _steps_insecure)(chain, dsn, directory, step_reps)
            floor = (unavoidable if secure else unavoidable_insecure)(steps)
        else:
            steps, floor = {}, {}
        per_msg = gateway_cpu / count
        result: dict[str, Any] = {
            "conditions": {"count": count, "backend": "postgresql" if pg else "sqlite", "processes": processes,
                           "pushers": pushers, "loadavg_1min_before": load0, "profile": profile,
                           "secure": secure, "cores": __import__("os").cpu_count()},
            "ok": bool(ok) and exactly_once == count,
            "acknowledged": len(log.acked) - warmup if len(log.acked) > count else len(log.acked),
            "delivered_exactly_once": exactly_once,
            "push_failures": log.failures,
            "push_failure_reasons": log.reasons,
            "attempts_not_success": retries,
            "failure_details": failure_details,
            "seconds": round(elapsed, 3),
            "throughput_per_s": round(count / elapsed, 1) if elapsed > 0 else None,
            "latency_ms": {"p50": round(percentile(latencies, 50) * 1000, 1),
                           "p99": round(percentile(latencies, 99) * 1000, 1),
                           "max": round(max(latencies) * 1000, 1) if latencies else None},
            "gateway_cpu_ms_per_msg": round(per_msg * 1000, 3),
            "gateway_cpu_ms_per_msg_by_process": {k: round((cpu1[k] - cpu0[k]) * 1000 / count, 3) for k in cpu0},
            "gateway_cpu_us_per_msg_by_thread": _by_thread(threads0, threads1, gateway_cpu, count),
            "gateway_idle_cpu_ms_per_s": round(idle_rate * 1000, 2),
            "gateway_idle_after_cpu_ms_per_s": round(idle_after * 1000, 2) if idle_after is not None else None,
            "gateway_idle_after_us_per_s_by_thread": idle_by_thread,
            "postgres_cpu_ms_per_msg": round((pg1 - pg0) * 1000 / count, 3) if pg else None,
            "claim_calls_per_msg": round(claims / count, 3) if claims is not None else None,
            "rate_per_s": rate,
            "gateway_rss_mb": {k: round(v / 2**20, 1) for k, v in rss.items()},
            "steps_us": {k: (round(v * 1e6, 1) if k != "ind_envelope_bytes" else v) for k, v in steps.items()},
            "unavoidable_us": {k: round(v * 1e6, 1) for k, v in floor.items()},
            "ratio_gateway_to_unavoidable": {k: round(per_msg / v, 2) for k, v in floor.items()},
        }
        if profile:
            result["profile_us_per_msg"] = _profile_summary(profiles, count, per_msg)
        return result
    finally:
        for p in procs:
            p.stop(20)
        for s in sims[1:]:
            s.close()
        store.close()
        chain.stop()
        if drop is not None:
            drop()


def _by_thread(before: list[dict[int, tuple[str, float]]], after: list[dict[int, tuple[str, float]]],
               total: float, per: float) -> dict[str, float]:
    """µs per unit (``per``: the notifications, or the seconds of an idle window) by thread role
    (``common.proc_thread_cpu``), all processes; "ended" is what threads that ended meanwhile spent
    (the processes' total less the live threads')."""
    spent: dict[str, float] = {}
    for b, a in zip(before, after, strict=True):
        for tid, (role, seconds) in a.items():
            spent[role] = spent.get(role, 0.0) + seconds - b.get(tid, (role, 0.0))[1]
    spent["ended"] = max(0.0, total - sum(spent.values()))
    return {k: round(v * 1e6 / per, 1) for k, v in sorted(spent.items(), key=lambda kv: -kv[1])}


def _profile_summary(profiles: dict[str, Any], count: int, per_msg: float) -> dict[str, Any]:
    merged: dict[str, dict[str, float]] = {}
    for data in profiles.values():
        for k, v in data.items():
            e = merged.setdefault(k, {"calls": 0, "cpu_seconds": 0.0})
            e["calls"] += v["calls"]
            e["cpu_seconds"] += v["cpu_seconds"]
    by_fn = {k: {"us_per_msg": round(v["cpu_seconds"] * 1e6 / count, 1),
                 "calls_per_msg": round(v["calls"] / count, 2)}
             for k, v in sorted(merged.items()) if not k.startswith("_")}
    crypto = sum(v["cpu_seconds"] for k, v in merged.items() if k.startswith("crypto:")) / count
    return {
        "functions": by_fn,
        "crypto_us_per_msg": round(crypto * 1e6, 1),
        "rest_us_per_msg": round((per_msg - crypto) * 1e6, 1),
        "crypto_share": round(crypto / per_msg, 3) if per_msg else None,
    }


def _ab_next_due(args: Any, base: Path) -> None:
    variants: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
    for i in range(args.repeat):
        for name in ("old", "new"):
            progress(f"A/B run {i + 1}/{args.repeat}: {name} next_due")
            variants[name].append(run(count=args.count, pg=args.pg, processes=args.processes, pushers=args.pushers,
                                      directory=base / f"{name}{i}", profile=True, step_reps=args.step_reps,
                                      extra_env={"GW_BENCH_OLD_NEXT_DUE": "1"} if name == "old" else None))

    def med(name: str, f: Any) -> float:
        return median([f(r) for r in variants[name]])

    def calls(fn: str) -> Any:
        return lambda r: next((v["calls_per_msg"] for k, v in r["profile_us_per_msg"]["functions"].items()
                               if k.endswith(fn)), 0.0)

    table: dict[str, Any] = {name: {"gateway_cpu_ms_per_msg": med(name, lambda r: r["gateway_cpu_ms_per_msg"]),
                    "claim_calls_per_msg": med(name, calls("Store.claim")),
                    "next_due_calls_per_msg": med(name, calls("Store.next_due")),
                    "throughput_per_s": med(name, lambda r: r["throughput_per_s"]),
                    "latency_p50_ms": med(name, lambda r: r["latency_ms"]["p50"]),
                    "all_ok": all(r["ok"] for r in variants[name])} for name in variants}
    table["new_vs_old_cpu"] = round(table["new"]["gateway_cpu_ms_per_msg"] / table["old"]["gateway_cpu_ms_per_msg"], 3)
    emit({"ab_next_due": table, "runs": variants})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--pg", default=None, help="PostgreSQL DSN of a server where a bench database may be created")
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--pushers", type=int, default=3, help="IND pusher threads (zeep) in this process")
    ap.add_argument("--repeat", type=int, default=1, help="runs; the medians are reported too")
    ap.add_argument("--profile", action="store_true", help="per-function CPU inside the gateway (small overhead)")
    ap.add_argument("--step-reps", type=int, default=200)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--insecure", action="store_true",
                    help="the unsigned path: tls.enabled = false, no signatures, plain HTTP (issue 2's target)")
    ap.add_argument("--idle", type=float, default=0.0, metavar="SECONDS",
                    help="after the run, measure the idle CPU for this long, by thread (2 s after the last delivery)")
    ap.add_argument("--ab-next-due", action="store_true",
                    help="alternate runs with the old Store.next_due (before the lease-aware fix) and the current one")
    args = ap.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="gw-bench-"))
    if args.ab_next_due:
        _ab_next_due(args, base)
        return
    runs = []
    for i in range(args.repeat):
        progress(f"run {i + 1}/{args.repeat}")
        runs.append(run(count=args.count, pg=args.pg, processes=args.processes, pushers=args.pushers,
                        directory=base / f"run{i}", profile=args.profile, step_reps=args.step_reps,
                        secure=not args.insecure, idle_after_seconds=args.idle))
    out: dict[str, Any] = {"runs": runs}
    if len(runs) > 1:
        out["median"] = {k: median([r[k] for r in runs]) for k in (
            "throughput_per_s", "gateway_cpu_ms_per_msg")}
        out["median"]["latency_p50_ms"] = median([r["latency_ms"]["p50"] for r in runs])
        out["median"]["latency_p99_ms"] = median([r["latency_ms"]["p99"] for r in runs])
        out["median"]["ratio_protocol"] = median([r["ratio_gateway_to_unavoidable"]["protocol"] for r in runs])
        out["median"]["ratio_minimal"] = median([r["ratio_gateway_to_unavoidable"]["minimal"] for r in runs])
    emit(out)


if __name__ == "__main__":
    main()
