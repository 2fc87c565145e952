"""Who may use the console: operators, their roles, passwords, sessions and CSRF tokens.

Passwords are kept as argon2id hashes (argon2-cffi's defaults, RFC 9106's second recommended
profile); a session is a random token of which only the SHA-256 is stored, so a copy of the
database does not sign anyone in. A session ends ``session_seconds`` after sign-in or
``idle_seconds`` after its last request, whichever comes first. After ``max_failed_signins``
failures in a row an operator is locked out for ``lockout_seconds`` (also for the right
password). Every sign-in and every refused one is written to the audit log.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.core import audit
from gateway.core.config import ConsoleConfig

__all__ = ["ROLES", "Session", "SignInRefused", "add_operator", "operators", "sign_in", "sign_in_certificate",
           "certificate_name", "session", "sign_out", "csrf_ok", "may"]

#: Each role and what it adds; an operator may hold several.
ROLES = {
    "viewer": "read everything, personal data masked",
    "operator": "viewer + retry, resolve, bulk actions and rule-set roll-out",
    "personal-data": "viewer + unmask one message at a time (with a stated reason) and download raw bytes",
}
_GRANTS = {"read": set(ROLES), "act": {"operator"}, "unmask": {"personal-data"}}
_hasher = PasswordHasher()
# Verified against when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY = _hasher.hash("no operator has this password")
MIN_PASSWORD = 12


class SignInRefused(Exception):
    """A sign-in that did not succeed; the message is what the operator is told."""


@dataclass(frozen=True)
class Session:
    operator: str
    roles: tuple[str, ...]
    csrf: str
    token: str = ""  # only right after sign-in (the store keeps its hash)
    expires_at: float = 0.0


def may(s: Session, what: str) -> bool:
    """``read``, ``act`` or ``unmask``."""
    return bool(_GRANTS[what] & set(s.roles))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_operator(store: Any, name: str, roles: list[str], password: str | None) -> None:
    """A new operator; raises ValueError (a sentence) for a taken name, a bad role or a weak password.

    Without a password (None) the operator can only sign in with a client certificate.
    """
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise ValueError(f"unknown role {unknown[0]!r}" if unknown else "give at least one --role")
    if password is not None and len(password) < MIN_PASSWORD:
        raise ValueError(f"the password must have at least {MIN_PASSWORD} characters")
    with store.tx() as t:
        if t.one("SELECT 1 FROM operators WHERE name = :n", {"n": name}):
            raise ValueError(f"operator {name!r} exists already")
        t.execute("INSERT INTO operators (name, role, password_hash, created_at) VALUES (:n, :r, :h, :at)",
                  {"n": name, "r": ",".join(sorted(set(roles))), "at": time.time(),
                   # "!" is no argon2 hash: no password verifies against it.
                   "h": _hasher.hash(password) if password is not None else "!"})


def operators(store: Any) -> list[dict[str, Any]]:
    rows = store.query("SELECT name, role, failed_signins, locked_until, created_at FROM operators ORDER BY name")
    now = time.time()
    return [{"name": r[0], "roles": r[1].split(","), "failed_signins": int(r[2]),
             "locked": r[3] is not None and float(r[3]) > now, "created_at": float(r[4])} for r in rows]


def sign_in(store: Any, cfg: ConsoleConfig, name: str, password: str, *, channel: str = "console") -> Session:
    """A new session, or SignInRefused; either way the attempt is in the audit log."""
    now = time.time()
    row = store.query("SELECT role, password_hash, failed_signins, locked_until FROM operators WHERE name = :n",
                      {"n": name})
    if row and row[0][3] is not None and float(row[0][3]) > now:
        audit.record(store, actor=name, action="sign-in-failed", reason="locked out", channel=channel,
                     outcome="refused")
        raise SignInRefused("this operator is locked out after repeated failed sign-ins; try again later")
    if not row or not _verify(row[0][1], password):
        _failed(store, cfg, name, bool(row), channel)
        raise SignInRefused("unknown operator or wrong password")
    return _new_session(store, cfg, name, row[0][0], channel, "password")


def _new_session(store: Any, cfg: ConsoleConfig, name: str, roles: str, channel: str, how: str) -> Session:
    now = time.time()
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    expires = now + cfg.session_seconds
    with store.tx() as t:
        t.execute("UPDATE operators SET failed_signins = 0, locked_until = NULL WHERE name = :n", {"n": name})
        t.execute("INSERT INTO console_sessions (token_hash, operator, role, csrf, created_at, last_seen, expires_at) "
                  "VALUES (:h, :o, :r, :c, :at, :at, :exp)",
                  {"h": _token_hash(token), "o": name, "r": roles, "c": csrf, "at": now, "exp": expires})
        t.execute("DELETE FROM console_sessions WHERE expires_at < :at", {"at": now})
    audit.record(store, actor=name, action="sign-in", reason=how, channel=channel)
    return Session(name, tuple(roles.split(",")), csrf, token, expires)


def certificate_name(der: bytes | None) -> str | None:
    """The subject CN of a (verified) client certificate: the operator it names."""
    if not der:
        return None
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        names = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        return None
    return str(names[0].value) if names else None


def sign_in_certificate(store: Any, cfg: ConsoleConfig, der: bytes | None, *, channel: str = "console") -> Session:
    """A session for the operator named by a client certificate that the TLS layer verified
    against ``console.client_ca_files``; SignInRefused otherwise. Audited like a password sign-in."""
    name = certificate_name(der)
    if name is None:
        audit.record(store, actor="-", action="sign-in-failed", reason="no client certificate", channel=channel,
                     outcome="refused")
        raise SignInRefused("no client certificate of the operators' CA was presented")
    row = store.query("SELECT role, locked_until FROM operators WHERE name = :n", {"n": name})
    if not row or (row[0][1] is not None and float(row[0][1]) > time.time()):
        reason = "locked out" if row else "certificate of an unknown operator"
        audit.record(store, actor=name, action="sign-in-failed", reason=reason, channel=channel, outcome="refused")
        raise SignInRefused(f"the certificate of {name!r} does not sign anyone in ({reason})")
    return _new_session(store, cfg, name, row[0][0], channel, "client certificate")


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _failed(store: Any, cfg: ConsoleConfig, name: str, known: bool, channel: str) -> None:
    if not known:
        _verify(_DUMMY, "x")
    else:
        with store.tx() as t:
            t.execute("UPDATE operators SET failed_signins = failed_signins + 1 WHERE name = :n", {"n": name})
            t.execute("UPDATE operators SET locked_until = :until WHERE name = :n AND failed_signins >= :max",
                      {"n": name, "until": time.time() + cfg.lockout_seconds, "max": cfg.max_failed_signins})
    audit.record(store, actor=name, action="sign-in-failed",
                 reason="wrong password" if known else "unknown operator", channel=channel, outcome="refused")


def session(store: Any, cfg: ConsoleConfig, token: str | None) -> Session | None:
    """The live session of this token (and its idle time restarts), or None when there is none."""
    if not token:
        return None
    now = time.time()
    h = _token_hash(token)
    with store.tx() as t:
        row = t.one("SELECT operator, role, csrf, last_seen, expires_at FROM console_sessions WHERE token_hash = :h",
                    {"h": h})
        if row is None:
            return None
        if float(row[4]) < now or float(row[3]) + cfg.idle_seconds < now:
            t.execute("DELETE FROM console_sessions WHERE token_hash = :h", {"h": h})
            return None
        t.execute("UPDATE console_sessions SET last_seen = :at WHERE token_hash = :h", {"at": now, "h": h})
    return Session(row[0], tuple(row[1].split(",")), row[2], expires_at=float(row[4]))


def sign_out(store: Any, token: str | None) -> None:
    if token:
        with store.tx() as t:
            t.execute("DELETE FROM console_sessions WHERE token_hash = :h", {"h": _token_hash(token)})


def csrf_ok(s: Session, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(s.csrf, given or "")
