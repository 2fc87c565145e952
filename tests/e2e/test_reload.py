"""Changing a running gateway without a stop (gateway/reload.py):

- an IND certificate rolled over under load (the new one pinned beside the old, IND switches, the
  old one removed) loses and repeats nothing, and the old key is refused afterwards;
- SIGHUP with a broken config keeps a real `gateway run` process on its old configuration, says
  why on health and to `gateway reload`; a good one is taken; a restart-only change is refused;
- a rule set rolled out in the store reaches the running process within seconds;
- the gateway's own next key takes over signing and TLS at ``tls.switch_at``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import httpx

from adapters.ind.simulator import IndSimulator
from gateway.core import config as config_mod
from gateway.rules import engine as rules_mod
from gateway.rules import rollout
from gateway.runtime import store_for
from gateway.sandbox import write_toml
from gateway.security import keys
from tests.e2e.helpers import GatewayProcess, Pusher, bericht_id, meldingen, wait_until
from tests.paths import REPO
from tests.rules_history import FAULTY, rules_dir


def _edit(config_file: Path, change: Any) -> None:
    data = tomllib.loads(config_file.read_text())
    change(data)
    write_toml(data, config_file)


def _pin_ind(config_file: Path, *certs: Path) -> None:
    _edit(config_file, lambda d: d["partners"]["ind"].__setitem__("certificate_files", [str(c) for c in certs]))


def test_ind_certificate_rollover_under_load_loses_and_repeats_nothing(make_chain: Any,
                                                                        pki_paths: dict[str, Any]) -> None:
    chain = make_chain()
    old, (new_key, new_cert) = pki_paths["ind"], pki_paths["ind-rollover"]
    ms = meldingen(45, seed=81)
    pusher = Pusher(chain.ind, lambda: chain.ind_endpoint, ms, pause=0.01)
    pusher.start()

    assert wait_until(lambda: len(pusher.acked) >= 10, 60)
    _pin_ind(chain.config_file, old, new_cert)  # the new certificate pinned beside the old
    assert chain.daemon.reload()["ok"]
    assert wait_until(lambda: len(pusher.acked) >= 20, 60)
    gw_trust = keys.load_trust("gateway", [str(pki_paths["ca"])], [pki_paths["gateway"]])
    pusher.ind = IndSimulator(key=keys.load_keypair(new_key, new_cert), gateway_trust=gw_trust,
                              ca_file=str(pki_paths["ca"]))  # IND switches to its new key
    assert wait_until(lambda: len(pusher.acked) >= 32, 60)
    _pin_ind(chain.config_file, new_cert)  # the old one removed
    assert chain.daemon.reload()["ok"]
    rt = chain.daemon.rt  # the new pins still ask the running revocation checker
    assert rt.revocation is not None and all(t.revocation is rt.revocation for t in rt.trust.values())
    pusher.join(120)

    assert not pusher.is_alive() and len(pusher.acked) == 45
    assert pusher.unexpected == [] and pusher.failed_tries == []  # no push was ever refused
    assert wait_until(lambda: all(chain.duo.count(bericht_id(m.melding_id)) == 1 for m in ms), 60), \
        [m.volgnummer for m in ms if chain.duo.count(bericht_id(m.melding_id)) != 1]
    assert chain.duo.accepted() == 45
    # The old key is no longer accepted.
    late = meldingen(1, seed=181, start=46)[0]
    refused = chain.ind.push(chain.ind_endpoint, late)
    assert not refused.accepted and refused.http_status == 500
    assert refused.detail_code == "CERTIFICATE" and chain.duo.count(bericht_id(late.melding_id)) == 0


def _gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "COLUMNS": "400"})


def test_sighup_with_a_broken_config_keeps_the_old_one(make_chain: Any) -> None:
    chain = make_chain(start=False)
    gp = GatewayProcess(chain.config_file, chain.directory / "gateway.log").start()
    store = store_for(chain.config)
    try:
        first = meldingen(2, seed=82)
        for m in first:
            assert chain.ind.push(gp.ind_endpoint, m).accepted
        good = chain.config_file.read_text()
        missing = chain.directory / "no-such-duo.pem"
        _edit(chain.config_file, lambda d: d["partners"]["duo"].__setitem__("certificate_files", [str(missing)]))

        answer = _gateway("reload", "--json", "--config", str(chain.config_file))
        assert answer.returncode == 1, answer.stdout + answer.stderr
        [(pid, result)] = json.loads(answer.stdout).items()
        assert gp.proc is not None and int(pid) == gp.proc.pid and not result["ok"] and str(missing) in result["reason"]
        health = gp.get("/health").json()["checks"]["config"]
        assert health["status"] == "degraded" and str(missing) in health["reason"]
        assert gp.running
        later = meldingen(2, seed=182, start=3)
        for m in later:  # still working on the old configuration
            assert chain.ind.push(gp.ind_endpoint, m).accepted
        assert wait_until(lambda: all(chain.duo.count(bericht_id(m.melding_id)) == 1 for m in first + later), 30)

        _edit(chain.config_file, lambda d: d["listen"].__setitem__("port", 1))
        moved = _gateway("reload", "--config", str(chain.config_file))
        assert moved.returncode == 1 and "listen changed" in moved.stdout and "restart" in moved.stdout

        chain.config_file.write_text(good)
        _edit(chain.config_file, lambda d: d.setdefault("health", {}).__setitem__("degraded_age_seconds", 1234.0))
        taken = _gateway("reload", "--config", str(chain.config_file))
        assert taken.returncode == 0, taken.stdout + taken.stderr
        assert "reloaded (rule set inburgeringsplicht-2026.1@sha256:" in taken.stdout
        check = gp.get("/health").json()["checks"]["config"]
        assert check["status"] == "ok" and check["digest"] == config_mod.load(chain.config_file).digest()[:12]
        assert chain.ind.push(gp.ind_endpoint, meldingen(1, seed=282, start=5)[0]).accepted
    finally:
        gp.terminate()
        store.close()


def test_a_rule_set_rolled_out_in_the_store_reaches_the_running_gateway(make_chain: Any, tmp_path: Path) -> None:
    chain = make_chain(overrides={"rules": {"directory": str(rules_dir(tmp_path)), "active": FAULTY}})
    rt = chain.daemon.rt
    assert rt.ruleset.name == FAULTY
    current = rules_mod.load(Path(rt.config.rules.directory) / "inburgeringsplicht-2026.1.yaml")
    rollout.activate(store_for(rt.config), current, "tester", "roll-out test")
    assert wait_until(lambda: rt.ruleset.name == "inburgeringsplicht-2026.1", 5)


def test_the_next_key_takes_over_at_its_moment(make_chain: Any, pki_paths: dict[str, Any]) -> None:
    next_key, next_cert = pki_paths["issue"]("gateway-next", common_name="gateway")
    switch_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)
    chain = make_chain(overrides={"tls": {"next_cert_file": str(next_cert), "next_key_file": str(next_key),
                                          "switch_at": switch_at}})
    ca, old_cert = str(pki_paths["ca"]), pki_paths["gateway"]
    both = keys.load_trust("gateway", [ca], [old_cert, next_cert])
    # The partners pin both of our certificates for the rollover, as they are asked to.
    chain.duo.gateway_trust = chain.ind.gateway_trust = chain.ind.wsse.trust = both
    chain.cjib._trust = both
    before, after = meldingen(2, seed=83)
    assert chain.ind.push(chain.ind_endpoint, before).accepted
    assert wait_until(lambda: chain.duo.count(bericht_id(before.melding_id)) == 1, 15)
    assert wait_until(lambda: chain.daemon.rt.own.cert_file == str(next_cert), 15)
    assert chain.ind.push(chain.ind_endpoint, after).accepted
    assert wait_until(lambda: chain.duo.count(bericht_id(after.melding_id)) == 1, 15)

    def signer(melding_id: str) -> bytes:
        body = next(b for k, _, b in chain.duo.received if k == bericht_id(melding_id))
        start = body.index(b"<ds:X509Certificate>") + len(b"<ds:X509Certificate>")
        return base64.b64decode(body[start:body.index(b"</ds:X509Certificate>")])

    old_der = keys.load_keypair(pki_paths["gateway-key"], old_cert).cert_der
    assert signer(before.melding_id) == old_der
    assert signer(after.melding_id) == keys.load_keypair(next_key, next_cert).cert_der
    # Our TLS server certificate (what IND sees) switched too: a new connection gets the new one.
    import socket
    import ssl

    with socket.create_connection(("127.0.0.1", chain.daemon.ports["partners"])) as raw:
        ctx = ssl.create_default_context(cafile=ca)
        ctx.load_cert_chain(pki_paths["ind"], pki_paths["ind-key"])
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls_sock:
            assert tls_sock.getpeercert(binary_form=True) == keys.load_keypair(next_key, next_cert).cert_der
    assert httpx.get(chain.daemon.operator_url + "/health", timeout=10).json()["checks"]["config"]["status"] == "ok"
