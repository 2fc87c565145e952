"""Certificates, consistently (issue 18): `gateway run` applies the checks of `gateway check-config`.

Before, an expired extra pinned certificate was an error for check-config and nothing for run, and
run started with its only pinned certificate expired (then refused every message). Now both use
``gateway.ops.checks.certificate_findings``: an expired pin beside a valid one is a warning in both
(check-config exits 0, run starts and logs it); the only pin expired, or a missing file, is an
error in both (check-config exits 1, run refuses to start and names the file).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.core import config as config_mod
from gateway.core.errors import ConfigError
from gateway.daemon import Daemon
from gateway.ops import checks
from gateway.sandbox import start_chain
from tests.e2e.helpers import REPO, GatewayProcess, log_events


@pytest.fixture
def configure(tmp_path: Path, pki_paths: dict[str, Any]) -> Iterator[Callable[..., Any]]:
    """``configure(**overrides)``: a chain's config (simulators running, no gateway) with these changes."""
    chains: list[Any] = []

    def make(**overrides: Any) -> Any:
        chain = start_chain(tmp_path / f"chain{len(chains)}", pki_paths=pki_paths, start=False, overrides=overrides)
        chains.append(chain)
        return chain

    yield make
    for chain in chains:
        chain.stop()


def expired(pki: dict[str, Any]) -> str:
    _key, cert = pki["ind-expired"]
    return str(cert)


def check_config(config_file: Path) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["check-config", "--json", "--config", str(config_file)])
    return result.exit_code, json.loads(result.stdout)


def run_refused(config_file: Path) -> str:
    """`gateway run` as a subprocess: it must exit at start-up; its standard error."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "500"}
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "run", "--config", str(config_file)], cwd=str(REPO),
                          env=env, capture_output=True, timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    return proc.stderr.decode().replace("\n", "")


def test_an_expired_extra_pin_is_a_warning_in_both(configure: Callable[..., Any], pki_paths: dict[str, Any]) -> None:
    old = expired(pki_paths)
    chain = configure(partners={"ind": {"certificate_files": [old, str(pki_paths["ind"])]}})
    code, report = check_config(chain.config_file)
    assert code == 0, report
    flagged = [i for i in report["items"] if old in i["message"]]
    assert [i["level"] for i in flagged] == ["warning"], flagged
    assert "another pinned certificate is valid" in flagged[0]["message"] and flagged[0]["file"] == old

    # The start-up check of `gateway run` says the same.
    warnings = checks.startup_check(chain.config)
    assert [w.file for w in warnings if w.file == old] == [old]
    # And `gateway run` starts, logging the warning.
    gp = GatewayProcess(chain.config_file, chain.directory / "gateway.log")
    try:
        gp.start()
        assert gp.get("/health").status_code == 200
        logged = log_events(gp.log_file, "config_warning")
        assert any(e.get("file") == old for e in logged), logged
        assert gp.terminate(timeout=30) == 0
    finally:
        gp.kill()


def _only_pin_expired(pki: dict[str, Any]) -> tuple[dict[str, Any], str]:
    return {"partners": {"ind": {"certificate_files": [expired(pki)]}}}, expired(pki)


def _missing_pin(pki: dict[str, Any]) -> tuple[dict[str, Any], str]:
    missing = str(Path(pki["dir"]) / "duo-2027.pem")
    return {"partners": {"duo": {"certificate_files": [str(pki["duo"]), missing]}}}, missing


def _missing_anchor(pki: dict[str, Any]) -> tuple[dict[str, Any], str]:
    missing = str(Path(pki["dir"]) / "no-such-ca.pem")
    return {"partners": {"cjib": {"trust_anchor_files": [missing]}}}, missing


def _own_certificate_expired(pki: dict[str, Any]) -> tuple[dict[str, Any], str]:
    key, cert = pki["ind-expired"]
    return {"tls": {"cert_file": str(cert), "key_file": str(key)}}, str(cert)


@pytest.mark.parametrize("case", [_only_pin_expired, _missing_pin, _missing_anchor, _own_certificate_expired],
                         ids=["only-pin-expired", "missing-pin-file", "missing-anchor-file", "own-certificate-expired"])
def test_an_error_for_check_config_stops_gateway_run(configure: Callable[..., Any], pki_paths: dict[str, Any],
                                                     case: Callable[[dict[str, Any]], tuple[dict[str, Any], str]]) -> None:
    overrides, file = case(pki_paths)
    chain = configure(**overrides)
    code, report = check_config(chain.config_file)
    assert code == 1, report
    errors = [i for i in report["items"] if i["level"] == "error"]
    assert errors and all(file in i["message"] for i in errors), errors

    with pytest.raises(ConfigError) as caught:
        Daemon(config_mod.load(chain.config_file))
    assert caught.value.file == file and file in str(caught.value)
    assert file in run_refused(chain.config_file)


def test_check_config_and_run_agree_on_a_sound_config(configure: Callable[..., Any]) -> None:
    chain = configure()
    code, report = check_config(chain.config_file)
    assert code == 0 and not [i for i in report["items"] if i["level"] == "error"], report
    assert [w for w in checks.startup_check(chain.config) if w.level != "warning"] == []
