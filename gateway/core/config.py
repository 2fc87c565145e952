"""The gateway's configuration: one TOML file, validated once at start-up.

Unknown keys are refused; option names carry their unit (``*_seconds``, ``*_bytes``,
``*_days``). Environment variables override single values: ``GATEWAY__STORE__DSN=...`` sets
``[store] dsn``; ``GATEWAY__PARTNERS__DUO__POLICY__MAX_ATTEMPTS=5`` a nested one. Relative paths
are resolved against the config file's folder. Secrets (key files) are paths, never printed.
"""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.core.errors import ConfigError

__all__ = ["Config", "PartnerConfig", "RetryPolicy", "RevocationConfig", "load", "ENV_PREFIX", "shipped_rules_directory", "sqlite_file"]

ENV_PREFIX = "GATEWAY__"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryPolicy(_Strict):
    """How the core retries deliveries to one partner."""

    timeout_seconds: float = Field(10.0, gt=0)
    max_attempts: int = Field(12, ge=1)
    #: A delivery older than this goes to the dead letters even with attempts left.
    max_age_seconds: float = Field(7 * 24 * 3600, gt=0)
    backoff_initial_seconds: float = Field(1.0, gt=0)
    backoff_max_seconds: float = Field(3600.0, gt=0)
    #: Deliveries in flight to this partner at once.
    concurrency: int = Field(4, ge=1, le=256)
    #: Consecutive transient failures that open the circuit breaker.
    breaker_failures: int = Field(5, ge=1)
    #: How long an open breaker waits before one probe.
    breaker_open_seconds: float = Field(30.0, gt=0)
    lease_seconds: float = Field(60.0, gt=0)


class PartnerConfig(_Strict):
    """One chain partner: where it is, whom to trust, how to retry."""

    #: Base URL of the partner's endpoint (DUO, CJIB) or feed (IND).
    url: str = ""
    #: Trust anchors (CA certificates) for this partner's TLS and signing certificates.
    trust_anchor_files: list[str] = []
    #: The partner's pinned certificates; several at once during a rollover.
    certificate_files: list[str] = []
    #: The partner's OIN (20 digits): its TLS and signing certificates must carry it in subject
    #: serialNumber, and an address's ?OIN= must name it. "" = not checked.
    oin: str = Field("", pattern=r"^(\d{20})?$")
    #: Revocation policy: "hard-fail" refuses a certificate whose status is unknown past its
    #: CRL's nextUpdate plus revocation.grace_seconds; "soft-fail" accepts it and says so.
    revocation: Literal["hard-fail", "soft-fail"] = "hard-fail"
    policy: RetryPolicy = RetryPolicy()


class TlsConfig(_Strict):
    """The gateway's own identity: TLS server/client certificate and signing key."""

    enabled: bool = True
    cert_file: str = ""
    key_file: str = ""
    #: Warn in `gateway check-config` when a certificate expires within this many days.
    expiry_warning_days: int = Field(30, ge=0)
    #: Our own OIN (20 digits): our certificate must carry it; IND's wsa:To ?OIN= must name it.
    oin: str = Field("", pattern=r"^(\d{20})?$")
    #: The longest a TLS connection is used (Digikoppeling WT008), on our listener and our calls to
    #: DUO and CJIB; after it, a new connection (new handshake, fresh certificate check).
    max_session_seconds: float = Field(3600.0, gt=0)
    #: The next key and certificate (`gateway pki rotate`): they take over signing and TLS at
    #: ``switch_at`` (an ISO 8601 date-time with its zone), in every running process, without a stop.
    next_cert_file: str = ""
    next_key_file: str = ""
    switch_at: dt.datetime | None = None

    @field_validator("switch_at")
    @classmethod
    def _zoned(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("switch_at needs a time zone (e.g. 2027-03-01T09:00:00+01:00)")
        return value

    @model_validator(mode="after")
    def _next_complete(self) -> TlsConfig:
        given = [bool(self.next_cert_file), bool(self.next_key_file), self.switch_at is not None]
        if any(given) and not all(given):
            raise ValueError("next_cert_file, next_key_file and switch_at go together: set all three or none")
        return self


class RevocationConfig(_Strict):
    """Revocation checks of every certificate the gateway accepts (CRL, OCSP)."""

    enabled: bool = True
    #: A CRL is fetched again at its nextUpdate, and at the latest after this long.
    refresh_seconds: float = Field(3600.0, gt=0)
    #: How long past nextUpdate a CRL (or OCSP answer) still counts; after that the status is unknown.
    grace_seconds: float = Field(3600.0, ge=0)
    #: How often to ask the OCSP responder a certificate names (0: never).
    ocsp_interval_seconds: float = Field(300.0, ge=0)
    #: A failed fetch is tried again after this long.
    retry_seconds: float = Field(60.0, gt=0)
    timeout_seconds: float = Field(10.0, gt=0)


class ListenConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8443, ge=0, le=65535)
    #: Plain-HTTP listener for /metrics and /health (loopback by default).
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9108, ge=0, le=65535)
    #: Public URL of the IND endpoint, as IND puts it in wsa:To.
    public_url: str = ""


class IndRouteConfig(_Strict):
    leveringstermijn_dagen: int = Field(7, ge=0)
    #: A missing volgnummer older than this triggers HaalMeldingen.
    gap_grace_seconds: float = Field(300.0, ge=0)
    #: How often to ask IND for laatsteVolgnummer and catch up.
    reconcile_interval_seconds: float = Field(900.0, gt=0)
    first_volgnummer: int = Field(1, ge=1)
    max_message_bytes: int = Field(1024 * 1024, ge=1024)
    #: Allowed difference between IND's clock and ours for the WS-Security Timestamp.
    clock_skew_seconds: int = Field(300, ge=0)


class CjibRouteConfig(_Strict):
    poll_interval_seconds: float = Field(60.0, gt=0)
    feed_page_size: int = Field(100, ge=1, le=500)
    #: Claims accepted from DUO but not accepted by CJIB within this time turn health failing.
    stall_seconds: float = Field(4 * 3600, gt=0)
    #: The status feed not read successfully for this long turns health failing.
    feed_stale_seconds: float = Field(3600.0, gt=0)
    max_message_bytes: int = Field(1024 * 1024, ge=1024)


class HealthConfig(_Strict):
    #: A route with an undelivered message older than this is failing.
    max_undelivered_age_seconds: float = Field(4 * 3600, gt=0)
    #: A route with waiting work and no success for this long is failing.
    max_silence_seconds: float = Field(3600.0, gt=0)
    #: Undelivered age at which a route is degraded (not yet failing).
    degraded_age_seconds: float = Field(900.0, gt=0)
    #: Failing when no `gateway run` process has written its heartbeat for this long (each
    #: process writes one every max(0.2, min(5, this / 4)) seconds).
    max_heartbeat_age_seconds: float = Field(60.0, gt=0)


def shipped_rules_directory() -> str:
    """The rule sets shipped with the gateway (package data ``gateway/rulesets``; in a checkout a
    link to ``config/rules``), as an absolute path."""
    from importlib.resources import files

    return str(Path(str(files("gateway").joinpath("rulesets"))).resolve())


class RulesConfig(_Strict):
    #: Where the rule sets are: the ones shipped with the gateway unless set ("" means those too);
    #: a relative path is relative to the config file.
    directory: str = Field(default_factory=shipped_rules_directory)
    active: str = "inburgeringsplicht-2026.1"

    @field_validator("directory")
    @classmethod
    def _shipped_when_empty(cls, value: str) -> str:
        return value or shipped_rules_directory()


class StoreConfig(_Strict):
    dsn: str = "sqlite:///var/gateway.db"


def sqlite_file(dsn: str) -> Path | None:
    """The database file of a ``sqlite:///FILE`` DSN; None for PostgreSQL and ``:memory:``."""
    if not dsn.startswith("sqlite:///") or dsn == "sqlite:///:memory:":
        return None
    return Path(dsn[len("sqlite:///"):])


class LogConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    #: Write JSON log lines to this file as well as to standard error ("" for none).
    file: str = ""


class OperatorsConfig(_Strict):
    #: Operators (OS user names) allowed to see personal data unmasked in `gateway log/show`.
    personal_data: list[str] = []


class SmtpChannel(_Strict):
    """E-mail over SMTP; STARTTLS unless switched off (only for a relay on loopback)."""

    host: str
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    #: CA certificate(s) to verify the SMTP server with ("" = the system's CAs).
    ca_file: str = ""
    username: str = ""
    #: A file holding the SMTP password (never the password itself in the config).
    password_file: str = ""
    sender: str
    to: list[str] = Field(min_length=1)
    timeout_seconds: float = Field(10.0, gt=0)


class WebhookChannel(_Strict):
    """A URL that receives each alert as JSON, in Alertmanager's webhook shape."""

    url: str = Field(pattern=r"^https?://")
    #: CA certificate(s) for an https URL ("" = the system's CAs).
    ca_file: str = ""
    timeout_seconds: float = Field(10.0, gt=0)


class AlertsConfig(_Strict):
    #: How often one gateway process (on a job lease) evaluates the conditions.
    evaluate_seconds: float = Field(60.0, gt=0)
    #: A condition must hold this long (wall-clock) before it is sent: a blip is not an alert.
    confirm_seconds: float = Field(120.0, ge=0)
    #: An alert still open is sent again after this long.
    repeat_seconds: float = Field(4 * 3600.0, gt=0)
    #: A certificate (the gateway's own or a partner's) within this many days of its end raises an alert.
    certificate_days: int = Field(30, ge=0)
    #: IND notifications stored more than this many days past their delivery window raise an alert
    #: while any arrived within ``late_window_seconds``.
    late_days: int = Field(0, ge=0)
    late_window_seconds: float = Field(24 * 3600.0, gt=0)
    #: A notification that could not be sent is tried again after this long (doubling, at most an hour).
    send_retry_seconds: float = Field(30.0, gt=0)
    smtp: SmtpChannel | None = None
    webhook: WebhookChannel | None = None

    @field_validator("smtp", "webhook", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == {} else value


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "y": 365 * 86400}


def duration_seconds(text: str) -> float:
    """"400d", "12h", "30m", "90s", "7y" -> seconds."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdy])\s*", text)
    if not m or float(m[1]) <= 0:
        raise ValueError(f"not a duration: {text!r} (a number with s, m, h, d or y, e.g. \"400d\")")
    return float(m[1]) * _UNITS[m[2]]


class RetentionConfig(_Strict):
    """How long personal data is kept, per kind ("" keeps it; e.g. notifications = "400d").

    Measured from the message's last change (its delivery, resolution or refusal); a message not
    yet delivered, a dead letter, or one under an operator's hold is never purged."""

    #: IND -> DUO notifications: payloads and personal fields.
    notifications: str = ""
    #: DUO -> CJIB claims and CJIB -> DUO statuses: payloads and personal fields.
    claims: str = ""
    #: Refused inbound messages (they never became a message): their raw bytes.
    refused: str = ""
    #: Delivery log rows (inbound entries, attempts, events) of messages already purged.
    delivery_log: str = ""
    #: Audit log entries.
    audit: str = ""
    #: How often the purge job runs (one process at a time).
    interval_seconds: float = Field(86400.0, gt=0)

    @field_validator("notifications", "claims", "refused", "delivery_log", "audit")
    @classmethod
    def _duration(cls, value: str) -> str:
        if value:
            duration_seconds(value)
        return value

    def terms(self) -> dict[str, float | None]:
        return {k: (duration_seconds(v) if v else None) for k, v in (
            ("notifications", self.notifications), ("claims", self.claims), ("refused", self.refused),
            ("delivery_log", self.delivery_log), ("audit", self.audit))}


class ConsoleConfig(_Strict):
    """The operator console on the operator listener (docs/console.md)."""

    #: Serve the console and its JSON API (/console, /api/v1) beside /health and /metrics.
    enabled: bool = True
    #: A session ends this long after sign-in, whatever happens.
    session_seconds: float = Field(8 * 3600, gt=0)
    #: ... and this long after its last request.
    idle_seconds: float = Field(1800, gt=0)
    #: Failed sign-ins in a row that lock an operator out, and for how long.
    max_failed_signins: int = Field(5, ge=1)
    lockout_seconds: float = Field(900, gt=0)
    #: Secret key (at least 32 bytes) for the keyed hash that finds messages by BSN or V-number;
    #: "" turns that search off. `gateway sandbox` generates one.
    lookup_key_file: str = ""
    #: Send the session cookie only over HTTPS (set when a TLS proxy fronts the listener).
    secure_cookie: bool = False
    #: The operators' CA certificates. With them (and [tls] enabled) the operator listener runs
    #: TLS with the gateway's certificate and asks for a client certificate (optional): an
    #: operator whose certificate chains to one of these may sign in with it; its subject CN is
    #: the operator's name (`gateway operator add NAME`). /health and /metrics are then HTTPS too.
    client_ca_files: list[str] = []


class EncryptionConfig(_Strict):
    """Encryption at rest (docs/operations.md, "Encryption at rest"): every stored payload and
    personal field is sealed with AES-256-GCM under its own data key, wrapped by one of these
    key-encryption keys, which live outside the database. Neither set: records are stored in clear
    (`gateway check-config` warns). `gateway init` and the sandbox make a key file."""

    #: A file of ``ID:KEY`` lines (KEY: base64 of 32 bytes); mode 0600 or stricter, else the
    #: gateway refuses to start. `gateway keys new-key` prints a line to add.
    key_file: str = ""
    #: The name of an environment variable holding ``ID:KEY`` entries (comma-separated), instead
    #: of or beside the file.
    key_env: str = ""
    #: The key new records are sealed with; "" is the last key listed.
    current_key_id: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.key_file or self.key_env)


class Config(_Strict):
    instance: str = "gateway-1"
    store: StoreConfig = StoreConfig()
    listen: ListenConfig = ListenConfig()
    tls: TlsConfig = TlsConfig()
    partners: dict[Literal["ind", "duo", "cjib"], PartnerConfig] = {}
    ind: IndRouteConfig = IndRouteConfig()
    cjib: CjibRouteConfig = CjibRouteConfig()
    health: HealthConfig = HealthConfig()
    revocation: RevocationConfig = RevocationConfig()
    rules: RulesConfig = RulesConfig()
    log: LogConfig = LogConfig()
    operators: OperatorsConfig = OperatorsConfig()
    alerts: AlertsConfig = AlertsConfig()
    retention: RetentionConfig = RetentionConfig()
    console: ConsoleConfig = ConsoleConfig()
    encryption: EncryptionConfig = EncryptionConfig()
    #: Where the config was read from (set by ``load``).
    source: str = ""

    def partner(self, name: str) -> PartnerConfig:
        return self.partners.get(name, PartnerConfig())  # type: ignore[call-overload]

    def digest(self) -> str:
        """A digest of the effective configuration (for archives and log lines)."""
        import hashlib

        return hashlib.sha256(self.model_dump_json(exclude={"source"}).encode()).hexdigest()


def load(path: str | Path | None, *, env: dict[str, str] | None = None) -> Config:
    """Read, override from the environment, resolve paths and validate; or raise ConfigError."""
    env = dict(os.environ if env is None else env)
    data: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text())
        except FileNotFoundError as exc:
            raise ConfigError("config file not found", file=str(p)) from exc
        except IsADirectoryError as exc:
            raise ConfigError("a directory, not a config file", file=str(p)) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read it: {getattr(exc, 'strerror', None) or exc}", file=str(p)) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", file=str(p)) from exc
        base = p.resolve().parent
    _apply_env(data, env)
    try:
        cfg = Config.model_validate({**data, "source": str(path or "")})
    except ValidationError as exc:
        raise ConfigError(_describe(exc), file=str(path) if path else None) from None
    return _resolve_paths(cfg, base)


def _apply_env(data: dict[str, Any], env: dict[str, str]) -> None:
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in key[len(ENV_PREFIX):].split("__") if p]
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _env_value(value)


def _env_value(value: str) -> Any:
    if value.startswith("[") or value in ("true", "false"):
        try:
            return tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            return value
    return value


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key {where!r}")
        else:
            lines.append(f"{where}: {err['msg']}")
    return "; ".join(lines)


def _resolve_paths(cfg: Config, base: Path) -> Config:
    def r(p: str) -> str:
        return p if not p or Path(p).is_absolute() else str((base / p).resolve())

    tls = cfg.tls.model_copy(update={"cert_file": r(cfg.tls.cert_file), "key_file": r(cfg.tls.key_file),
                                     "next_cert_file": r(cfg.tls.next_cert_file),
                                     "next_key_file": r(cfg.tls.next_key_file)})
    partners = {
        name: pc.model_copy(update={
            "trust_anchor_files": [r(f) for f in pc.trust_anchor_files],
            "certificate_files": [r(f) for f in pc.certificate_files],
        })
        for name, pc in cfg.partners.items()
    }
    dsn = cfg.store.dsn
    if dsn.startswith("sqlite:///") and not dsn.startswith("sqlite:////") and dsn != "sqlite:///:memory:":
        dsn = "sqlite:///" + r(dsn[len("sqlite:///"):])
    rules = cfg.rules.model_copy(update={"directory": r(cfg.rules.directory)})
    log = cfg.log.model_copy(update={"file": r(cfg.log.file)})
    alerts = cfg.alerts
    if alerts.smtp is not None:
        alerts = alerts.model_copy(update={"smtp": alerts.smtp.model_copy(update={
            "ca_file": r(alerts.smtp.ca_file), "password_file": r(alerts.smtp.password_file)})})
    if alerts.webhook is not None:
        alerts = alerts.model_copy(update={"webhook": alerts.webhook.model_copy(update={
            "ca_file": r(alerts.webhook.ca_file)})})

    console = cfg.console.model_copy(update={"lookup_key_file": r(cfg.console.lookup_key_file),
                                             "client_ca_files": [r(f) for f in cfg.console.client_ca_files]})
    encryption = cfg.encryption.model_copy(update={"key_file": r(cfg.encryption.key_file)})
    return cfg.model_copy(update={"tls": tls, "partners": partners, "store": StoreConfig(dsn=dsn),
                                  "rules": rules, "log": log, "alerts": alerts, "console": console,
                                  "encryption": encryption})
