"""``gateway check-config``: everything start-up would refuse, plus certificates near expiry."""

from __future__ import annotations

import datetime as dt
from typing import Any

from gateway.config import Config
from gateway.errors import ConfigError, GatewayError

__all__ = ["check_config"]


def check_config(cfg: Config) -> dict[str, Any]:
    items: list[dict[str, str]] = []

    def add(level: str, what: str, message: str) -> None:
        items.append({"level": level, "what": what, "message": message})

    add("ok", "config", f"valid ({cfg.source or 'defaults'}; digest {cfg.digest()[:12]})")
    _check_schemas(add)
    _check_rules(cfg, add)
    _check_store(cfg, add)
    if cfg.tls.enabled:
        _check_certificates(cfg, add)
    else:
        add("warning", "tls", "tls.enabled is false: no mutual TLS and no signatures (development only)")
    for name in ("ind", "duo", "cjib"):
        if name not in cfg.partners:
            add("warning", f"partner {name}", "not configured: this route is off")
        elif name != "ind" and not cfg.partner(name).url:
            add("error", f"partner {name}", "url is empty")
    return {"ok": not any(i["level"] == "error" for i in items), "items": items}


def _check_schemas(add: Any) -> None:
    from gateway import xmlsafe

    try:
        digests = xmlsafe.verify_manifest()
        add("ok", "schemas", f"{len(digests)} partner files match xsd/SHA256SUMS")
    except ConfigError as exc:
        add("error", "schemas", str(exc))


def _check_rules(cfg: Config, add: Any) -> None:
    from gateway.runtime import load_ruleset

    try:
        rs = load_ruleset(cfg)
        add("ok", "rule set", f"active {rs.version}")
    except ConfigError as exc:
        add("error", "rule set", str(exc))


def _check_store(cfg: Config, add: Any) -> None:
    from gateway.store import SCHEMA_VERSION, Store

    try:
        version = Store(cfg.store.dsn).version()
    except GatewayError as exc:
        add("error", "store", str(exc))
        return
    level = "ok" if version == SCHEMA_VERSION else ("warning" if version < SCHEMA_VERSION else "error")
    add(level, "store", f"{cfg.store.dsn.split('@')[-1]}: schema version {version}, gateway needs {SCHEMA_VERSION}"
        + (" (run `gateway db upgrade`)" if version < SCHEMA_VERSION else ""))


def _check_certificates(cfg: Config, add: Any) -> None:
    from gateway.security import keys

    now = dt.datetime.now(dt.UTC)
    window = dt.timedelta(days=cfg.tls.expiry_warning_days)
    try:
        own = keys.load_keypair(cfg.tls.key_file, cfg.tls.cert_file)
        _expiry(add, "gateway certificate", own.certificate, now, window)
    except ConfigError as exc:
        add("error", "gateway certificate", str(exc))
    for name, pc in cfg.partners.items():
        try:
            trust = keys.load_trust(name, pc.trust_anchor_files, pc.certificate_files)
        except ConfigError as exc:
            add("error", f"partner {name}", str(exc))
            continue
        for anchor in trust.anchors:
            _expiry(add, f"partner {name} trust anchor", anchor, now, window)
        for cert in trust.certificates:
            what = f"partner {name} certificate {keys.kid(cert)[:12]}"
            try:
                trust.check(cert, now)
            except GatewayError as exc:
                add("error", what, exc.message)
                continue
            _expiry(add, what, cert, now, window)


def _expiry(add: Any, what: str, cert: Any, now: dt.datetime, window: dt.timedelta) -> None:
    not_after = cert.not_valid_after_utc
    left = not_after - now
    if left.total_seconds() <= 0:
        add("error", what, f"expired on {not_after:%Y-%m-%d}")
    elif left <= window:
        add("warning", what, f"expires on {not_after:%Y-%m-%d}, in {left.days} days")
    else:
        add("ok", what, f"valid until {not_after:%Y-%m-%d} ({left.days} days)")
