"""Every option of every command, fed garbage: a one-line message naming the value, never a traceback.

The commands and their options are read from the typer app itself (click's command tree), so a new
command or option is covered without touching this file. Each option gets a garbage value of its
kind: a path under a regular file for paths, a directory where a file is read or written, a non-date
for times, ``garbage`` for fixed choices, -5 for counts and ids. The other required parameters get
valid values, with the config of a small sandbox run (so the garbage is met after the config loads).
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import pytest
import typer
from typer.testing import CliRunner

from gateway.cli import app
from tests.paths import REPO, SAMPLES

RULES = REPO / "config" / "rules"
RULESET = "inburgeringsplicht-2026.1"

# Free text, where any value is a valid one (a filter that matches nothing, a note, a name).
FREE = {("log", "id"), ("retry", "note"), ("resolve", "note"), ("rules apply", "operator"), ("sandbox", "seed"),
        ("rules test", "config"), ("audit", "actor"), ("hold", "reason"),
        # A reason is free text (recorded with --show-personal-data, otherwise unused).
        ("log", "reason"), ("show", "reason"), ("export", "reason"), ("rules impact", "reason"), ("report delays", "reason")}  # the last is read only for a --ruleset outside the case file's directory
TIME_NAMES = {"since", "until", "received_at"}
# Paths that are read or written as a file: a directory there is garbage too.
FILE_PATHS = {"config", "file", "key_file", "junit"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A sandbox run's config and database, an archive of it, and a regular file to put paths under."""
    base = tmp_path_factory.mktemp("garbage")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY")}
    run = subprocess.run([sys.executable, "-m", "gateway.cli", "sandbox", "--count", "3", "--claims", "1",
                          "--dir", str(base / "sandbox")], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    config = base / "sandbox" / "gateway.toml"
    exported = CliRunner().invoke(app, ["export", str(base / "archive"), "--config", str(config)])
    assert exported.exit_code == 0, exported.output
    (base / "afile").write_text("a regular file\n")
    (base / "key").write_bytes(b"a key of more than sixteen bytes")
    (base / "work").mkdir()
    return {"base": base, "config": config, "archive": base / "archive", "afile": base / "afile",
            "key": base / "key", "work": base / "work"}


# typer's command tree (click's, or typer's own copy of it): duck-typed, it differs between versions.
Command = Any
Param = Any


def _commands(group: Command, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Command]]:
    if hasattr(group, "commands"):
        for name, sub in sorted(group.commands.items()):
            yield from _commands(sub, (*prefix, name))
    else:
        yield prefix, group


def _kind(param: Param) -> str:
    """bool, choice, path, int or str: from the annotation typer read (or click's param type)."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None:  # older typer: click's own types
        type_name = type(param.type).__name__
        return {"BoolParamType": "bool", "Choice": "choice", "Path": "path", "IntParamType": "int",
                "IntRange": "int"}.get(type_name, "str")
    ann = descriptor.annotation
    if get_origin(ann) in (list, tuple):
        ann = get_args(ann)[0]
    if get_origin(ann) in (Union, UnionType):
        ann = next(a for a in get_args(ann) if a is not type(None))
    if get_origin(ann) is Literal:
        return "choice"
    return {bool: "bool", Path: "path", int: "int"}.get(ann, "str")


def _is_option(param: Param) -> bool:
    return param.param_type_name == "option"


COMMANDS = list(_commands(typer.main.get_command(app)))
_FRESH = itertools.count()


def _valid(command: str, param: Param, world: dict[str, Path]) -> list[str]:
    """A valid value for a required parameter (or for --config, always given)."""
    name = param.name or ""
    known: dict[tuple[str, str], Any] = {
        ("translate", "file"): SAMPLES / "ind-ontvangmelding-request.xml",
        ("rules check", "file"): RULES / f"{RULESET}.yaml",
        ("rules test", "file"): RULES / f"{RULESET}.cases.yaml",
        # A new name every time: export never replaces an archive unasked.
        ("export", "archive"): world["work"] / f"out-{next(_FRESH)}",
        ("replay", "archive"): world["archive"],
        ("pki init", "directory"): world["work"] / "pki",
        ("resolve", "note"): "a note",
        ("show", "ref"): "1",
    }
    if (command, name) in known:
        return [str(known[(command, name)])]
    if name == "config":
        return [str(world["config"])]
    if name == "ruleset":
        return [RULESET]
    if name == "ids":
        return ["1"]
    kind = _kind(param)
    if kind == "path":
        return [str(world["work"] / f"{command.replace(' ', '-')}-{name}")]
    if kind == "choice":
        return [get_args(param.type_descriptor.annotation)[0]]
    return ["1"] if kind == "int" else ["x"]


def _garbage(command: str, param: Param, world: dict[str, Path]) -> list[tuple[str, bool]]:
    """(value, must fail) pairs for ``param``; free text only has to end without a traceback."""
    name = param.name or ""
    kind = _kind(param)
    if kind == "bool" or (_is_option(param) and param.is_flag):
        return []
    if kind == "path":
        must = (command, name) not in FREE
        under = (str(world["afile"] / "x"), must)
        return [under, (str(world["work"]), must)] if name in FILE_PATHS else [under]
    if kind == "choice":
        return [("garbage", True)]
    if kind == "int":
        return [("-5", (command, name) not in FREE)]
    if name in TIME_NAMES:
        return [("yesterday", True), ("2026-13-45T10:00:00+01:00", True)]
    if name in ("ruleset", "ref"):
        return [("garbage", True)]
    return [("garbage [bold]:100:", (command, name) not in FREE)]


def _argv(path: tuple[str, ...], cmd: Command, target: Param, value: str,
          world: dict[str, Path]) -> list[str]:
    command = " ".join(path)
    args, positional = list(path), []
    for p in cmd.params:
        if p is target:
            chosen = [value]
        elif p.required or p.name == "config":
            chosen = _valid(command, p, world)
        else:
            continue
        if _is_option(p):
            args += [p.opts[0], *chosen]
        else:
            positional += chosen
    return [*args, "--", *positional] if positional else args  # "--": an argument may be "-5"


CASES = [(path, cmd, p) for path, cmd in COMMANDS for p in cmd.params if p.name != "help"]


def _invoke(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(tmp_path)  # relative defaults (sandbox/, sandbox/pki) land here
    return CliRunner().invoke(app, args, catch_exceptions=True,
                              env={"COLUMNS": "200", "GATEWAY_CONFIG": None, "GATEWAY_OPERATOR": "tester"})


def _assert_clean_refusal(result: Any, value: str, args: list[str]) -> None:
    text = result.output
    assert "Traceback" not in text, (args, text)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
    assert result.exit_code != 0, (args, text)
    lines = [line for line in text.splitlines() if value in line or "error:" in line]
    assert lines, f"{args}: no line names {value!r}:\n{text}"
    if any(line.startswith("error:") for line in lines):
        # Our own message: one line, naming the value (or the file it is about).
        errors = [line for line in text.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and text.strip() == errors[0].strip(), (args, text)
        assert value in errors[0] or Path(value).name in errors[0], (args, text)
    else:  # a usage error from click: exit 2, the value in its (one-line) message
        assert result.exit_code == 2 and "Invalid value" in text and value in text, (args, text)


def test_the_commands_are_all_found() -> None:
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"log", "show", "health", "translate", "export", "replay", "pki init", "db status", "rules check",
            "report delays"} <= names


@pytest.mark.parametrize(("path", "cmd", "param"), CASES,
                         ids=[f"{' '.join(p)}:{q.name}" for p, _, q in CASES])
def test_garbage_gives_one_line_and_no_traceback(path: tuple[str, ...], cmd: Command, param: Param,
                                                 world: dict[str, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for value, must_fail in _garbage(" ".join(path), param, world):
        args = _argv(path, cmd, param, value, world)
        result = _invoke(args, tmp_path, monkeypatch)
        if must_fail:
            _assert_clean_refusal(result, value, args)
        else:
            assert "Traceback" not in result.output, (args, result.output)
            assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)


# ---------------------------------------------------------------- after the config has loaded

def test_translate_refuses_a_bad_receipt_time(world: dict[str, Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("yesterday", "2026-13-45T10:00:00+01:00"):
        args = ["translate", str(SAMPLES / "ind-ontvangmelding-request.xml"), "--received-at", value,
                "--config", str(world["config"])]
        result = _invoke(args, tmp_path, monkeypatch)
        assert result.exit_code == 2
        _assert_clean_refusal(result, value, args)


def test_export_under_a_file_is_refused(world: dict[str, Path], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    target = str(world["afile"] / "x")
    args = ["export", target, "--config", str(world["config"])]
    result = _invoke(args, tmp_path, monkeypatch)
    assert result.exit_code == 2
    _assert_clean_refusal(result, target, args)
    # An existing directory that is not an archive is not replaced by one.
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "precious.txt").write_text("mine")
    result = _invoke(["export", str(keep), "--config", str(world["config"])], tmp_path, monkeypatch)
    assert result.exit_code == 2 and (keep / "precious.txt").read_text() == "mine"


def test_replay_junit_into_a_missing_directory_is_refused_before_replaying(
        world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    junit = str(tmp_path / "missing" / "report.xml")
    args = ["replay", str(world["archive"]), "--junit", junit]
    result = _invoke(args, tmp_path, monkeypatch)
    assert result.exit_code == 2
    _assert_clean_refusal(result, junit, args)
    assert "replayed" not in result.output


# ---------------------------------------------------------------- data is never markup

def test_rule_file_line_100_is_printed_literally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad-unknown-field.yaml"
    original = (RULES / f"{RULESET}.yaml").read_text()
    bad.write_text("# filler\n" * 99 + "onbekend_veld: 1\n" + original)
    result = _invoke(["rules", "check", str(bad)], tmp_path, monkeypatch)
    assert result.exit_code == 1, result.output
    assert f"{bad.name}:100:" in result.output, result.output
    assert "\N{HUNDRED POINTS SYMBOL}" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_personal_data_refusal_keeps_its_brackets(world: dict[str, Path], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    result = _invoke(["log", "--show-personal-data", "--config", str(world["config"])], tmp_path, monkeypatch)
    assert result.exit_code == 2, result.output
    assert "config [operators] personal_data" in result.output, result.output
    assert re.fullmatch(r"error: .*\n", result.output), result.output
