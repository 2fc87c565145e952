"""The door of an HTTP endpoint: the request's headers against the partner's contract.

``check_door`` is the first check of every HTTP endpoint (``adapters/<partner>/server.py``,
``handle_request``): the request's ``Content-Type`` (and, for SOAP, its ``SOAPAction``) must be
what the partner's contract says, or the request is refused as ``MALFORMED`` like any other bad
input (recorded by the route, never delivered). Transport only: it knows no store and no route.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.core.errors import MalformedInput

__all__ = ["Door", "check_door"]


@dataclass(frozen=True)
class Door:
    """What a partner's contract says about the HTTP request of one endpoint."""

    partner: str
    media_type: str  # e.g. "text/xml" (compared case-insensitively)
    charset: str = "utf-8"
    #: The SOAP 1.1 ``SOAPAction`` the request must carry (None: not a SOAP endpoint).
    soap_action: str | None = None

    @property
    def content_type(self) -> str:
        return f"{self.media_type}; charset={self.charset}"


def check_door(door: Door, headers: Mapping[str, str]) -> None:
    """Refuse (``MalformedInput``) a request whose Content-Type or SOAPAction the contract does not allow.

    ``headers`` has lower-case names, as the ASGI app hands them over. The media type and the
    parameter names and the charset are compared case-insensitively (``text/xml;charset=UTF-8``
    is ``text/xml; charset=utf-8``); a missing charset is taken as the contract's (an XML
    document declares its own encoding; UTF-8 is the default), any other charset is refused.
    SOAP 1.1 clients send the SOAPAction quoted (``"urn:..."``); quoted and bare are both accepted.
    """
    raw = headers.get("content-type")
    if raw is None:
        raise MalformedInput(f"the Content-Type header is missing; the contract says {door.content_type!r}",
                             partner=door.partner, stage="receiving")
    media, params = _media_type(raw)
    charset = params.get("charset", door.charset).lower()
    if media != door.media_type.lower() or charset != door.charset.lower():
        raise MalformedInput(f"Content-Type {_shown(raw)!r} received; the contract says {door.content_type!r}",
                             partner=door.partner, stage="receiving")
    if door.soap_action is None:
        return
    action = headers.get("soapaction")
    if action is None:
        raise MalformedInput(f"the SOAPAction header is missing; the contract says {door.soap_action!r}",
                             partner=door.partner, stage="receiving")
    if _unquote(action).strip() != door.soap_action:
        raise MalformedInput(f"SOAPAction {_shown(action)!r} received; the contract says {door.soap_action!r}",
                             partner=door.partner, stage="receiving")


def _media_type(value: str) -> tuple[str, dict[str, str]]:
    """``type/subtype`` (lower case) and the parameters (names lower case, quotes removed)."""
    media, *rest = value.split(";")
    params: dict[str, str] = {}
    for part in rest:
        name, sep, val = part.partition("=")
        if not sep:
            continue
        params[name.strip().lower()] = _unquote(val).strip()
    return media.strip().lower(), params


def _unquote(value: str) -> str:
    """``value`` without surrounding white space and one pair of double quotes around it."""
    value = value.strip()
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def _shown(value: str, limit: int = 100) -> str:
    """A header value fit for a fault string and the log: printable ASCII, cut at ``limit``."""
    clean = "".join(c if " " <= c <= "~" else "?" for c in value)
    return clean if len(clean) <= limit else clean[:limit] + "..."
