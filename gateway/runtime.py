"""Everything the gateway loads once at start-up, in one object handed to every part.

Keys and certificates are parsed here and nowhere else; the rule set is loaded and validated
here; the store's schema version is checked here. Nothing in the message path reads a file.
"""

from __future__ import annotations

import datetime as dt
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.core.clock import Clock, SystemClock
from gateway.core.config import Config
from gateway.core.errors import ConfigError
from gateway.core.observability import Metrics, get_logger
from gateway.core.store import Lease, Store
from gateway.rules import engine as rules_mod

__all__ = ["Doorbell", "Runtime", "build_runtime", "client_ssl", "load_data_keys", "load_security", "store_for", "next_keypair", "switched"]


#: How long idle workers wait, at most, before they look at the outbox by themselves (a row whose
#: ``next_attempt_at`` comes due is woken for exactly; this is the fallback for what no wake
#: announced: e.g. a process that died after accepting). On PostgreSQL other processes' work is
#: announced by LISTEN/NOTIFY, on SQLite only within the process (a CLI `gateway retry`
#: is found by this poll).
WAKE_FALLBACK_SECONDS = {"postgresql": 10.0, "sqlite": 2.0}
#: The same on a clock that tests move (``FixedClock``): the store's due times are that clock's,
#: so a worker cannot sleep until one comes due; it looks as often as it always did.
WAKE_FALLBACK_MOVED_CLOCK_SECONDS = 1.0


class Doorbell:
    """Wakes one partner's idle workers in this process: wake on work instead of polling.

    ``ring()``: one new delivery is queued (in this process, or announced by another one through
    PostgreSQL's NOTIFY); one waiting worker wakes per ring, not all of them, so one row costs one
    claim. ``schedule(delay)``: a row comes due then (a retry's ``next_attempt_at``, a lease's
    end); one worker wakes at that moment and looks. Without either, one worker looks every
    ``fallback_seconds``. ``set()`` wakes every waiter, for good (drain).

    Handing over: a waiter that gives its ``owner`` can be ``reserve``d by intake; the delivery
    is then leased to it in intake's own commit (no claim query) and ``hand``ed to it after that
    commit, or the reservation is given back (``unreserve``) when there is nothing to hand.
    """

    MAX_RINGS = 10_000

    def __init__(self, fallback_seconds: float, clock: Any = time.monotonic) -> None:
        self.fallback_seconds = fallback_seconds
        self._clock = clock
        self._cond = threading.Condition()
        self._rings = 0
        self._closed = False
        self._poll_at = clock()  # the first waiter looks at once: work may be queued from before
        self._idle: list[str] = []  # owners waiting that may be reserved, longest waiting first
        self._reserved: set[str] = set()
        self._handed: dict[str, Any] = {}

    def ring(self, n: int = 1) -> None:
        with self._cond:
            self._rings = min(self._rings + n, self.MAX_RINGS)
            # A reserved waiter does not answer rings: wake as many more as are reserved.
            self._cond.notify(n + len(self._reserved))

    def reserve(self) -> str | None:
        """An idle waiter's owner, kept waiting for ``hand`` or ``unreserve``; None if none waits."""
        with self._cond:
            if self._closed or not self._idle:
                return None
            owner = self._idle.pop(0)
            self._reserved.add(owner)
            return owner

    def hand(self, owner: str, delivery: Any) -> None:
        """Give the reserved waiter ``owner`` the delivery leased to it."""
        with self._cond:
            self._reserved.discard(owner)
            self._handed[owner] = delivery
            self._cond.notify_all()

    def unreserve(self, owner: str) -> None:
        with self._cond:
            self._reserved.discard(owner)
            self._cond.notify_all()

    def handed(self, owner: str) -> Any | None:
        """The delivery handed to ``owner`` (once), if any."""
        with self._cond:
            return self._handed.pop(owner, None)

    def take(self, n: int) -> None:
        """``n`` rings are answered already (one claim took that many rows)."""
        if n > 0:
            with self._cond:
                self._rings = max(0, self._rings - n)

    def schedule(self, delay: float) -> None:
        """Have one worker look in ``delay`` seconds (when that is sooner than planned)."""
        with self._cond:
            at = self._clock() + max(0.0, delay)
            if at < self._poll_at:
                self._poll_at = at
                self._cond.notify_all()  # the waiters recompute their timeouts

    def set(self) -> None:
        """Wake every waiter, now and from now on (drain: the workers stop)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait(self, owner: str | None = None) -> str:
        """Block until there is something to do: "handed" (a delivery for ``owner``: take it with
        ``handed``), "work" (a ring), "poll" (this waiter looks now, the others wait on) or "wake"
        (``set``). With ``owner`` the waiter may be reserved meanwhile."""
        with self._cond:
            try:
                while True:
                    if owner is not None and owner in self._handed:
                        return "handed"
                    if owner in self._reserved:
                        self._cond.wait(1.0)  # intake's commit is under way; hand or unreserve follows
                        continue
                    if self._closed:
                        return "wake"
                    if self._rings > 0:
                        self._rings -= 1
                        return "work"
                    now = self._clock()
                    if now >= self._poll_at:
                        self._poll_at = now + self.fallback_seconds
                        return "poll"
                    if owner is not None and owner not in self._idle:
                        self._idle.append(owner)
                    self._cond.wait(self._poll_at - now)
            finally:
                if owner in self._idle:
                    self._idle.remove(owner)

    def is_set(self) -> bool:
        """Rings waiting to be answered (compatibility with the Event this replaces)."""
        with self._cond:
            return self._rings > 0


@dataclass
class Runtime:
    config: Config
    store: Store
    clock: Clock
    ruleset: Any  # gateway.rules.engine.RuleSet
    own: Any | None  # gateway.security.keys.KeyPair; None when signing is off
    trust: dict[str, Any]  # partner -> gateway.security.keys.PartnerTrust
    metrics: Metrics
    wake: dict[str, Doorbell] = field(default_factory=dict)
    log: Any = None
    #: Long-lived partner clients made on first use (feed readers); closed when the daemon stops.
    clients: dict[str, Any] = field(default_factory=dict)
    #: The outcome of the last reload in this process (gateway/reload.py), shown on health.
    reload_status: dict[str, Any] = field(default_factory=dict)
    #: gateway.security.revocation.Revocation, shared by every partner's trust; None when off.
    revocation: Any | None = None

    def close_clients(self) -> None:
        for client in self.clients.values():
            client.close()
        self.clients.clear()

    @property
    def secure(self) -> bool:
        return self.own is not None

    def notify(self, partner: str) -> None:
        """Wake one of the partner's idle workers: new work is queued."""
        bell = self.wake.get(partner)
        if bell is not None:
            bell.ring()

    def reserve(self, partner: str) -> Lease | None:
        """A lease for one of the partner's idle workers of this process, if one waits: intake
        stores its delivery leased to it (``Store.accept(lease=...)``) and then ``hand``s it over."""
        bell = self.wake.get(partner)
        owner = bell.reserve() if bell is not None else None
        if owner is None:
            return None
        return Lease(partner, owner, self.config.partner(partner).policy.lease_seconds)

    def hand(self, lease: Lease, delivery: Any | None) -> None:
        """After intake's commit: give the worker its delivery (None: nothing was leased to it)."""
        bell = self.wake[lease.partner]
        if delivery is None:
            bell.unreserve(lease.owner)
        else:
            bell.hand(lease.owner, delivery)

    def partner_trust(self, partner: str) -> Any | None:
        return self.trust.get(partner)


def build_runtime(config: Config, *, clock: Clock | None = None, store: Store | None = None,
                  migrate: bool = False) -> Runtime:
    """Load keys, trust, rule set and store once; raise ConfigError on anything wrong."""
    clock = clock or SystemClock()
    own, trust = load_security(config, clock.now())
    store = store or Store(config.store.dsn)
    if migrate:
        store.migrate()
    store.check_version()
    store.lookup_key = load_lookup_key(config)
    store.use_keys(load_data_keys(config))  # StoreKeyMismatch: the configured keys do not open the store
    # A rule set rolled out with `gateway rules apply` is recorded in the store and wins over config.
    ruleset = load_ruleset(config, rules_mod.active_name(store))
    rt = Runtime(config=config, store=store, clock=clock, ruleset=ruleset, own=own,
                 trust=trust, metrics=Metrics(), log=get_logger("gateway"))
    if trust and config.revocation.enabled:
        _with_revocation(rt)
    fallback = (WAKE_FALLBACK_SECONDS[store.dialect] if isinstance(clock, SystemClock)
                else WAKE_FALLBACK_MOVED_CLOCK_SECONDS)
    for partner in ("duo", "cjib", "ind"):
        rt.wake[partner] = Doorbell(fallback)
    return rt


def _with_revocation(rt: Runtime) -> None:
    """One Revocation for every partner's trust (each PartnerTrust asks it in ``check``)."""
    import dataclasses

    from gateway.security.revocation import Revocation

    def soft_fail(partner: str, kid: str, reason: str) -> None:
        rt.metrics.revocation_soft_fail.labels(partner).inc()
        rt.log.warning("revocation_soft_fail", partner=partner, kid=kid, reason=reason, stage="security")

    policies: dict[str, str] = {str(name): pc.revocation for name, pc in rt.config.partners.items()}
    rt.revocation = Revocation(rt.trust.values(), policies=policies,
                               grace_seconds=rt.config.revocation.grace_seconds, on_soft_fail=soft_fail)
    rt.trust = {name: dataclasses.replace(t, revocation=rt.revocation) for name, t in rt.trust.items()}


def load_lookup_key(config: Config) -> bytes | None:
    """The console's keyed-hash secret, or None when BSN search is off."""
    path = config.console.lookup_key_file
    if not path:
        return None
    try:
        key = Path(path).read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"console.lookup_key_file: cannot read it: {exc.strerror}", file=path) from exc
    if len(key) < 32:
        raise ConfigError("console.lookup_key_file: the key must be at least 32 bytes", file=path)
    return key


def store_for(config: Config) -> Store:
    """The config's store with its data keys in use (for tools and tests; the daemon has its runtime)."""
    store = Store(config.store.dsn)
    store.use_keys(load_data_keys(config))
    return store


def load_data_keys(config: Config) -> Any:
    """The data keys of ``[encryption]`` (a gateway.security.atrest.Keyring), or None when off."""
    from gateway.security import atrest

    e = config.encryption
    if not e.enabled:
        return None
    try:
        return atrest.load_keyring(key_file=e.key_file, env_var=e.key_env, current=e.current_key_id)
    except ValueError as exc:
        raise ConfigError(f"encryption: {exc}", file=e.key_file or None) from None


def ruleset_path(config: Config, name: str | None = None) -> Path:
    """Where the rule set ``name`` (default: the active one) lives in the rules directory."""
    return Path(config.rules.directory) / f"{name or config.rules.active}.yaml"


def load_ruleset(config: Config, name: str | None = None) -> Any:
    name = name or config.rules.active
    path = ruleset_path(config, name)
    if not path.exists():
        raise ConfigError(f"the active rule set {name!r} is not in {Path(config.rules.directory)}", file=str(path))
    return rules_mod.load(path)


def load_security(config: Config, now: dt.datetime | None = None) -> tuple[Any | None, dict[str, Any]]:
    """Our key pair (the next one once ``tls.switch_at`` has passed) and each partner's trust."""
    if not config.tls.enabled:
        return None, {}
    from gateway.security import keys

    if not config.tls.cert_file or not config.tls.key_file:
        raise ConfigError("tls is enabled but tls.cert_file or tls.key_file is empty", file=config.source or None)
    own = keys.load_keypair(config.tls.key_file, config.tls.cert_file)
    if config.tls.oin and keys.oin_of(own.certificate) != config.tls.oin:
        raise ConfigError("our certificate's subject serialNumber is not tls.oin", file=config.tls.cert_file)
    upcoming = next_keypair(config)
    if upcoming is not None and switched(config, now or dt.datetime.now(dt.UTC)):
        own = upcoming
    trust: dict[str, Any] = {}
    for name, pc in config.partners.items():
        if not pc.trust_anchor_files or not pc.certificate_files:
            raise ConfigError(f"partner {name}: trust_anchor_files and certificate_files are required with tls",
                              file=config.source or None)
        trust[name] = keys.load_trust(name, pc.trust_anchor_files, pc.certificate_files, oin=pc.oin)
    return own, trust


def next_keypair(config: Config) -> Any | None:
    """The key pair that takes over at ``tls.switch_at`` (``gateway pki rotate``), if one is set."""
    if not config.tls.enabled or not config.tls.next_cert_file:
        return None
    from gateway.security import keys

    upcoming = keys.load_keypair(config.tls.next_key_file, config.tls.next_cert_file)
    if config.tls.oin and keys.oin_of(upcoming.certificate) != config.tls.oin:
        raise ConfigError("the next certificate's subject serialNumber is not tls.oin", file=config.tls.next_cert_file)
    return upcoming


def switched(config: Config, now: dt.datetime) -> bool:
    return config.tls.switch_at is not None and now >= config.tls.switch_at


def client_ssl(rt: Runtime, partner: str) -> ssl.SSLContext | None:
    """The mutual-TLS context for calling ``partner``; None when security is off."""
    if not rt.secure:
        return None
    from gateway.security import tls

    assert rt.own is not None
    return tls.client_context(rt.own, rt.config.partner(partner).trust_anchor_files)
