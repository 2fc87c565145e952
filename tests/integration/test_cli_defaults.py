"""Defaults that work: no flags, no config, any working directory (issue 18).

translate and ``rules test`` find the rule sets shipped with the package; a command that needs a
config and finds none says where it looked and how to make one (``gateway init DIR``); reading
never creates a database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree
from typer.testing import CliRunner

from gateway.cli import app
from gateway.core import config as config_mod
from tests.paths import REPO, SAMPLES

runner = CliRunner()
IND_SAMPLE = SAMPLES / "ind-ontvangmelding-request.xml"
DUO = "{urn:nl:duo:inburgering:v1}"


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory outside the checkout, with no config in the environment."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    for key in list(os.environ):
        if key.startswith(config_mod.ENV_PREFIX):
            monkeypatch.delenv(key)
    return work


def _files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def test_the_default_rule_directory_is_the_shipped_one(elsewhere):
    shipped = Path(config_mod.shipped_rules_directory())
    assert (shipped / "inburgeringsplicht-2026.1.yaml").is_file()
    assert shipped == (REPO / "config" / "rules").resolve()  # in the checkout: one source
    assert config_mod.load(None, env={}).rules.directory == str(shipped)
    assert config_mod.Config().rules.directory == str(shipped)
    assert config_mod.load(None, env={"GATEWAY__RULES__DIRECTORY": ""}).rules.directory == str(shipped)


def test_an_explicit_rule_directory_is_relative_to_the_config_file(tmp_path, elsewhere):
    cfg_file = tmp_path / "etc" / "gateway.toml"
    cfg_file.parent.mkdir()
    cfg_file.write_text('[rules]\ndirectory = "my-rules"\n')
    assert config_mod.load(cfg_file, env={}).rules.directory == str(tmp_path / "etc" / "my-rules")


def test_translate_from_another_directory_without_flags(elsewhere):
    result = runner.invoke(app, ["translate", str(IND_SAMPLE)])
    assert result.exit_code == 0, result.output
    produced = etree.fromstring(result.stdout.encode())
    assert produced.tag == f"{DUO}InburgeraarMelding"
    assert produced.findtext(f"{DUO}beoordeling/{DUO}regelsetVersie").startswith("inburgeringsplicht-2026.1@")
    assert _files(elsewhere) == []


def test_translate_as_a_process_in_another_directory(elsewhere):
    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_CONFIG" and not k.startswith("GATEWAY__")}
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "translate", str(IND_SAMPLE)], cwd=elsewhere,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "<duo:InburgeraarMelding" in proc.stdout
    assert _files(elsewhere) == []


def test_translate_a_duo_claim_into_the_cjib_sample(elsewhere):
    result = runner.invoke(app, ["translate", str(SAMPLES / "duo-vorderingoverdracht.xml")])
    assert result.exit_code == 0, result.output
    expected = json.loads((SAMPLES / "cjib-vordering.json").read_text(encoding="utf-8"))
    assert json.loads(result.stdout) == expected
    assert _files(elsewhere) == []


@pytest.mark.parametrize(("sample", "kind"), [
    ("duo-inburgeraarmelding.xml", "a DUO InburgeraarMelding"),
    ("cjib-vordering.json", "a CJIB vordering (JSON"),
])
def test_translate_names_a_sample_of_another_kind(elsewhere, sample, kind):
    result = runner.invoke(app, ["translate", str(SAMPLES / sample)])
    assert result.exit_code == 2
    message = result.output.strip()
    assert "\n" not in message and "Traceback" not in message
    assert f"this is {kind}" in message
    assert "translate accepts an IND VergunningMelding" in message


def test_rules_test_without_a_config(elsewhere):
    cases = Path(config_mod.shipped_rules_directory()) / "inburgeringsplicht-2026.1.cases.yaml"
    result = runner.invoke(app, ["rules", "test", str(cases), "--ruleset", "inburgeringsplicht-2026.1"])
    assert result.exit_code == 0, result.output
    assert "0 failed" in result.output


def test_init_writes_a_config_that_loads_and_refuses_to_overwrite(tmp_path, elsewhere):
    target = tmp_path / "site"
    result = runner.invoke(app, ["init", str(target), "--json"])
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)
    config_file = target / "gateway.toml"
    assert written["config"] == str(config_file)
    assert (target / "pki").is_dir() and (target / "var" / "gateway.db").is_file()
    text = config_file.read_text()
    assert text.startswith("# The chain gateway's configuration, written by `gateway init`")
    assert "../" not in text  # every path relative to DIR

    cfg = config_mod.load(config_file, env={})
    assert cfg.tls.cert_file == str(target / "pki" / "gateway.pem")
    assert cfg.store.dsn == f"sqlite:///{target / 'var' / 'gateway.db'}"
    assert cfg.rules.directory == config_mod.shipped_rules_directory()

    check = runner.invoke(app, ["check-config", "--json", "--config", str(config_file)])
    assert check.exit_code == 1, check.output  # no certificates in pki/ yet
    items = {i["what"]: i for i in json.loads(check.stdout)["items"]}
    assert items["config"]["level"] == "ok"
    assert items["rule set"]["level"] == "ok"
    assert items["store"]["level"] == "ok"
    assert items["gateway certificate"]["level"] == "error"

    config_file.write_text(text + "# mine\n")
    again = runner.invoke(app, ["init", str(target)])
    assert again.exit_code == 2
    assert "exists" in again.output and "overwrite" in again.output
    assert config_file.read_text().endswith("# mine\n")


def test_a_command_that_needs_a_config_says_how_to_make_one(elsewhere):
    result = runner.invoke(app, ["report", "delays"])
    assert result.exit_code == 2
    assert "no config: looked for --config, $GATEWAY_CONFIG, config/gateway.toml" in result.output
    assert "gateway init DIR" in result.output
    assert _files(elsewhere) == []

    missing = runner.invoke(app, ["log", "--config", "nope.toml"])
    assert missing.exit_code == 2
    assert "nope.toml" in missing.output and "gateway init" in missing.output


@pytest.mark.parametrize("command", [["report", "delays"], ["log"], ["health"], ["check-config", "--json"]])
def test_reading_never_creates_a_database(tmp_path, elsewhere, command):
    config_file = tmp_path / "gateway.toml"
    config_file.write_text('[store]\ndsn = "sqlite:///var/gateway.db"\n[tls]\nenabled = false\n')
    result = runner.invoke(app, [*command, "--config", str(config_file)])
    assert result.exit_code != 0 or command[0] == "check-config"  # there a missing database is a warning
    assert f"no database at {tmp_path / 'var' / 'gateway.db'}" in result.output
    assert not (tmp_path / "var").exists()
    assert _files(elsewhere) == []


def test_db_status_of_a_missing_database_creates_nothing(tmp_path, elsewhere):
    config_file = tmp_path / "gateway.toml"
    config_file.write_text('[store]\ndsn = "sqlite:///var/gateway.db"\n')
    result = runner.invoke(app, ["db", "status", "--json", "--config", str(config_file)])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["version"] == 0
    assert not (tmp_path / "var").exists()


def test_db_upgrade_still_creates_the_database(tmp_path, elsewhere):
    config_file = tmp_path / "gateway.toml"
    config_file.write_text('[store]\ndsn = "sqlite:///var/gateway.db"\n')
    result = runner.invoke(app, ["db", "upgrade", "--config", str(config_file)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "var" / "gateway.db").is_file()
    assert runner.invoke(app, ["report", "delays", "--config", str(config_file)]).exit_code == 0
