"""``gateway export`` and ``gateway replay`` (registered by ``gateway.cli`` when this module exists)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Literal

import typer

from gateway.cli.common import (
    ConfigOpt,
    JsonOpt,
    _parse_time,
    err,
    fail,
    input_file,
    load_config,
    open_store,
    operator,
    out,
    output_path,
    say,
)

__all__ = ["export", "replay"]

EXIT_DIFFERENT = 1
EXIT_DAMAGED = 2

ExportArchiveArg = typer.Argument(..., help="Directory to write, or a file name ending in .tar.")
SinceOpt = typer.Option(None, "--since", help="Only exchanges from this ISO date or date-time on.")
RouteOpt = typer.Option(None, "--route", help="Only this route.")
PseudonymizeOpt = typer.Option(False, "--pseudonymize", help="Replace personal data (the default; kept for scripts).")
KeyFileOpt = typer.Option(None, "--key-file", help="Secret for the pseudonyms (at least 16 bytes); without it a "
                          "random key is made for this archive and thrown away.")
PersonalDataOpt = typer.Option(False, "--with-personal-data", help="Export personal data in clear (needs --reason; "
                               "only for operators listed in the config, operators.personal_data; recorded in the audit log).")
ExportReasonOpt = typer.Option(None, "--reason", help="Why the archive must carry personal data (with "
                               "--with-personal-data; recorded in the audit log).")
ForceOpt = typer.Option(False, "--force", help="Replace an existing archive (written beside it, then renamed).")
ReplayArchiveArg = typer.Argument(..., help="An archive written by `gateway export`.")
UpdateOpt = typer.Option(False, "--update", help="Make the archive's expectations what this build produces.")
JunitOpt = typer.Option(None, "--junit", help="Also write a JUnit XML report here.")
NoVerifyOpt = typer.Option(False, "--no-verify", help="Skip inbound signature checks (faster).")
RulesFromBuildOpt = typer.Option(False, "--rules-from-build", help="Assess every notification with this build's "
                                 "active rule set (not the archive's history) and list whose indication differs.")
ReplayConfigOpt = typer.Option(None, "--config", "-c", help="Settings to replay with (default: built-in defaults with this build's rule sets).")


def export(
    archive: Path = ExportArchiveArg,
    since: str = SinceOpt,
    route: Literal["ind-duo", "duo-cjib", "cjib-duo"] | None = RouteOpt,
    pseudonymize: bool = PseudonymizeOpt,
    key_file: Path = KeyFileOpt,
    with_personal_data: bool = PersonalDataOpt,
    reason: str = ExportReasonOpt,
    force: bool = ForceOpt,
    config: Path = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Write every recorded exchange to a new, self-contained archive, pseudonymized (see docs/archive-format.md)."""
    from gateway.archive import format as archive_mod

    if with_personal_data and (pseudonymize or key_file is not None):
        fail("--with-personal-data: an archive is either pseudonymized (--pseudonymize, --key-file) or not")
    if key_file is not None:
        input_file(key_file, "--key-file")
    output_path(archive, "ARCHIVE", directory=archive.suffix != ".tar")
    when = _parse_time(since, "--since")
    cfg = load_config(config)
    key = None if with_personal_data else _key(key_file)
    try:
        archive_mod.check_target(archive, replace=force)  # before any work, and before any audit entry
    except archive_mod.TargetRefused as exc:
        fail(f"ARCHIVE: {exc}")
    store = open_store(cfg)
    if with_personal_data:
        _allow_personal_data(cfg, store, archive, reason)
    try:
        with err.status("exporting (collecting, " + ("pseudonymizing, " if key else "") + "writing) ..."):
            manifest = archive_mod.export(cfg, store, archive, since=when, route=route, key=key,
                                          personal_data=with_personal_data, replace=force)
    except archive_mod.TargetRefused as exc:
        fail(f"ARCHIVE: {exc}")
    except ValueError as exc:  # a birth date that no pseudonym can stand in for (see the docs)
        fail(f"ARCHIVE: not written: {exc}")
    except OSError as exc:
        fail(f"ARCHIVE: {archive}: {exc.strerror or exc}")
    if as_json:
        out.print_json(json.dumps(manifest))
    else:
        kind = "pseudonymized" if manifest.get("pseudonymized") else "WITH PERSONAL DATA"
        say(f"wrote {archive} ({kind}): {manifest.get('exchanges')} exchanges {manifest.get('counts')}")


def _key(key_file: Path | None) -> bytes:
    import secrets

    from gateway.archive.pseudonym import load_key

    if key_file is None:
        return secrets.token_bytes(32)  # this archive's key, thrown away: its pseudonyms cannot be redone
    try:
        return load_key(key_file)
    except (OSError, ValueError) as exc:
        fail(f"--key-file: {exc}")


def _allow_personal_data(cfg: Any, store: Any, archive: Path, reason: str | None) -> None:
    """Only an operator allowed to see personal data, with a stated reason; every request (allowed or
    refused) is recorded in the audit log before anything is written."""
    from gateway.core import audit
    from gateway.core.errors import GatewayError

    allowed = operator() in cfg.operators.personal_data
    if allowed and not (reason or "").strip():
        fail("--with-personal-data needs a stated reason: add --reason TEXT (it is recorded in the audit log)")
    try:
        audit.record(store, actor=operator(), action="export-personal-data", target=str(archive.resolve()),
                     reason=(reason or "").strip() or None, outcome="ok" if allowed else "refused")
    except GatewayError as exc:
        fail(f"personal data is exported only when the access can be recorded, and it could not be: {exc}")
    if not allowed:
        fail(f"operator {operator()!r} may not export personal data (config [operators] personal_data); "
             "the refusal is recorded in the audit log")


def replay(
    archive: Path = ReplayArchiveArg,
    update: bool = UpdateOpt,
    junit: Path = JunitOpt,
    no_verify: bool = NoVerifyOpt,
    rules_from_build: bool = RulesFromBuildOpt,
    config: Path = ReplayConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Feed an archive's inbound traffic through this build and compare what it produces."""
    from gateway.archive import replay as replay_mod
    from gateway.archive.format import DamagedArchive, read_archive

    if update and rules_from_build:
        fail("--update: not with --rules-from-build (its differences are an impact list, not expectations)")
    if not archive.exists():
        fail(f"ARCHIVE: {archive}: no such archive")
    if junit is not None:
        output_path(junit, "--junit", directory=False)
    try:
        recorded = read_archive(archive)
    except DamagedArchive as exc:
        fail(str(exc), EXIT_DAMAGED)
    cfg = load_config(config) if config else None
    from rich.progress import Progress

    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("replaying", total=len(recorded.entries))
        report = replay_mod.replay(recorded, config=cfg, verify=not no_verify, rules_from_build=rules_from_build,
                                   progress=lambda done, total: bar.update(task, completed=done, total=total))
    if junit is not None:
        try:
            junit.write_text(replay_mod.junit_xml(report))
        except OSError as exc:
            fail(f"--junit: {junit}: {exc.strerror or exc}")
    _print(report, as_json)
    if update and report.differences:
        from gateway.archive.format import TargetRefused

        try:
            changed = replay_mod.update_archive(archive, recorded, report)
        except TargetRefused as exc:
            fail(f"--update: {exc}")
        say(f"updated {changed} expectation(s) in {archive}", console=err)
        raise typer.Exit(0)
    raise typer.Exit(EXIT_DIFFERENT if report.differences else 0)


def _print(report: object, as_json: bool) -> None:
    summary = report.summary()  # type: ignore[attr-defined]
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
        return
    for case in report.differences:  # type: ignore[attr-defined]
        sys.stdout.write(f"DIFFERENT {case.name}: {case.first}\n{case.diff}\n")
    if summary.get("ruleset"):
        rows = summary["impact"]
        sys.stdout.write(f"impact of {summary['ruleset']}: {len(rows)} notification(s) would get another "
                         "indication (berichtId, meldingId: old -> new)\n")
        for r in rows:
            sys.stdout.write(f"  {r['berichtId']}  {r['meldingId']}  {r['old']['plichtIndicatie']} "
                             f"({r['old']['regel']}) -> {r['new']['plichtIndicatie']} ({r['new']['regel']})\n")
    sys.stdout.write(f"replayed {summary['exchanges']} exchanges in {summary['seconds']} s: "
                     f"{summary['compared']} messages compared, {summary['different']} different\n")
