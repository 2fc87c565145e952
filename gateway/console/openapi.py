"""The JSON API's description (OpenAPI 3.1), served at ``/api/v1/openapi.json``.

Kept beside the handlers in ``web.py``; tests/integration/test_console_api.py checks that every
path here answers and that every ``/api/v1`` route of ``web.py`` is described.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SPEC"]


def _op(summary: str, *, params: tuple[str, ...] = (), body: tuple[str, ...] = (), ok: str = "application/json",
        errors: tuple[int, ...] = (400, 401, 403, 404)) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {"200": {"description": "ok", "content": {ok: {}}}}}
    for code in errors:
        op["responses"][str(code)] = {"description": _ERRORS[code],
                                      "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    if params:
        op["parameters"] = [{"name": p, "in": "query", "required": False, "schema": {"type": "string"}} for p in params]
    if body:
        op["requestBody"] = {"content": {"application/json": {"schema": {
            "type": "object", "properties": {b: {"type": "string"} for b in body}}}}}
    return op


_ERRORS = {400: "malformed input (the title says which)", 401: "signed out, expired session or failed sign-in",
           403: "the role does not allow it, or no CSRF token with a session cookie",
           404: "unknown id", 409: "the delivery is in the wrong state, or the dead letters changed since the preview"}
_REF = {"name": "ref", "in": "path", "required": True, "schema": {"type": "string"},
        "description": "meldingId, berichtId, vorderingId, zaaknummer or message number"}
_DELIVERY = {"name": "delivery", "in": "path", "required": True, "schema": {"type": "integer"}}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Chain gateway operator API", "version": "1",
             "description": "What the operator console shows and does. Sign in with POST /api/v1/session and send "
                            "`Authorization: Bearer TOKEN`; a browser session cookie works too, with `X-CSRF-Token` "
                            "on every POST. Personal data is masked unless a personal-data operator unmasks one "
                            "message with a reason; every sign-in, action and unmasking is audited."},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                            "cookie": {"type": "apiKey", "in": "cookie", "name": "gw_session"}},
        "schemas": {"Problem": {"type": "object", "properties": {"title": {"type": "string"},
                                                                  "status": {"type": "integer"}}}},
    },
    "security": [{"bearer": []}, {"cookie": []}],
    "paths": {
        "/api/v1/session": {
            "post": _op("Sign in: {name, password} -> {token, csrf, expires_at}", body=("name", "password"),
                        errors=(400, 401)) | {"security": []},
            "get": _op("Who am I", errors=(401,)),
            "delete": _op("Sign out", errors=(401,)),
        },
        "/api/v1/openapi.json": {"get": _op("This description", errors=(401,))},
        "/api/v1/dashboard": {"get": _op("Per route counts, health checks with thresholds, circuits, IND gaps, "
                                         "24 h and 30 day series", errors=(401,))},
        "/api/v1/messages": {"get": _op("Search (newest first, paged with `after` = the previous answer's `next`)",
                                        params=("ref", "person", "state", "route", "partner", "error", "since",
                                                "until", "after", "limit"), errors=(400, 401))},
        "/api/v1/messages/{ref}": {"get": _op("One message: timeline, deliveries, attempts, masked raw bytes, "
                                              "actions") | {"parameters": [_REF]}},
        "/api/v1/messages/{ref}/unmask": {"post": _op("The message with personal data in clear (personal-data "
                                                      "role; reason required; audited)", body=("reason",))
                                          | {"parameters": [_REF]}},
        "/api/v1/messages/{ref}/raw/{part}": {"post": _op("Exact raw bytes of `inbound-N` or `outbox-N` "
                                                          "(personal-data role; reason required; audited)",
                                                          body=("reason",), ok="application/octet-stream")
                                              | {"parameters": [_REF, {"name": "part", "in": "path", "required": True,
                                                                       "schema": {"type": "string"}}]}},
        "/api/v1/messages/{ref}/correct": {"post": _op("Queue DUO a CORRECTIE of this IND notification with the "
                                                       "active rule set (operator role; reason required; 409 when "
                                                       "nothing changes)", body=("reason",),
                                                       errors=(400, 401, 403, 404, 409)) | {"parameters": [_REF]}},
        "/api/v1/deliveries/{delivery}/retry": {"post": _op("Queue a dead or resolved delivery again (operator role)",
                                                            body=("reason",), errors=(400, 401, 403, 404, 409))
                                                | {"parameters": [_DELIVERY]}},
        "/api/v1/deliveries/{delivery}/resolve": {"post": _op("Resolve a dead letter by hand (operator role; "
                                                              "reason required)", body=("reason",),
                                                              errors=(400, 401, 403, 404, 409))
                                                  | {"parameters": [_DELIVERY]}},
        "/api/v1/dead-letters": {"get": _op("Preview: how many dead letters match", params=("partner", "route"),
                                            errors=(400, 401))},
        "/api/v1/dead-letters/retry": {"post": _op("Retry every matching dead letter; `expected` = the previewed "
                                                   "count", body=("partner", "route", "expected", "reason"),
                                                   errors=(400, 401, 403, 409))},
        "/api/v1/dead-letters/resolve": {"post": _op("Resolve every matching dead letter (reason required)",
                                                     body=("partner", "route", "expected", "reason"),
                                                     errors=(400, 401, 403, 409))},
        "/api/v1/audit": {"get": _op("The audit log, newest first", params=("actor", "action", "since"),
                                     errors=(400, 401))},
        "/api/v1/rules": {"get": _op("The active rule set, its roll-outs and the corrections they queued, the delay "
                                     "report, the claims backlog and how fast it drains; with `impact=NAME` the "
                                     "impact of rolling NAME out (changes nothing)", params=("impact",),
                                     errors=(400, 401, 404))},
        "/api/v1/rules/apply": {"post": _op("Roll a rule set out and queue its corrections (operator role; "
                                            "`expected` = the changed count of the impact report; reason required)",
                                            body=("ruleset", "expected", "reason"),
                                            errors=(400, 401, 403, 404, 409))},
    },
}
