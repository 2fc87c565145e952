"""Which config changes a reload may swap in and which need a restart (gateway.reload)."""

from __future__ import annotations

from gateway.core.config import Config
from gateway.reload import RELOADABLE, restart_only_changes


def _with(**changes: object) -> Config:
    return Config.model_validate({**Config().model_dump(exclude={"source"}), **changes})


def test_thresholds_certificates_and_pins_are_reloadable() -> None:
    new = _with(health={"max_silence_seconds": 60.0}, tls={"cert_file": "new.pem"},
                partners={"ind": {"certificate_files": ["a.pem", "b.pem"]}})
    old = _with(partners={"ind": {"certificate_files": ["a.pem"]}})
    assert restart_only_changes(old, new) == []


def test_the_process_shape_needs_a_restart() -> None:
    old = _with(partners={"duo": {"url": "https://duo.example/a"}})
    new = _with(instance="gateway-2", listen={"port": 9443}, tls={"enabled": False},
                partners={"duo": {"url": "https://duo.example/b"}}, alerts={"evaluate_seconds": 5.0})
    assert restart_only_changes(old, new) == [
        "instance", "listen", "tls.enabled", "partners.duo.url", "alerts.evaluate_seconds"]
    assert restart_only_changes(old, _with()) == ["partners (which partners there are)"]


def test_a_section_not_named_reloadable_needs_a_restart() -> None:
    """A section added to Config later is restart-only until someone makes the reload apply it."""
    restart_only = set(Config.model_fields) - set(RELOADABLE) - {"source"}
    assert {"instance", "store", "listen", "revocation", "console"} <= restart_only
    assert set(RELOADABLE) <= set(Config.model_fields)
    assert restart_only_changes(_with(), _with(console={"session_seconds": 60.0})) == ["console"]
