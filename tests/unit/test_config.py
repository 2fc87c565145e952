"""Config is validated once: unknown keys refused, units in names, env overrides, paths resolved."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.core import config
from gateway.core.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "gateway.example.toml"


def test_the_example_config_is_valid_and_complete():
    cfg = config.load(EXAMPLE, env={})
    assert cfg.partner("duo").policy.max_attempts == 40
    assert cfg.cjib.stall_seconds == 14400
    assert Path(cfg.tls.cert_file).is_absolute()
    assert cfg.rules.directory.endswith("config/rules")


def test_unknown_keys_are_refused_with_their_place(tmp_path):
    p = tmp_path / "g.toml"
    p.write_text('[partners.duo.policy]\nmax_atempts = 3\n')
    with pytest.raises(ConfigError) as err:
        config.load(p, env={})
    assert "unknown key 'partners.duo.policy.max_atempts'" in str(err.value)
    assert str(p) in str(err.value)


def test_invalid_values_are_refused(tmp_path):
    p = tmp_path / "g.toml"
    p.write_text('[partners.duo.policy]\nconcurrency = 0\n')
    with pytest.raises(ConfigError, match="concurrency"):
        config.load(p, env={})


def test_environment_overrides_single_values(tmp_path):
    p = tmp_path / "g.toml"
    p.write_text('[store]\ndsn = "sqlite:///a.db"\n')
    cfg = config.load(p, env={"GATEWAY__STORE__DSN": "postgresql://x@h/db",
                              "GATEWAY__PARTNERS__DUO__POLICY__MAX_ATTEMPTS": "5"})
    assert cfg.store.dsn == "postgresql://x@h/db"
    assert cfg.partner("duo").policy.max_attempts == 5


def test_relative_sqlite_path_is_resolved_against_the_config_file(tmp_path):
    p = tmp_path / "g.toml"
    p.write_text('[store]\ndsn = "sqlite:///var/gw.db"\n')
    assert config.load(p, env={}).store.dsn == f"sqlite:///{tmp_path / 'var' / 'gw.db'}"


def test_not_toml_is_a_clear_error(tmp_path):
    p = tmp_path / "g.toml"
    p.write_text("[store\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(p, env={})
