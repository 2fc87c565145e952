"""``gateway reload`` (tell the running gateway processes on this host to re-read their config) and
``gateway pki rotate`` (prepare the gateway's next key)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import time
from pathlib import Path

import typer

from gateway.cli import common as cli
from gateway.cli.common import ConfigOpt, JsonOpt, say


def reload(
    timeout: int = typer.Option(15, help="Seconds to wait for each process's answer."),
    config: Path = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Reload every running `gateway run` process of this config on this host (SIGHUP): certificates,
    pins, thresholds and the rule set, validated first; a process keeps its old configuration when
    the new one is not valid. Exit 1 when any process refused or did not answer."""
    from gateway.reload import status_key

    cli.at_least(timeout, 1, "--timeout")
    cfg = cli.load_config(config)
    store = cli.open_store(cfg)
    host = socket.gethostname()
    live = [p for p in store.heartbeats() if p["stopped_at"] is None and p["host"] == host
            and time.time() - float(p["last_seen"]) <= cfg.health.max_heartbeat_age_seconds]
    if not live:
        cli.fail(f"no running gateway process of this config on {host} (see `gateway health`)")
    sent = time.time()
    results: dict[str, dict[str, object]] = {}
    for p in live:
        try:
            os.kill(int(p["pid"]), signal.SIGHUP)
        except OSError as exc:
            results[str(p["pid"])] = {"ok": False, "reason": f"could not signal it: {exc.strerror or exc}"}
    with cli.err.status("waiting for the processes to reload ..."):
        end = time.monotonic() + timeout
        for p in live:
            pid = str(p["pid"])
            while pid not in results:
                raw = store.get_kv(status_key(p["instance"], int(p["pid"]), host))
                answer = json.loads(raw) if raw else None
                if answer and float(answer["at"]) >= sent:
                    results[pid] = {k: answer[k] for k in ("ok", "reason", "ruleset")}
                elif time.monotonic() > end:
                    results[pid] = {"ok": False, "reason": f"no answer within {timeout:.0f}s"}
                else:
                    time.sleep(0.1)
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        for pid, r in results.items():
            say(f"pid {pid}: " + (f"reloaded (rule set {r['ruleset']})" if r["ok"] else f"REFUSED: {r['reason']}"))
    if not all(r["ok"] for r in results.values()):
        raise typer.Exit(1)


def rotate(
    directory: Path = typer.Option(None, "--dir", help="Where to write the new key and request (default: beside "
                                   "the current certificate)."),
    switch_at: str = typer.Option(None, "--switch-at", help="When the new key takes over (ISO date-time; "
                                  "Europe/Amsterdam when no zone). Default: 7 days from now."),
    sandbox_ca: Path = typer.Option(None, "--sign-with-sandbox-ca", help="A sandbox PKI directory (ca.pem, "
                                    "ca-key.pem): issue the certificate at once. Never for production."),
    config: Path = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Prepare the gateway's next key: a new private key and a certificate request for the current
    certificate's subject. Send the request to your CA; then set [tls] next_cert_file, next_key_file
    and switch_at (printed here) and reload. Until switch_at the current key signs; from then on the
    new one, in every process, without a stop."""
    from gateway.security import rotation

    cfg = cli.load_config(config)
    if not cfg.tls.enabled or not cfg.tls.cert_file:
        cli.fail("tls is not enabled in this config: there is no key to rotate")
    current = Path(cfg.tls.cert_file)
    when = cli._parse_time(switch_at, "--switch-at") if switch_at else time.time() + 7 * 86400
    assert when is not None
    target = directory or current.parent
    cli.output_path(target, "--dir", directory=True)
    if sandbox_ca is not None and not (sandbox_ca / "ca-key.pem").is_file():
        cli.fail(f"--sign-with-sandbox-ca: {sandbox_ca} holds no ca-key.pem (a sandbox PKI from `gateway pki init`)")
    key_path, csr_path = rotation.prepare(current, target)
    out = {"next_key_file": str(key_path), "request": str(csr_path), "next_cert_file": None,
           "switch_at": dt.datetime.fromtimestamp(when, dt.UTC).isoformat(timespec="seconds")}
    if sandbox_ca is not None:
        cert = rotation.sign_request(csr_path, sandbox_ca / "ca.pem", sandbox_ca / "ca-key.pem",
                                     target / "gateway-next.pem",
                                     not_before=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
        out["next_cert_file"] = str(cert)
    if as_json:
        print(json.dumps(out, indent=2))
        return
    say(f"new key:  {key_path} (mode 0600)")
    say(f"request:  {csr_path}" + ("" if sandbox_ca else "  <- send this to your CA"))
    say("then add to [tls] and run `gateway reload`:")
    say(f'  next_key_file = "{key_path}"')
    say(f'  next_cert_file = "{out["next_cert_file"] or "<the certificate your CA returns>"}"')
    say(f'  switch_at = {out["switch_at"]}')
