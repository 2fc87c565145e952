"""The shipped Prometheus rules and Grafana dashboard: promtool checks the rules and runs their unit
tests (deploy/prometheus/alerts_test.yml), and every metric they name is one a real gateway runtime
exports (so a renamed metric cannot leave a rule silently watching nothing)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from gateway.core import config as config_mod
from gateway.ops import alerts, health
from gateway.runtime import build_runtime
from tests.paths import REPO
from tests.rules_history import write_toml

DEPLOY = REPO / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "chain-gateway.json"


def _promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: install Debian's prometheus package (scripts/test does)"
    return found


@pytest.mark.parametrize("args", [["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]],
                         ids=["check", "test"])
def test_promtool_accepts_the_rules(args: list[str]) -> None:
    run = subprocess.run([_promtool(), *args], cwd=DEPLOY / "prometheus", capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def _metric_names(expr: str) -> set[str]:
    return {m for m in re.findall(r"\b(gateway_[a-z_]+)", expr)}


def _exported(tmp_path: Path, pki_paths: dict[str, Any]) -> set[str]:
    path = tmp_path / "gateway.toml"
    ca = str(pki_paths["ca"])
    write_toml({"store": {"dsn": f"sqlite:///{tmp_path / 'g.db'}"},
                "tls": {"cert_file": str(pki_paths["gateway"]), "key_file": str(pki_paths["gateway-key"])},
                "partners": {p: {"url": "https://127.0.0.1:9/", "trust_anchor_files": [ca],
                                 "certificate_files": [str(pki_paths[p])]} for p in ("duo", "cjib")}}, path)
    rt = build_runtime(config_mod.load(path), migrate=True)
    alerts.run(rt)
    health.export(rt, health.evaluate(rt))
    text = generate_latest(rt.metrics.registry).decode()
    names = set(re.findall(r"^# TYPE (\S+) (\S+)", text, re.M))
    out = set()
    for name, kind in names:
        out.add(name)
        if kind == "histogram":
            out |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        if kind == "counter":
            out.add(f"{name}_total" if not name.endswith("_total") else name)
    return out


def test_every_metric_in_the_rules_and_the_dashboard_is_exported(tmp_path: Path, pki_paths: dict[str, Any]) -> None:
    rules = yaml.safe_load(RULES.read_text())
    used = {n for g in rules["groups"] for r in g["rules"] for n in _metric_names(r["expr"])}
    dashboard = json.loads(DASHBOARD.read_text())
    used |= {n for p in dashboard["panels"] for t in p["targets"] for n in _metric_names(t["expr"])}
    assert len(used) >= 15
    assert used - _exported(tmp_path, pki_paths) == set()
