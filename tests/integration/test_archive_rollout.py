"""An archive that spans a rule-set roll-out replays clean against the build that made it.

The live order of events: the gateway assesses with the faulty rule set of 2025.9; `rules apply
--corrections` rolls out 2026.1 and queues corrections; the running process takes 2026.1 up
within a second (gateway/reload.py's watch, which records it in the history as a start), so the
notifications that follow are assessed with 2026.1, also after a restart; a second `rules apply`
finds nobody left to correct. The archive carries that history, and replay reproduces it: the
corrections, and each notification under the rule set that was active at its recorded time. `--rules-from-build` instead lists whose
indication this build's rule set gives otherwise.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from adapters.ind.simulator import generate_meldingen
from gateway.archive.format import export, read_archive
from gateway.archive.replay import replay
from gateway.core import config as config_mod
from gateway.rules import engine, rollout
from gateway.runtime import store_for
from tests import rules_history as h

KEY = b"roll-out-archive-test-key-0123456789"


def _settled(chain: Any, timeout: float = 60) -> None:
    store = chain.daemon.rt.store
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if int(store.query("SELECT COUNT(*) FROM outbox WHERE state = 'pending'")[0][0]) == 0:
            return
        time.sleep(0.1)
    raise AssertionError("deliveries still pending")


def _count_inbound(chain: Any) -> int:
    return int(chain.daemon.rt.store.query("SELECT COUNT(*) FROM inbound")[0][0])


def _push(chain: Any, meldingen: list[Any]) -> None:
    # Not before the daemon's first IND reconciliation has finished: it could fetch a notification
    # whose push is in flight, and the archive's time order need not show which intake won
    # (test_archive.py, _traffic).
    end = time.monotonic() + 30
    while chain.daemon.rt.store.get_kv("ind.laatste_volgnummer") is None and time.monotonic() < end:
        time.sleep(0.05)
    before = _count_inbound(chain)
    chain.ind.push_all(chain.ind_endpoint, meldingen)
    end = time.monotonic() + 60
    while _count_inbound(chain) < before + len(meldingen) and time.monotonic() < end:
        time.sleep(0.1)
    _settled(chain)


def _melding_id(payload: bytes | None) -> str:
    found = re.search(rb"meldingId>([^<]+)<", payload or b"")
    assert found is not None, "a correction names no meldingId"
    return found.group(1).decode()


def test_an_archive_spanning_a_roll_out_replays_clean(tmp_path: Path, pki_paths: dict[str, Any]) -> None:
    from gateway.sandbox import start_chain

    rules = h.rules_dir(tmp_path)
    chain = start_chain(tmp_path / "chain", pki_paths=pki_paths,
                        overrides={"rules": {"directory": str(rules), "active": h.FAULTY}})
    meldingen = generate_meldingen(72, 1919)
    new = engine.load(rules / f"{h.CURRENT}.yaml")
    try:
        daemon = chain.daemon
        assert daemon is not None
        _push(chain, meldingen[:48])
        first = rollout.apply_corrections(daemon.rt, new, "beleid")
        _settled(chain)
        deadline = time.monotonic() + 10  # the running process takes the new rule set up by itself
        while daemon.rt.ruleset.version != new.version and time.monotonic() < deadline:
            time.sleep(0.05)
        assert daemon.rt.ruleset.version == new.version
        _push(chain, meldingen[48:60])
        daemon.stop()
        daemon = chain.start_daemon()  # 2026.1 again, from the store
        assert daemon.rt.ruleset.version == new.version
        _push(chain, meldingen[60:])
        second = rollout.apply_corrections(daemon.rt, new, "beleid")
        _settled(chain)
    finally:
        chain.stop()
    assert first > 0 and second == 0, (first, second)  # nobody assessed after the roll-out needs correcting

    store = store_for(chain.config)
    try:
        manifest = export(chain.config, store, tmp_path / "archive", key=KEY)
    finally:
        store.close()
    history = [(e["source"], e["version"].split("@")[0], e["corrections"]) for e in manifest["rule_set_history"]]
    assert history == [("start", h.FAULTY, None), ("apply", h.CURRENT, first), ("start", h.CURRENT, None),
                       ("apply", h.CURRENT, 0)]

    archive = read_archive(tmp_path / "archive")
    corrections = [e for e in archive.entries if e.kind == "outbound" and e.meta["route"] == "rules-duo"]
    assert len(corrections) == first + second
    report = replay(archive, config=chain.config)
    assert report.differences == [], [f"{c.name}: {c.first}" for c in report.differences[:5]]

    # Without the history (the old behaviour: one rule set for everything) the roll-out is lost.
    archive.manifest["rule_set_history"] = []
    lost = replay(archive, config=chain.config)
    assert sum("recorded, but not produced" in c.first for c in lost.differences) >= first + second

    # This build's active rule set (2026.1) for everything: who would get another indication.
    cli_config = tmp_path / "replay.toml"
    cli_config.write_text(f'[rules]\ndirectory = "{rules}"\nactive = "{h.CURRENT}"\n')
    from_build = replay(read_archive(tmp_path / "archive"), config=config_mod.load(cli_config),
                        rules_from_build=True)
    # Everyone the roll-outs corrected, and (a notification IND itself corrected later is listed
    # too: replay compares every DUO message) nobody whose indication stays.
    corrected = {_melding_id(e.payload) for e in corrections}
    assert corrected <= {r["meldingId"] for r in from_build.impact}
    assert len(from_build.impact) <= len(corrected) + len(h.superseded(meldingen))
    assert {r["old"]["plichtIndicatie"] + " -> " + r["new"]["plichtIndicatie"] for r in from_build.impact} \
        == {"PLICHTIG -> NIET_PLICHTIG"}
    assert not [c for c in from_build.differences if not c.first.startswith("indication:")]

    from gateway.cli import app

    result = CliRunner().invoke(app, ["replay", str(tmp_path / "archive"), "--rules-from-build", "--json",
                                      "--config", str(cli_config)])
    assert result.exit_code == 1, result.output
    assert '"impact"' in result.stdout
