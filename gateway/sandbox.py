"""The sandbox: the gateway with simulated IND, DUO and CJIB on loopback, over mutual TLS.

``start_chain`` is used by ``gateway sandbox``, the end-to-end tests and the benchmark alike: a
throwaway PKI, the three simulators on free ports, a config file written next to them, and the
daemon (in this process). Everything lives in one directory, so ``gateway log --config
DIR/gateway.toml`` shows afterwards what happened.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.core import config as config_mod
from gateway.core.clock import AMS, Clock, SystemClock
from gateway.daemon import Daemon
from gateway.wire.server import RunningServer, serve_in_thread

__all__ = ["Chain", "start_chain", "write_toml", "run"]


@dataclass
class Chain:
    directory: Path
    config: config_mod.Config
    config_file: Path
    pki: dict[str, Any]
    duo: Any
    ind: Any
    cjib: Any | None
    servers: dict[str, RunningServer]
    daemon: Daemon | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ind_endpoint(self) -> str:
        assert self.daemon is not None
        return self.daemon.url + "/ind/meldingen"

    @property
    def duo_endpoint(self) -> str:
        assert self.daemon is not None
        return self.daemon.url + "/duo/v1/vorderingen"

    def start_daemon(self, **kw: Any) -> Daemon:
        self.daemon = Daemon(self.config, **kw).start_in_thread()
        return self.daemon

    def stop(self) -> None:
        self.ind.close()  # IND's keep-alive connection first, so the gateway shuts down at once
        if self.daemon is not None:
            self.daemon.stop()
        for s in self.servers.values():
            s.stop()


def write_toml(data: dict[str, Any], path: Path) -> None:
    """A minimal TOML writer for the config's shapes (tables, strings, numbers, lists)."""
    lines: list[str] = []

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    def table(prefix: str, d: dict[str, Any]) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
        if prefix and scalars:
            lines.append(f"[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{k} = {value(v)}")
        if scalars:
            lines.append("")
        for k, v in d.items():
            if isinstance(v, dict):
                table(f"{prefix}.{k}" if prefix else k, v)

    table("", data)
    path.write_text("\n".join(lines))


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def start_chain(directory: Path, *, dsn: str | None = None, secure: bool = True, clock: Clock | None = None,
                overrides: dict[str, Any] | None = None, duo_faults: Any = None, cjib_faults: Any = None,
                with_cjib: bool = True, start: bool = True, pki_paths: dict[str, Any] | None = None,
                crl_next_update_seconds: float = 10.0) -> Chain:
    """Start the simulated partners (and, with ``start``, the gateway) in ``directory``.

    Without ``pki_paths`` a fresh sandbox PKI is made in ``directory/pki`` and its CA serves its
    CRL and OCSP on loopback (``chain.servers["ca"]``, ``chain.extra["ca"]``: the SandboxCA, whose
    CRL and OCSP answers are valid for ``crl_next_update_seconds``); ``gateway pki revoke NAME
    --dir DIR/pki`` revokes a certificate there.
    """
    from adapters.duo.simulator import DuoSimulator
    from adapters.ind.simulator import IndSimulator
    from gateway.security import keys, pki, tls
    from gateway.security.sandbox_ca import SandboxCA

    directory.mkdir(parents=True, exist_ok=True)
    clock = clock or SystemClock()
    servers: dict[str, RunningServer] = {}
    extra: dict[str, Any] = {}
    if pki_paths is None:
        # The CA listens first: the certificates name its URL.
        sandbox_ca = SandboxCA(directory / "pki", next_update_seconds=crl_next_update_seconds)
        servers["ca"] = _serve_ca(sandbox_ca, directory / "pki")
        extra["ca"] = sandbox_ca
        # A PKI kept from an earlier run whose CA had another address is made afresh.
        recorded = directory / "pki" / "ca-url.txt"
        stale = recorded.exists() and recorded.read_text().strip() != servers["ca"].url
        paths = pki.init(directory / "pki", ca_url=servers["ca"].url, force=stale)
    else:
        paths = pki_paths
    ca = str(paths["ca"])

    def pair(name: str) -> Any:
        return keys.load_keypair(paths[f"{name}-key"], paths[name]) if secure else None

    gw_trust = keys.load_trust("gateway", [ca], [paths["gateway"]]) if secure else None

    def serve(name: str, app: Any) -> RunningServer:
        ctx = tls.server_context(pair(name), [ca]) if secure else None
        servers[name] = serve_in_thread(app, ssl_context=ctx)
        return servers[name]

    duo = DuoSimulator(key=pair("duo"), gateway_trust=gw_trust, clock=clock, **({"faults": duo_faults} if duo_faults else {}))
    serve("duo", duo.app)
    ind = IndSimulator(key=pair("ind"), gateway_trust=gw_trust, ca_file=ca if secure else None, clock=clock)
    serve("ind", ind.app)
    cjib = None
    if with_cjib and secure:
        from adapters.cjib.simulator import CjibSimulator

        assert gw_trust is not None
        cjib = CjibSimulator(pair("cjib"), gw_trust, clock, **({"faults": cjib_faults} if cjib_faults else {}))
        serve("cjib", getattr(cjib, "app", cjib))

    def partner(name: str, url: str) -> dict[str, Any]:
        return {"url": url, "trust_anchor_files": [ca], "certificate_files": [str(paths[name])],
                "oin": pki.OINS[name], "policy": {"backoff_initial_seconds": 0.2, "backoff_max_seconds": 5.0, "breaker_open_seconds": 2.0}}

    data: dict[str, Any] = {
        "instance": "sandbox",
        "store": {"dsn": dsn or f"sqlite:///{directory / 'gateway.db'}"},
        "listen": {"host": "127.0.0.1", "port": 0, "metrics_port": 0},
        "tls": {"enabled": secure, "cert_file": str(paths["gateway"]), "key_file": str(paths["gateway-key"]),
                "oin": pki.OINS["gateway"]},
        # The sandbox CA's answers are short-lived, so a revocation shows within seconds.
        "revocation": {"refresh_seconds": 60.0, "grace_seconds": 30.0, "ocsp_interval_seconds": 2.0,
                       "retry_seconds": 2.0, "timeout_seconds": 2.0},
        "ind": {"gap_grace_seconds": 2.0, "reconcile_interval_seconds": 30.0},
        "cjib": {"poll_interval_seconds": 1.0},
        "log": {"file": str(directory / "gateway.log")},
        "console": {"lookup_key_file": str(_lookup_key(directory))},
        "encryption": {"key_file": str(data_key_file(directory))},
        "partners": {
            "duo": partner("duo", servers["duo"].url),
            "ind": partner("ind", servers["ind"].url + "/ind/feed"),
        },
    }
    if cjib is not None:
        data["partners"]["cjib"] = partner("cjib", servers["cjib"].url)
    data = _merge(data, overrides or {})
    config_file = directory / "gateway.toml"
    write_toml(data, config_file)
    cfg = config_mod.load(config_file)
    chain = Chain(directory=directory, config=cfg, config_file=config_file, pki=dict(paths), duo=duo, ind=ind,
                  cjib=cjib, servers=servers, extra=extra)
    if start:
        chain.start_daemon(clock=clock, drain_seconds=5.0)
    return chain


def _serve_ca(app: Any, pki_dir: Path) -> RunningServer:
    """The sandbox CA on the port an existing PKI names (its certificates point there), else a free one."""
    recorded = pki_dir / "ca-url.txt"
    url = recorded.read_text().strip() if recorded.exists() else ""
    if url.startswith("http://127.0.0.1:"):
        try:
            return serve_in_thread(app, port=int(url.rsplit(":", 1)[1]))
        except (OSError, ValueError):
            pass  # taken or unreadable: a free port, and the PKI is made afresh
    return serve_in_thread(app)


def data_key_file(directory: Path, name: str = "data.keys") -> Path:
    """The sandbox's data key file (encryption at rest), made once per directory, mode 0600."""
    import os

    from gateway.security import atrest

    path = directory / name
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("# Data keys (encryption at rest): ID:KEY, the last one is current. Keep a copy apart\n"
                    f"# from the database's backups.\nsandbox-1:{atrest.new_key()}\n")
    return path


def _lookup_key(directory: Path) -> Path:
    """The console's keyed-hash secret for BSN search, made once per sandbox directory."""
    import os
    import secrets

    path = directory / "console-lookup.key"
    if not path.exists():
        path.write_text(secrets.token_hex(32) + "\n")
        os.chmod(path, 0o600)
    return path


#: The sandbox's console sign-ins: one per role.
SANDBOX_OPERATORS = {"sandbox-operator": ["operator"], "sandbox-viewer": ["viewer"],
                     "sandbox-privacy": ["personal-data"]}


def sandbox_operators(directory: Path, store: Any) -> dict[str, dict[str, Any]]:
    """Make the sandbox's operators (once; passwords kept in DIR/console-sign-ins.json, mode 600)."""
    import json
    import os
    import secrets

    from gateway.console import auth

    path = directory / "console-sign-ins.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    have = {o["name"] for o in auth.operators(store)}
    for name, roles in SANDBOX_OPERATORS.items():
        if name in have:
            continue  # made by an earlier run (its password is in the file) or by hand
        known[name] = {"roles": roles, "password": secrets.token_urlsafe(12)}
        auth.add_operator(store, name, roles, known[name]["password"])
    path.write_text(json.dumps(known, indent=2) + "\n")
    os.chmod(path, 0o600)
    return known


def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def run(directory: Path, *, count: int, claims: int, seed: int, keep_running: bool, console: Any,
        dsn: str | None = None) -> dict[str, Any]:
    """``gateway sandbox``: push traffic through the chain and report what happened."""
    from rich.progress import Progress

    from adapters.ind.simulator import generate_meldingen
    from gateway.core.observability import configure_logging

    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    configure_logging("info", str(directory / "gateway.log"), stderr=False)
    chain = start_chain(directory, dsn=dsn)
    assert chain.daemon is not None
    store = chain.daemon.rt.store
    console.print(f"gateway on {chain.daemon.url} (mutual TLS), operator endpoints on {chain.daemon.operator_url}")
    sign_ins = sandbox_operators(directory, store)
    start_at = store.ind_highest() + 1
    # Run again in the same directory, the sandbox goes on where it stopped: new notifications (a
    # seed moved by the volgnummers already used), not the same meldingIds with other numbers,
    # which the gateway rightly refuses as DUPLICATE_DIFFERENT_CONTENT.
    meldingen = generate_meldingen(count, seed + start_at - 1, start_volgnummer=start_at)
    t0 = time.monotonic()
    with Progress(console=console, transient=False) as progress:
        task = progress.add_task("IND pushes notifications", total=len(meldingen))
        results = []
        for m in meldingen:
            results.append(chain.ind.push(chain.ind_endpoint, m))
            progress.advance(task)
        if meldingen:
            results.append(chain.ind.push(chain.ind_endpoint, meldingen[0]))  # a repeat
        deliver = progress.add_task("gateway delivers to DUO", total=len(meldingen))

        def delivered() -> int:
            rows = store.query("SELECT COUNT(*) FROM outbox WHERE partner = 'duo' AND operation = "
                               "'InburgeraarMelding' AND state = 'delivered' AND created_at >= :t",
                               {"t": time.time() - (time.monotonic() - t0) - 1})
            n = int(rows[0][0])
            progress.update(deliver, completed=n)
            return n

        wait_until(lambda: delivered() >= len(meldingen), timeout=60 + count * 0.05)
        claim_summary = _claims(chain, claims, seed, progress) if claims and chain.cjib is not None else {}
    elapsed = time.monotonic() - t0
    summary = _summary(chain, results, meldingen, elapsed, claim_summary)
    _print_summary(console, summary, chain)
    _print_console(console, chain, sign_ins, keep_running)
    summary["console"] = {"url": chain.daemon.operator_url + "/console/",
                          "sign_in": {n: v["roles"] for n, v in sign_ins.items()},
                          "passwords_file": str(directory / "console-sign-ins.json")}
    if keep_running:
        console.print("running; press Ctrl-C to stop")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    chain.stop()
    return summary


def _print_console(console: Any, chain: Chain, sign_ins: dict[str, dict[str, Any]], keep_running: bool) -> None:
    assert chain.daemon is not None
    console.print(f"\nOperator console: {chain.daemon.operator_url}/console/"
                  + ("" if keep_running else " (while it runs: add --keep-running to keep it open)"))
    for name, v in sign_ins.items():
        console.print(f"  sign in as {name} ({', '.join(v['roles'])}): password {v['password']}")


def _claims(chain: Chain, n: int, seed: int, progress: Any) -> dict[str, Any]:
    import httpx

    from adapters.duo.simulator import generate_vorderingen, post_vorderingoverdracht
    from gateway.security import keys

    paths = chain.pki
    duo_key = keys.load_keypair(paths["duo-key"], paths["duo"])
    from gateway.security import tls

    ctx = tls.client_context(duo_key, [str(paths["ca"])])
    today = dt.datetime.now(AMS).date()
    claims = generate_vorderingen(n, seed, today, broken_every=max(5, n // 2 or 1))
    task = progress.add_task("DUO hands claims to CJIB", total=len(claims))
    statuses: dict[int, int] = {}
    with httpx.Client(verify=ctx, timeout=30) as client:
        for v in claims:
            r = post_vorderingoverdracht(client, chain.duo_endpoint, v, duo_key)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            progress.advance(task)
    accepted = statuses.get(200, 0)
    store = chain.daemon.rt.store  # type: ignore[union-attr]
    wait_until(lambda: int(store.query("SELECT COUNT(*) FROM outbox WHERE partner = 'cjib' AND state <> 'pending'")[0][0])
               >= accepted, timeout=60)
    wait_until(lambda: int(store.query("SELECT COUNT(*) FROM outbox WHERE operation = 'VorderingStatus' "
                                       "AND state = 'pending'")[0][0]) == 0, timeout=30)
    # Let the simulated CJIB move its cases on by three weeks: dwangbevelen, payments.
    assert chain.cjib is not None
    chain.cjib.advance(21 * 86400)
    wait_until(lambda: int(store.query("SELECT COUNT(*) FROM outbox WHERE operation = 'VorderingStatus' "
                                       "AND state = 'delivered'")[0][0]) >= 2 * accepted, timeout=30)
    return {"handed_over": len(claims), "answers": statuses,
            "accepted_by_cjib": int(store.query("SELECT COUNT(*) FROM outbox WHERE partner = 'cjib' "
                                                "AND state = 'delivered'")[0][0]),
            "statuses_to_duo": int(store.query("SELECT COUNT(*) FROM outbox WHERE operation = 'VorderingStatus' "
                                               "AND state = 'delivered'")[0][0])}


def _summary(chain: Chain, results: list[Any], meldingen: list[Any], elapsed: float,
             claims: dict[str, Any]) -> dict[str, Any]:
    store = chain.daemon.rt.store  # type: ignore[union-attr]
    by_state = {f"{r[0]}/{r[1]}": int(r[2]) for r in store.query(
        "SELECT route, state, COUNT(*) FROM messages GROUP BY route, state")}
    rules: dict[str, int] = {}
    for r in store.query("SELECT facts FROM messages WHERE route = 'ind-duo'"):
        import json

        f = json.loads(r[0])
        key = f"{f.get('plichtIndicatie')} {f.get('regel')}"
        rules[key] = rules.get(key, 0) + 1
    acks = sum(1 for r in results if r.accepted)
    delivered = sum(1 for m in meldingen if chain.duo.count(_bericht_id(m)) == 1)
    return {
        "ok": delivered == len(meldingen) and acks == len(results),
        "pushed": len(results), "acknowledged": acks, "delivered_to_duo": delivered,
        "duplicates_at_duo": sum(1 for m in meldingen if chain.duo.count(_bericht_id(m)) > 1),
        "seconds": round(elapsed, 2), "messages_by_route_state": by_state, "beoordeling": rules,
        "not_acknowledged": [{"volgnummer": r.volgnummer, "http_status": r.http_status, "fault": r.detail_code,
                              "error": r.error} for r in results if not r.accepted],
        "claims": claims, "config": str(chain.config_file), "log_file": str(chain.directory / "gateway.log"),
    }


def _bericht_id(m: Any) -> str:
    from gateway.mapping.ind_to_duo import bericht_id_for

    return bericht_id_for(m.melding_id)


def _print_summary(console: Any, s: dict[str, Any], chain: Chain) -> None:
    console.print(f"\n[bold]{'OK' if s['ok'] else 'NOT OK'}[/]: {s['pushed']} pushes (one a deliberate repeat), "
                  f"{s['acknowledged']} acknowledged, {s['delivered_to_duo']} delivered to DUO exactly once, "
                  f"{s['duplicates_at_duo']} duplicates, in {s['seconds']} s")
    for r in s["not_acknowledged"]:
        console.print(f"  not acknowledged: volgnummer {r['volgnummer']}: http {r['http_status']} "
                      f"{r['fault'] or ''} {r['error'] or ''}")
    for key, n in sorted(s["beoordeling"].items()):
        console.print(f"  {n:5}  {key}")
    if s["claims"]:
        c = s["claims"]
        console.print(f"claims: {c['handed_over']} handed over (answers {c['answers']}), "
                      f"{c['accepted_by_cjib']} accepted by CJIB, {c['statuses_to_duo']} statuses sent to DUO")
    console.print(f"\nSee what happened:\n  gateway log --config {s['config']}\n"
                  f"  gateway show <meldingId> --config {s['config']}\n  log file: {s['log_file']}")
