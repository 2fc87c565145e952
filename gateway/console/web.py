"""Requests to the console (``/console/...``) and its JSON API (``/api/v1/...``) on the operator listener.

``handle`` is synchronous (it reads the store); ``gateway.app.operator_app`` runs it in its pool.
Nothing here is reachable signed out except the sign-in page, its stylesheet and
``POST /api/v1/session``. A browser signs in with a form and gets an HttpOnly, SameSite=Strict
session cookie; every form that changes something carries the session's CSRF token. A script
signs in with ``POST /api/v1/session`` and sends ``Authorization: Bearer TOKEN`` (no cookie, so no
CSRF token is needed); a browser calling the API with its cookie must send ``X-CSRF-Token``.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from http.cookies import SimpleCookie
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from gateway.console import api, auth, bulk, openapi, pages
from gateway.console.auth import Session
from gateway.core import audit
from gateway.core.errors import StoreError
from gateway.runtime import Runtime
from gateway.wire.server import Answer

__all__ = ["Request", "handle", "is_console"]

COOKIE = "gw_session"
PRE_COOKIE = "gw_signin"  # the sign-in form's own CSRF token (double submit)
HTML = "text/html; charset=utf-8"
_SECURITY = (("cache-control", "no-store"), ("x-content-type-options", "nosniff"), ("x-frame-options", "DENY"),
             ("referrer-policy", "no-referrer"),
             ("content-security-policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                                         "frame-ancestors 'none'; base-uri 'none'"))


def is_console(path: str) -> bool:
    return path == "/console" or path.startswith(("/console/", "/api/v1/"))


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    #: The verified TLS client certificate (DER), when the listener runs TLS and one was presented.
    client_cert: bytes | None = None

    @property
    def cookies(self) -> dict[str, str]:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(self.headers.get("cookie", ""))
        except Exception:  # noqa: BLE001 - a malformed cookie header is no cookie
            return {}
        return {k: m.value for k, m in jar.items()}

    def form(self) -> dict[str, str]:
        """The urlencoded form or JSON object of the body (strings only)."""
        if "json" in self.headers.get("content-type", ""):
            try:
                data = json.loads(self.body or b"{}")
            except ValueError:
                raise api.Refused(400, "the body is not JSON") from None
            if not isinstance(data, dict):
                raise api.Refused(400, "the body must be a JSON object")
            return {str(k): "" if v is None else str(v) for k, v in data.items()}
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))


def handle(rt: Runtime, req: Request) -> Answer:
    is_api = req.path.startswith("/api/")
    try:
        try:
            return _route(rt, req, is_api)
        except StoreError as exc:  # clearly "not now", like /health says it, never a bare 500
            rt.log.error("console_store_error", error=type(exc).__name__, stage="console")
            raise api.Refused(503, "the store is unreachable or failed; nothing was changed (try again, and see "
                                   "/health)") from exc
    except api.Refused as exc:
        s = getattr(req, "_session", None)
        if is_api:
            return _json({"type": "about:blank", "title": exc.message, "status": exc.status}, exc.status,
                         "application/problem+json")
        return _html(pages.problem(exc.status, exc.message, s), exc.status)


def _route(rt: Runtime, req: Request, is_api: bool) -> Answer:
    cfg = rt.config.console
    if req.path == "/console/static/console.css":
        css = resources.files("gateway.console").joinpath("console.css").read_bytes()
        return Answer(200, "text/css; charset=utf-8", css, (("cache-control", "max-age=300"),))
    if req.path == "/console/sign-in":
        return _sign_in(rt, req)
    if req.path == "/api/v1/session" and req.method == "POST":
        f = req.form()
        try:
            new = auth.sign_in(rt.store, cfg, f.get("name", ""), f.get("password", ""), channel="api")
        except auth.SignInRefused as exc:
            raise api.Refused(401, str(exc)) from None
        return _json({"token": new.token, "csrf": new.csrf, "operator": new.operator, "roles": list(new.roles),
                      "expires_at": new.expires_at})
    s, by_cookie = _session(rt, req)
    if s is None:
        if is_api:
            raise api.Refused(401, "signed out or the session has expired: sign in (POST /api/v1/session)")
        if req.method == "GET":
            return Answer(303, HTML, b"", (("location", "/console/sign-in?expired=1"),))
        raise api.Refused(401, "your session has expired or you are signed out; sign in again (nothing was changed)")
    req._session = s  # type: ignore[attr-defined]
    if req.method == "POST" and by_cookie:
        given = req.headers.get("x-csrf-token") if is_api else req.form().get("csrf")
        if not auth.csrf_ok(s, given):
            audit.record(rt.store, actor=s.operator, action="csrf-refused", target=req.path,
                         reason="missing or wrong CSRF token", channel="console", outcome="refused")
            raise api.Refused(403, "the form's security token is missing or wrong; reload the page and try again "
                                   "(nothing was changed)")
    return (_api if is_api else _page)(rt, req, s)


def _session(rt: Runtime, req: Request) -> tuple[Session | None, bool]:
    bearer = req.headers.get("authorization", "")
    if bearer.lower().startswith("bearer "):
        return auth.session(rt.store, rt.config.console, bearer[7:].strip()), False
    return auth.session(rt.store, rt.config.console, req.cookies.get(COOKIE)), True


def _sign_in(rt: Runtime, req: Request) -> Answer:
    holder = auth.certificate_name(req.client_cert)
    if req.method == "GET":
        token = secrets.token_urlsafe(24)
        notice = "Your session has expired or you signed out; please sign in." if req.query.get("expired") else ""
        return _html(pages.sign_in(token, notice=notice, certificate=holder), 200, cookie=(PRE_COOKIE, token, 600))
    f = req.form()
    pre = req.cookies.get(PRE_COOKIE)
    if not pre or not secrets.compare_digest(pre, f.get("csrf", "")):
        token = secrets.token_urlsafe(24)
        return _html(pages.sign_in(token, error="The sign-in form expired; please try again.", certificate=holder),
                     403, cookie=(PRE_COOKIE, token, 600))
    try:
        if f.get("method") == "certificate":
            s = auth.sign_in_certificate(rt.store, rt.config.console, req.client_cert)
        else:
            s = auth.sign_in(rt.store, rt.config.console, f.get("name", ""), f.get("password", ""))
    except auth.SignInRefused as exc:
        token = secrets.token_urlsafe(24)
        return _html(pages.sign_in(token, error=str(exc), certificate=holder), 401, cookie=(PRE_COOKIE, token, 600))
    return Answer(303, HTML, b"", (("location", "/console/"),
                                   ("set-cookie", _cookie(rt, COOKIE, s.token, int(rt.config.console.session_seconds)))))


_MESSAGE = re.compile(r"^/(?:console|api/v1)/messages/([^/]+)(?:/(unmask|raw|correct)(?:/([a-z]+-\d+))?)?$")
_DELIVERY = re.compile(r"^/(?:console|api/v1)/deliveries/([^/]+)/(retry|resolve)$")
_NOTICES = {"retry": "The delivery is queued again.", "resolve": "The delivery is resolved.",
            "correct": "A correction to DUO is queued (see the rules-duo message it made).",
            "retry-0": "Nothing was retried.", "resolve-0": "Nothing was resolved."}


def _page(rt: Runtime, req: Request, s: Session) -> Answer:
    p, q = req.path, req.query
    if p == "/console/sign-out" and req.method == "POST":
        auth.sign_out(rt.store, req.cookies.get(COOKIE))
        audit.record(rt.store, actor=s.operator, action="sign-out", channel="console")
        return Answer(303, HTML, b"", (("location", "/console/sign-in"), ("set-cookie", _cookie(rt, COOKIE, "", 0))))
    if p in ("/console", "/console/") and req.method == "GET":
        return _html(pages.dashboard(api.dashboard(rt), s))
    if p == "/console/messages" and (req.method == "POST" or q.get("person")):
        f = req.form() if req.method == "POST" else q
        try:
            target = api.person_query(rt, f)
        except api.Refused as exc:
            return _html(pages.search({k: v for k, v in f.items() if k != "person"}, None, s, error=exc.message),
                         exc.status)
        return Answer(303, HTML, b"", (("location", "/console/messages?" + urlencode(target)),))
    if p == "/console/messages" and req.method == "GET":
        has_filter = any(q.get(k) for k in ("ref", "pd", "state", "route", "partner", "error", "since", "until"))
        try:
            result = api.search(rt, s, q) if has_filter else api.search(rt, s, {"limit": "50"})
        except api.Refused as exc:
            return _html(pages.search(q, None, s, error=exc.message), exc.status)
        return _html(pages.search(q, result, s))
    m = _MESSAGE.match(p)
    if m and req.method == "GET" and not m.group(2):
        return _html(pages.message(api.message(rt, s, m.group(1)), s, _NOTICES.get(q.get("done", ""), "")))
    if m and req.method == "POST" and m.group(2) == "unmask":
        return _html(pages.message(api.message(rt, s, m.group(1), reason=req.form().get("reason", "")), s))
    if m and req.method == "POST" and m.group(2) == "raw" and m.group(3):
        data = api.raw_download(rt, s, m.group(1), m.group(3), req.form().get("reason"))
        return _download(data, m.group(3))
    if m and req.method == "POST" and m.group(2) == "correct":
        api.correct(rt, s, m.group(1), req.form().get("reason"))
        return Answer(303, HTML, b"", (("location", f"/console/messages/{quote(m.group(1))}?done=correct"),))
    d = _DELIVERY.match(p)
    if d and req.method == "POST":
        done = api.act(rt, s, d.group(2), d.group(1), req.form().get("reason"))
        mid = rt.store.query("SELECT message_id FROM outbox WHERE id = :id", {"id": int(d.group(1))})[0][0]
        key = d.group(2) + ("" if done["done"] else "-0")
        return Answer(303, HTML, b"", (("location", f"/console/messages/{int(mid)}?done={key}"),))
    if p == "/console/dead-letters":
        return _bulk(rt, req, s)
    if p.startswith("/console/dead-letters/jobs/") and req.method == "GET":
        return _html(pages.bulk_job(bulk.get(rt, s, p.rsplit("/", 1)[1]).to_dict(), s))
    if p == "/console/audit" and req.method == "GET":
        return _html(pages.audit_page(api.audit_log(rt, q), q, s))
    if p == "/console/rules" and req.method == "GET":
        return _html(pages.rules(api.rules(rt, q), q, s))
    if p == "/console/rules/apply" and req.method == "POST":
        f = req.form()
        done = api.roll_out(rt, s, f.get("ruleset", ""), f.get("expected"), f.get("reason"))
        return _html(pages.rules(api.rules(rt), {}, s, notice=f"Rule set {done['ruleset']} is active; "
                                                             f"{done['corrections_queued']} correction(s) queued."))
    raise api.Refused(404, f"no such page: {p}")


def _bulk(rt: Runtime, req: Request, s: Session) -> Answer:
    if req.method == "GET":
        return _html(pages.bulk(api.bulk(rt, s, req.query), req.query, s))
    f = req.form()
    if f.get("action") not in ("retry", "resolve"):
        raise api.Refused(400, "action: retry or resolve")
    job = bulk.start(rt, s, f, f["action"], f.get("expected"))
    return Answer(303, HTML, b"", (("location", f"/console/dead-letters/jobs/{job.id}"),))


def _api(rt: Runtime, req: Request, s: Session) -> Answer:
    p, q, method = req.path, req.query, req.method
    if p == "/api/v1/session" and method == "DELETE":
        auth.sign_out(rt.store, req.headers.get("authorization", "")[7:].strip() or req.cookies.get(COOKIE))
        audit.record(rt.store, actor=s.operator, action="sign-out", channel="api")
        return _json({"signed_out": True})
    if method == "GET":
        got = _api_get(rt, p, q, s)
        if got is not None:
            return _json(got)
    m = _MESSAGE.match(p)
    if m and method == "POST" and m.group(2) == "unmask":
        return _json(api.message(rt, s, m.group(1), reason=req.form().get("reason", "")))
    if m and method == "POST" and m.group(2) == "raw" and m.group(3):
        return _download(api.raw_download(rt, s, m.group(1), m.group(3), req.form().get("reason")), m.group(3))
    if m and method == "POST" and m.group(2) == "correct":
        return _json(api.correct(rt, s, m.group(1), req.form().get("reason")))
    d = _DELIVERY.match(p)
    if d and method == "POST":
        return _json(api.act(rt, s, d.group(2), d.group(1), req.form().get("reason")))
    if p == "/api/v1/rules/apply" and method == "POST":
        f = req.form()
        return _json(api.roll_out(rt, s, f.get("ruleset", ""), f.get("expected"), f.get("reason")))
    b = re.match(r"^/api/v1/dead-letters/(retry|resolve)$", p)
    if b and method == "POST":
        f = req.form()
        return _json(api.bulk(rt, s, f, action=b.group(1), expected=f.get("expected")))
    raise api.Refused(404 if method in ("GET", "POST", "DELETE") else 405, f"no such endpoint: {method} {p}")


def _api_get(rt: Runtime, p: str, q: dict[str, str], s: Session) -> Any:
    if p == "/api/v1/openapi.json":
        return openapi.SPEC
    if p == "/api/v1/dashboard":
        return api.dashboard(rt)
    if p == "/api/v1/messages":
        return api.search(rt, s, q)
    m = _MESSAGE.match(p)
    if m and not m.group(2):
        return api.message(rt, s, m.group(1))
    if p == "/api/v1/dead-letters":
        return api.bulk(rt, s, q)
    if p == "/api/v1/audit":
        return api.audit_log(rt, q)
    if p == "/api/v1/rules":
        return api.rules(rt, q)
    if p == "/api/v1/session":
        return {"operator": s.operator, "roles": list(s.roles), "expires_at": s.expires_at}
    return None


def _cookie(rt: Runtime, name: str, value: str, max_age: int) -> str:
    secure = "; Secure" if rt.config.console.secure_cookie else ""
    return f"{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"


def _html(body: str, status: int = 200, *, cookie: tuple[str, str, int] | None = None) -> Answer:
    headers: tuple[tuple[str, str], ...] = _SECURITY
    if cookie is not None:
        headers += (("set-cookie", f"{cookie[0]}={cookie[1]}; Path=/console/sign-in; Max-Age={cookie[2]}; HttpOnly; "
                                   "SameSite=Strict"),)
    return Answer(status, HTML, body.encode(), headers)


def _json(data: Any, status: int = 200, content_type: str = "application/json") -> Answer:
    return Answer(status, content_type, json.dumps(data, indent=1).encode(), _SECURITY)


def _download(data: bytes, name: str) -> Answer:
    return Answer(200, "application/octet-stream", data,
                  _SECURITY + (("content-disposition", f'attachment; filename="{quote(name)}.bin"'),))
