"""Health notices a dead gateway (issue 18): every `gateway run` process writes a heartbeat.

Before, `gateway health` said ok for a gateway stopped half an hour ago: with nothing waiting
nothing looked wrong. Now `gateway health`, /health and /metrics fail when no process has shown
a heartbeat within ``health.max_heartbeat_age_seconds`` (1 s here), and show each process with
its last heartbeat: after a clean stop (the process marks itself stopped) and after SIGKILL (the
heartbeat goes stale).
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx

from gateway.ops import health
from gateway.runtime import build_runtime
from tests.e2e.helpers import GatewayProcess, cli, metric, wait_until

FAST = {"health": {"max_heartbeat_age_seconds": 1.0}}


def health_json(config_file: Any) -> tuple[int, dict[str, Any]]:
    code, out = cli(["health", "--json", "--config", str(config_file)])
    return code, json.loads(out)


def test_health_fails_once_the_gateway_has_stopped(make_chain: Any) -> None:
    chain = make_chain(overrides=FAST)
    rt = chain.daemon.rt
    report = health.evaluate(rt)
    check = report["checks"]["processes"]
    assert report["status"] == "ok" and check["status"] == "ok" and check["live"] == 1, report
    (process,) = report["processes"]
    assert (process["instance"], process["pid"], process["state"]) == ("sandbox", os.getpid(), "live")
    # It keeps beating: still live well after the allowed age.
    first = rt.store.heartbeats()[0]["last_seen"]
    assert wait_until(lambda: rt.store.heartbeats()[0]["last_seen"] > first, 3)
    assert health.evaluate(rt)["checks"]["processes"]["status"] == "ok"
    r = httpx.get(chain.daemon.operator_url + "/health", timeout=10)
    assert r.status_code == 200 and r.json()["checks"]["processes"]["live"] == 1
    text = httpx.get(chain.daemon.operator_url + "/metrics", timeout=10).text
    assert metric(text, "gateway_live_processes") == 1
    age = metric(text, "gateway_heartbeat_age_seconds", instance="sandbox", pid=str(os.getpid()))
    assert age is not None and age < 1.0
    code, out = health_json(chain.config_file)
    assert code == 0 and out["checks"]["processes"]["status"] == "ok", out

    chain.daemon.stop()  # a clean stop: the process marks itself stopped
    code, out = health_json(chain.config_file)
    assert code == 2 and out["status"] == "failing", out
    check = out["checks"]["processes"]
    assert check["status"] == "failing" and check["live"] == 0
    assert "no gateway process has shown a heartbeat" in check["reason"]
    assert out["processes"][0]["state"] == "stopped" and out["processes"][0]["instance"] == "sandbox"
    assert any("sandbox" in line and "stopped" in line for line in check["seen"])
    code, text_out = cli(["health", "--config", str(chain.config_file)])
    assert code == 2 and "processes" in text_out and "reason=no gateway process" in text_out, text_out

    fresh = build_runtime(chain.config)
    try:
        health.export(fresh, report := health.evaluate(fresh))
        assert report["status"] == "failing"
        assert fresh.metrics.registry.get_sample_value("gateway_live_processes") == 0
        assert fresh.metrics.registry.get_sample_value("gateway_health_status") == 2
    finally:
        fresh.store.close()


def test_health_fails_when_the_gateway_was_killed(make_chain: Any) -> None:
    chain = make_chain(start=False, overrides=FAST)
    gp = GatewayProcess(chain.config_file, chain.directory / "gateway.log")
    try:
        gp.start()
        assert gp.proc is not None
        assert gp.get("/health").json()["checks"]["processes"]["live"] == 1
        code, out = health_json(chain.config_file)
        assert code == 0, out
        assert [(p["instance"], p["pid"], p["state"]) for p in out["processes"]] == [("sandbox", gp.proc.pid, "live")]
        pid = gp.proc.pid
        gp.kill()  # SIGKILL: no clean stop, the heartbeat just stops

        def failing() -> bool:
            return health_json(chain.config_file)[0] == 2

        assert wait_until(failing, 5, interval=0.2)
        code, out = health_json(chain.config_file)
        check = out["checks"]["processes"]
        assert check["status"] == "failing" and check["live"] == 0
        assert "within 1s" in check["reason"]
        assert (out["processes"][0]["pid"], out["processes"][0]["state"]) == (pid, "stale")
        assert out["processes"][0]["heartbeat_age_seconds"] > 1.0

        gp.start()  # a new process: health is ok again, the dead one is still listed
        code, out = health_json(chain.config_file)
        assert code == 0, out
        states = {p["pid"]: p["state"] for p in out["processes"]}
        assert states == {pid: "stale", gp.proc.pid: "live"}
        assert gp.terminate(timeout=30) == 0
        out = health_json(chain.config_file)[1]
        assert {p["pid"]: p["state"] for p in out["processes"]}[pid] == "stale"
        assert out["checks"]["processes"]["live"] == 0
    finally:
        gp.kill()
