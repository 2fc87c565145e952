"""``gateway export`` and ``gateway replay`` (registered by ``gateway.cli`` when this module exists)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal

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
PseudonymizeOpt = typer.Option(False, "--pseudonymize", help="Replace personal data (needs --key-file).")
KeyFileOpt = typer.Option(None, "--key-file", help="Secret for --pseudonymize (at least 16 bytes).")
ReplayArchiveArg = typer.Argument(..., help="An archive written by `gateway export`.")
UpdateOpt = typer.Option(False, "--update", help="Make the archive's expectations what this build produces.")
JunitOpt = typer.Option(None, "--junit", help="Also write a JUnit XML report here.")
NoVerifyOpt = typer.Option(False, "--no-verify", help="Skip inbound signature checks (faster).")
ReplayConfigOpt = typer.Option(None, "--config", "-c", help="Settings to replay with (default: built-in defaults with this build's rule sets).")


def export(
    archive: Path = ExportArchiveArg,
    since: str = SinceOpt,
    route: Literal["ind-duo", "duo-cjib", "cjib-duo"] | None = RouteOpt,
    pseudonymize: bool = PseudonymizeOpt,
    key_file: Path = KeyFileOpt,
    config: Path = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Write every recorded exchange to a self-contained archive (see docs/archive-format.md)."""
    from gateway.archive import format as archive_mod
    from gateway.archive.pseudonym import load_key

    if pseudonymize and key_file is None:
        fail("--pseudonymize needs --key-file")
    if key_file is not None:
        input_file(key_file, "--key-file")
    output_path(archive, "ARCHIVE", directory=archive.suffix != ".tar")
    if archive.is_dir() and any(archive.iterdir()) and not (archive / "manifest.json").is_file():
        # An archive directory is replaced as a whole: never a directory that holds something else.
        fail(f"ARCHIVE: {archive} is a directory that is not empty and not an archive")
    when = _parse_time(since, "--since")
    cfg = load_config(config)
    store = open_store(cfg)
    try:
        key = load_key(key_file) if pseudonymize else None
    except (OSError, ValueError) as exc:
        fail(f"--key-file: {exc}")
    try:
        with err.status("exporting (collecting, " + ("pseudonymizing, " if key else "") + "writing) ..."):
            manifest = archive_mod.export(cfg, store, archive, since=when, route=route, key=key)
    except OSError as exc:
        fail(f"ARCHIVE: {archive}: {exc.strerror or exc}")
    if as_json:
        out.print_json(json.dumps(manifest))
    else:
        say(f"wrote {archive}: {manifest.get('exchanges')} exchanges {manifest.get('counts')}")


def replay(
    archive: Path = ReplayArchiveArg,
    update: bool = UpdateOpt,
    junit: Path = JunitOpt,
    no_verify: bool = NoVerifyOpt,
    config: Path = ReplayConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Feed an archive's inbound traffic through this build and compare what it produces."""
    from gateway.archive import replay as replay_mod
    from gateway.archive.format import DamagedArchive, read_archive

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
        report = replay_mod.replay(recorded, config=cfg, verify=not no_verify,
                                   progress=lambda done, total: bar.update(task, completed=done, total=total))
    if junit is not None:
        try:
            junit.write_text(replay_mod.junit_xml(report))
        except OSError as exc:
            fail(f"--junit: {junit}: {exc.strerror or exc}")
    _print(report, as_json)
    if update and report.differences:
        changed = replay_mod.update_archive(archive, recorded, report)
        say(f"updated {changed} expectation(s) in {archive}", console=err)
        raise typer.Exit(0)
    raise typer.Exit(EXIT_DIFFERENT if report.differences else 0)


def _print(report: object, as_json: bool) -> None:
    summary = report.summary()  # type: ignore[attr-defined]
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
        return
    for case in report.differences:  # type: ignore[attr-defined]
        sys.stdout.write(case.diff + "\n")
    sys.stdout.write(f"replayed {summary['exchanges']} exchanges in {summary['seconds']} s: "
                     f"{summary['compared']} messages compared, {summary['different']} different\n")
