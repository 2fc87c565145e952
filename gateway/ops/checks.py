"""``gateway check-config`` and ``gateway run``'s start-up: one set of checks for both.

``certificate_findings`` judges every key and certificate the configuration names; ``check-config``
reports its findings, and ``gateway run`` (``startup_findings``) refuses to start on any error,
naming the file, and logs the warnings. The rules:

- a file that is missing or does not hold what it should: error;
- our own certificate expired (or not yet valid), or a partner with no pinned certificate that
  is usable now (pinned, chains to an anchor, valid): error;
- a pinned certificate that is not usable beside one that is (a rollover's left-over, or the
  next one not yet valid), or an expired trust anchor beside a usable pin: warning;
- anything within ``tls.expiry_warning_days`` of its end: warning;
- a pinned certificate without the partner's configured OIN (``oin``) in subject serialNumber
  counts as not usable (so: an error, or a warning beside a usable one); our own certificate
  without ``tls.oin``: error. (Revocation is not judged here: it needs the network.)
"""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gateway.core.config import Config
from gateway.core.errors import ConfigError, GatewayError

__all__ = ["Finding", "check_config", "certificate_findings", "startup_findings", "startup_check"]


@dataclass(frozen=True)
class Finding:
    level: str  # ok | warning | error
    what: str
    message: str
    #: The file the finding is about, when there is one.
    file: str | None = None


def check_config(cfg: Config, now: dt.datetime | None = None) -> dict[str, Any]:
    items: list[dict[str, str]] = []

    def add(level: str, what: str, message: str) -> None:
        items.append({"level": level, "what": what, "message": message})

    def take(findings: list[Finding]) -> None:
        for f in findings:
            items.append({k: v for k, v in asdict(f).items() if v is not None})

    add("ok", "config", f"valid ({cfg.source or 'defaults'}; digest {cfg.digest()[:12]})")
    _check_schemas(add)
    _check_rules(cfg, add)
    _check_store(cfg, add)
    take(_tls_findings(cfg, now))
    take(_partner_findings(cfg))
    take(console_findings(cfg))
    return {"ok": not any(i["level"] == "error" for i in items), "items": items}


def startup_findings(cfg: Config, now: dt.datetime | None = None) -> list[Finding]:
    """What ``gateway run`` checks before it starts: the same certificate and partner checks as
    ``check-config`` (the rule set and the store are checked as the runtime loads them)."""
    return _tls_findings(cfg, now) + _partner_findings(cfg) + console_findings(cfg)


def console_findings(cfg: Config) -> list[Finding]:
    """The console's lookup key (BSN search) and operators' CA (certificate sign-in)."""
    c = cfg.console
    if not c.enabled:
        return []
    out: list[Finding] = []
    if not c.lookup_key_file:
        out.append(Finding("warning", "console", "console.lookup_key_file is empty: search by BSN or V-number is off"))
    else:
        try:
            key = Path(c.lookup_key_file).read_bytes().strip()
        except OSError as exc:
            out.append(Finding("error", "console", f"{c.lookup_key_file}: cannot read it ({exc.strerror})",
                               c.lookup_key_file))
        else:
            if len(key) < 32:
                out.append(Finding("error", "console", f"{c.lookup_key_file}: the lookup key must be at least 32 "
                                   "bytes", c.lookup_key_file))
    if c.client_ca_files and not cfg.tls.enabled:
        out.append(Finding("warning", "console", "console.client_ca_files is set but tls.enabled is false: no "
                           "certificate sign-in"))
    for file in c.client_ca_files:
        try:
            ssl.create_default_context(cafile=file)
        except (OSError, ssl.SSLError) as exc:
            out.append(Finding("error", "console", f"{file}: not a CA certificate file ({exc})", file))
    return out


def startup_check(cfg: Config, now: dt.datetime | None = None) -> list[Finding]:
    """Raise ``ConfigError`` naming the file of the first error; return the warnings."""
    findings = startup_findings(cfg, now)
    errors = [f for f in findings if f.level == "error"]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more error(s): run `gateway check-config`)" if len(errors) > 1 else ""
        raise ConfigError(f"{first.what}: {_without_file(first)}{more}", file=first.file)
    return [f for f in findings if f.level == "warning"]


def _without_file(f: Finding) -> str:
    prefix = f"{f.file}: "
    return f.message[len(prefix):] if f.file and f.message.startswith(prefix) else f.message


def _tls_findings(cfg: Config, now: dt.datetime | None) -> list[Finding]:
    if not cfg.tls.enabled:
        return [Finding("warning", "tls", "tls.enabled is false: no mutual TLS and no signatures (development only)")]
    return certificate_findings(cfg, now)


def _partner_findings(cfg: Config) -> list[Finding]:
    out = []
    for name in ("ind", "duo", "cjib"):
        if name not in cfg.partners:
            out.append(Finding("warning", f"partner {name}", "not configured: this route is off"))
        elif name != "ind" and not cfg.partner(name).url:
            out.append(Finding("error", f"partner {name}", "url is empty", cfg.source or None))
    return out


def _check_schemas(add: Any) -> None:
    from gateway.wire import xmlsafe

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
    from gateway.core.config import sqlite_file
    from gateway.core.store import SCHEMA_VERSION, Store

    db = sqlite_file(cfg.store.dsn)
    if db is not None and not db.exists():  # looking must not create it
        add("warning", "store", f"no database at {db} yet; run `gateway db upgrade`")
        return
    try:
        version = Store(cfg.store.dsn).version()
    except GatewayError as exc:
        add("error", "store", str(exc))
        return
    level = "ok" if version == SCHEMA_VERSION else ("warning" if version < SCHEMA_VERSION else "error")
    add(level, "store", f"{cfg.store.dsn.split('@')[-1]}: schema version {version}, gateway needs {SCHEMA_VERSION}"
        + (" (run `gateway db upgrade`)" if version < SCHEMA_VERSION else ""))
    if version:
        _check_data_keys(cfg, add)


def _check_data_keys(cfg: Config, add: Any) -> None:
    """[encryption]: the key file readable and private, and its keys open the store's records."""
    from gateway.core.store import Store
    from gateway.security import atrest

    e = cfg.encryption
    keyring = None
    if e.enabled:
        try:
            keyring = atrest.load_keyring(key_file=e.key_file, env_var=e.key_env, current=e.current_key_id)
        except ValueError as exc:
            add("error", "encryption", str(exc))
            return
    store = Store(cfg.store.dsn)
    try:
        store.use_keys(keyring, record=False)
    except GatewayError as exc:
        add("error", "encryption", str(exc))
        return
    finally:
        store.close()
    if keyring is None:
        add("warning", "encryption", "encryption at rest is off: payloads and personal fields are stored in "
            "clear (set [encryption] key_file; `gateway init` makes one)")
    else:
        add("ok", "encryption", f"data keys {', '.join(sorted(keyring.keys))}; new records sealed with "
            f"{keyring.current!r}")


def certificate_findings(cfg: Config, now: dt.datetime | None = None, *,
                         warning_days: int | None = None) -> list[Finding]:
    """Every key and certificate of the config, judged (see the module's rules); a certificate
    within ``warning_days`` (default ``tls.expiry_warning_days``) of its end is a warning."""
    from gateway.security import keys

    now = now or dt.datetime.now(dt.UTC)
    window = dt.timedelta(days=cfg.tls.expiry_warning_days if warning_days is None else warning_days)
    out: list[Finding] = []
    if not cfg.tls.cert_file or not cfg.tls.key_file:
        return [Finding("error", "gateway certificate", "tls is enabled but tls.cert_file or tls.key_file is empty",
                        cfg.source or None)]
    try:
        own = _keypair(cfg.tls.key_file, cfg.tls.cert_file)
        out.append(_expiry("gateway certificate", own.certificate, now, window, cfg.tls.cert_file))
        if cfg.tls.oin and keys.oin_of(own.certificate) != cfg.tls.oin:
            out.append(Finding("error", "gateway certificate", f"{cfg.tls.cert_file}: its subject serialNumber "
                               "is not tls.oin", cfg.tls.cert_file))
    except ConfigError as exc:
        out.append(_error("gateway certificate", exc, cfg.tls.cert_file))
    if cfg.tls.next_cert_file:
        out.append(_next_certificate(cfg, now, window))
    for name, pc in cfg.partners.items():
        out.extend(_partner_certificates(name, pc.trust_anchor_files, pc.certificate_files, now, window,
                                         cfg.source or None, oin=pc.oin or None))
    return out


#: Key pairs already judged, by the identity of their two files (see ``_keypair``).
_KEYPAIRS: dict[tuple[Any, ...], Any] = {}


def _keypair(key_file: str, cert_file: str) -> Any:
    """``keys.load_keypair``, again only when either file changed.

    Parsing a private key costs tens of milliseconds and the alerts job judges the certificates
    every minute, on every process: without this, that was most of an idle gateway's CPU. A
    replaced file (a key roll-over) has another inode, size or change time, and is read afresh;
    a file that cannot be read is never remembered, so its error shows every time.
    """
    from gateway.security import keys

    ident = (key_file, cert_file, _file_identity(key_file), _file_identity(cert_file))
    pair = _KEYPAIRS.get(ident)
    if pair is None:
        pair = keys.load_keypair(key_file, cert_file)
        if len(_KEYPAIRS) >= 8:  # the current and the next pair, and files replaced since: keep it small
            _KEYPAIRS.clear()
        _KEYPAIRS[ident] = pair
    return pair


def _file_identity(file: str) -> tuple[int, ...] | None:
    try:
        st = Path(file).stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _partner_certificates(name: str, anchor_files: list[str], certificate_files: list[str], now: dt.datetime,
                          window: dt.timedelta, source: str | None, oin: str | None = None) -> list[Finding]:
    from gateway.security import keys

    if not anchor_files or not certificate_files:
        return [Finding("error", f"partner {name}",
                        "trust_anchor_files and certificate_files are required with tls", source)]
    out: list[Finding] = []
    anchors: list[tuple[Any, str]] = []
    pins: list[tuple[Any, str]] = []
    for files, into in ((anchor_files, anchors), (certificate_files, pins)):
        for file in files:
            try:
                certs = keys.read_certificates(Path(file))
            except ConfigError as exc:
                out.append(_error(f"partner {name}", exc, file))
                continue
            if not certs:
                out.append(Finding("error", f"partner {name}", f"{file}: holds no certificate", file))
            into.extend((c, file) for c in certs)
    if not anchors or not pins:
        return out
    trust = keys.PartnerTrust(partner=name, anchors=tuple(c for c, _ in anchors),
                              certificates=tuple(c for c, _ in pins), anchor_files=tuple(anchor_files), oin=oin)
    usable: list[tuple[Any, str]] = []
    unusable: list[tuple[Any, str, str]] = []
    for cert, file in pins:
        try:
            trust.check(cert, now)
            usable.append((cert, file))
        except GatewayError as exc:
            unusable.append((cert, file, exc.message))
    for cert, file, why in unusable:
        what = f"partner {name} certificate {keys.kid(cert)[:12]}"
        if usable:
            out.append(Finding("warning", what, f"{file}: {why} ({_validity(cert)}); another pinned certificate "
                               "is valid, so it is not used (remove it when the rollover is over)", file))
        else:
            out.append(Finding("error", what, f"{file}: {why} ({_validity(cert)}); no pinned certificate of "
                               f"partner {name} is usable", file))
    for cert, file in usable:
        out.append(_expiry(f"partner {name} certificate {keys.kid(cert)[:12]}", cert, now, window, file))
    for cert, file in anchors:
        finding = _expiry(f"partner {name} trust anchor", cert, now, window, file)
        if finding.level == "error" and usable:
            finding = Finding("warning", finding.what, finding.message + " (a pinned certificate still chains "
                              "to a valid anchor)", file)
        out.append(finding)
    return out


def _next_certificate(cfg: Config, now: dt.datetime, window: dt.timedelta) -> Finding:
    """The key that takes over at ``tls.switch_at`` must be loadable and valid from that moment."""

    what, file, at = "gateway next certificate", cfg.tls.next_cert_file, cfg.tls.switch_at
    try:
        cert = _keypair(cfg.tls.next_key_file, file).certificate
    except ConfigError as exc:
        return _error(what, exc, file)
    assert at is not None  # the config allows next_* only with switch_at
    if not cert.not_valid_before_utc <= at < cert.not_valid_after_utc:
        return Finding("error", what, f"{file}: not valid at switch_at {at.isoformat()} ({_validity(cert)})", file)
    finding = _expiry(what, cert, max(now, at), window, file)
    if finding.level == "ok":
        return Finding("ok", what, f"takes over at {at.isoformat()}; {finding.message}", file)
    return finding


def _validity(cert: Any) -> str:
    return f"valid {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}"


def _error(what: str, exc: ConfigError, file: str) -> Finding:
    named = exc.file or file
    text = str(exc)
    return Finding("error", what, text if text.startswith(f"{named}:") else f"{named}: {text}", named)


def _expiry(what: str, cert: Any, now: dt.datetime, window: dt.timedelta, file: str) -> Finding:
    not_after = cert.not_valid_after_utc
    left = not_after - now
    if left.total_seconds() <= 0:
        return Finding("error", what, f"{file}: expired on {not_after:%Y-%m-%d}", file)
    if cert.not_valid_before_utc > now:
        return Finding("error", what, f"{file}: not valid before {cert.not_valid_before_utc:%Y-%m-%d}", file)
    if left <= window:
        return Finding("warning", what, f"{file}: expires on {not_after:%Y-%m-%d}, in {left.days} days", file)
    return Finding("ok", what, f"valid until {not_after:%Y-%m-%d} ({left.days} days)", file)
