"""Changing a running gateway without a stop: reload (SIGHUP, ``gateway reload``), the switch to
the next key at ``tls.switch_at``, and a rule set rolled out with ``gateway rules apply``.

``reload`` re-reads the config file and validates everything first (the same start-up checks as
``gateway run``: files, certificates, pins, the rule set); only when all of it is good does it
swap, in one step, the config (thresholds), our key pair, the partners' trust (pins, anchors) and
the rule set. Anything wrong keeps the running configuration, says why in the log
(``reload_refused``) and on health (the ``config`` check is degraded). Settings that shape the
process itself (instance, store, listeners, which partners there are, their URLs and retry
policies) take effect only at a restart: a reload that changes them is refused, saying which.

Messages in flight are untouched: a worker's attempt finishes with the keys it started with, the
next one uses the new ones; TLS contexts are re-keyed in place, so new connections present the new
certificate while open keep-alive connections finish. Nothing is lost or sent twice.

``watch`` (a job on every process, every second) switches to the next key once ``tls.switch_at``
has passed and picks up a rule set made active in the store, so a roll-out reaches every process
within seconds.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from gateway.core import config as config_mod
from gateway.core.config import Config
from gateway.core.errors import ConfigError, GatewayError
from gateway.rules import engine as rules_mod
from gateway.runtime import Runtime, load_ruleset, load_security, next_keypair, switched

__all__ = ["Keyring", "reload", "watch", "restart_only_changes", "status_key"]


@dataclass
class Keyring:
    """What re-keying touches besides the runtime: TLS contexts (with the anchor files loaded into
    each) and the senders; the daemon registers them as it makes them."""

    #: (context, the partner anchor files loaded into it; None: anchors not ours to change, e.g.
    #: the operator listener's, which trusts only the operators' CA).
    contexts: list[tuple[ssl.SSLContext, list[str] | None]] = field(default_factory=list)
    senders: list[Any] = field(default_factory=list)
    upcoming: Any | None = None  # the next key pair, loaded once per (re)load
    lock: threading.Lock = field(default_factory=threading.Lock)

    def context(self, ctx: ssl.SSLContext | None, anchors: list[str] | None) -> ssl.SSLContext | None:
        if ctx is not None:
            self.contexts.append((ctx, None if anchors is None else list(anchors)))
        return ctx


#: The config sections a reload swaps in, and within them the keys that still need a restart. Any
#: other section (including one added later) takes effect only at a restart: a new setting is
#: never silently ignored by a reload that reports success.
RELOADABLE: dict[str, frozenset[str]] = {
    "tls": frozenset({"enabled", "max_session_seconds"}),
    "partners": frozenset({"url", "policy"}),  # per partner; which partners there are: restart
    "ind": frozenset(),
    "cjib": frozenset({"poll_interval_seconds"}),
    "health": frozenset(),
    "rules": frozenset(),
    "log": frozenset(),
    "operators": frozenset(),
    "alerts": frozenset({"evaluate_seconds"}),
    "retention": frozenset(),
}


def restart_only_changes(old: Config, new: Config) -> list[str]:
    """The settings that differ and take effect only at a restart."""
    changed: list[str] = []
    for name in type(old).model_fields:
        if name == "source":
            continue
        before, after = getattr(old, name), getattr(new, name)
        if before == after:
            continue
        if name not in RELOADABLE:
            changed.append(name)
        elif name == "partners":
            changed += _partner_changes(before, after)
        else:
            changed += [f"{name}.{key}" for key in sorted(RELOADABLE[name])
                        if getattr(before, key) != getattr(after, key)]
    return changed


def _partner_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    if set(old) != set(new):
        return ["partners (which partners there are)"]
    return [f"partners.{name}.{key}" for name in sorted(old) for key in sorted(RELOADABLE["partners"])
            if getattr(old[name], key) != getattr(new[name], key)]


def reload(rt: Runtime, ring: Keyring) -> dict[str, Any]:
    """Re-read ``rt.config.source``; swap in the new settings only when all of them are good."""
    from gateway.ops import checks

    with ring.lock:
        try:
            new = config_mod.load(rt.config.source)
            changed = restart_only_changes(rt.config, new)
            if changed:
                raise ConfigError(", ".join(changed) + " changed; these take effect only at a restart, so "
                                  "nothing was reloaded")
            warnings = checks.startup_check(new, rt.clock.now())
            own, trust = load_security(new, rt.clock.now())
            trust = _with_revocation(rt, new, trust)
            upcoming = next_keypair(new)
            ruleset = load_ruleset(new, rules_mod.active_name(rt.store))
        except (ConfigError, GatewayError, OSError) as exc:
            return _record(rt, ok=False, reason=str(exc))
        rt.config = new
        _rekey(rt, ring, own, trust)
        ring.upcoming = upcoming
        rt.ruleset = ruleset
        _history(rt)
        for w in warnings:
            rt.log.warning("config_warning", what=w.what, detail=w.message, file=w.file, stage="lifecycle")
        return _record(rt, ok=True, reason=None)


def _rekey(rt: Runtime, ring: Keyring, own: Any, trust: dict[str, Any]) -> None:
    rt.own, rt.trust = own, trust
    if own is not None:
        for ctx, anchors in ring.contexts:
            ctx.load_cert_chain(own.cert_file, own.key_file)
            if anchors is None:
                continue
            for anchor in sorted(_anchor_files(rt.config) - set(anchors)):
                ctx.load_verify_locations(cafile=anchor)
                anchors.append(anchor)
    for sender in ring.senders:
        rekey = getattr(sender, "rekey", None)
        if rekey is not None:
            rekey(own, trust.get(sender.partner))
    # Feed clients are made on first use with the keys of the moment: the next use makes a new one
    # (the old one is not closed here: a job may be using it this instant).
    for name in ("ind-feed", "cjib-feed"):
        rt.clients.pop(name, None)


def _with_revocation(rt: Runtime, new: Config, trust: dict[str, Any]) -> dict[str, Any]:
    """The new trusts ask the running revocation checker (the refresher keeps feeding it)."""
    if rt.revocation is None:
        return trust
    import dataclasses

    rt.revocation.retarget(trust.values(), {str(n): pc.revocation for n, pc in new.partners.items()})
    return {name: dataclasses.replace(t, revocation=rt.revocation) for name, t in trust.items()}


def _anchor_files(cfg: Config) -> set[str]:
    return {f for p in cfg.partners.values() for f in p.trust_anchor_files}


def watch(rt: Runtime, ring: Keyring, *, rules: bool = True) -> None:
    """Switch to the next key once its moment has come; follow the rule set active in the store
    (with ``rules``: the caller reads the store for it only now and then, or when announced)."""
    upcoming = ring.upcoming
    if (upcoming is not None and rt.own is not None and switched(rt.config, rt.clock.now())
            and rt.own.cert_der != upcoming.cert_der):
        with ring.lock:
            _rekey(rt, ring, upcoming, rt.trust)
        rt.log.info("key_switched", stage="lifecycle", certificate=upcoming.certificate.serial_number,
                    switch_at=rt.config.tls.switch_at.isoformat() if rt.config.tls.switch_at else None)
    if not rules:
        return
    name = rules_mod.active_name(rt.store) or rt.config.rules.active
    if name != rt.ruleset.name:
        try:
            ruleset = load_ruleset(rt.config, name)
        except (ConfigError, GatewayError) as exc:
            _note(rt, ok=False, reason=f"rule set {name!r} could not be loaded: {exc}")
            return
        old, rt.ruleset = rt.ruleset.version, ruleset
        _history(rt)
        rt.log.info("ruleset_changed", stage="lifecycle", old=old, new=ruleset.version)


def _history(rt: Runtime) -> None:
    """This process now assesses with ``rt.ruleset``: the rule-set history (exported with archives,
    followed by replay) says so, as at a start."""
    from gateway.rules import rollout

    try:
        rollout.note_started(rt.store, rt.ruleset, rt.config.instance)
    except GatewayError as exc:
        rt.log.warning("ruleset_history_failed", stage="lifecycle", code=exc.code)


def status_key(instance: str, pid: int | None = None, host: str | None = None) -> str:
    return f"reload:{instance}:{host or socket.gethostname()}:{pid or os.getpid()}"


def _record(rt: Runtime, *, ok: bool, reason: str | None) -> dict[str, Any]:
    status = _note(rt, ok=ok, reason=reason)
    if ok:
        rt.log.info("reloaded", stage="lifecycle", ruleset=rt.ruleset.version, config=rt.config.digest()[:12])
    else:
        rt.log.warning("reload_refused", stage="lifecycle", reason=reason)
    try:  # for `gateway reload`, which waits for each process's answer
        rt.store.set_kv(status_key(rt.config.instance), json.dumps(status))
    except GatewayError:
        pass  # the store is down: the log and health still say it
    return status


def _note(rt: Runtime, *, ok: bool, reason: str | None) -> dict[str, Any]:
    status = {"ok": ok, "reason": reason, "at": time.time(), "ruleset": rt.ruleset.version,
              "at_iso": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    rt.reload_status = status
    return status
