"""CJIB JSON bodies <-> ``gateway.core.models`` (pure: no I/O after the schema is loaded once).

Shapes are checked against the component schemas of the vendored OpenAPI document
(``xsd/cjib-portaal-v1.openapi.yaml``, pinned by ``xsd/SHA256SUMS``), loaded on first use.
A body that is not JSON or does not fit its schema raises ``gateway.core.errors.SchemaInvalid``
with ``path`` = the JSON pointer of the first problem; messages never quote values.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from typing import Any

import yaml
from jsonschema import Draft202012Validator, FormatChecker

from gateway.core.errors import ConfigError, SchemaInvalid
from gateway.core.models import CjibOntvangst, CjibStatusPagina, CjibStatuswijziging, Fout
from gateway.wire.xmlsafe import XSD_DIR

__all__ = [
    "OPENAPI_FILE",
    "openapi_document",
    "validate",
    "decode_json",
    "decode_vordering",
    "decode_ontvangst",
    "decode_statuspagina",
    "decode_problem",
    "encode_json",
]

OPENAPI_FILE = XSD_DIR / "cjib-portaal-v1.openapi.yaml"
_SUMS_FILE = OPENAPI_FILE.parent / "SHA256SUMS"


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The pinned OpenAPI document; refuses a file whose sha256 is not the pinned one."""
    raw = OPENAPI_FILE.read_bytes()
    expected = _pinned_sha256(OPENAPI_FILE.name)
    if hashlib.sha256(raw).hexdigest() != expected:
        raise ConfigError("the vendored CJIB OpenAPI document does not match its pinned sha256",
                          file=str(OPENAPI_FILE))
    return yaml.safe_load(raw)


def _pinned_sha256(name: str) -> str:
    for line in _SUMS_FILE.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == name:
            return parts[0]
    raise ConfigError("no pinned sha256 for the CJIB OpenAPI document", file=str(_SUMS_FILE))


def _format_checker() -> FormatChecker:
    """date and date-time checked by us: jsonschema checks date-time only when an optional
    package happens to be installed, and the contract must not depend on that."""
    checker = FormatChecker(formats=())

    @checker.checks("date", raises=ValueError)
    def _date(value: object) -> bool:
        return not isinstance(value, str) or (len(value) == 10 and bool(dt.date.fromisoformat(value)))

    @checker.checks("date-time", raises=ValueError)
    def _date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        return "T" in value.upper() and parsed.tzinfo is not None

    return checker


@functools.cache
def _validator(component: str) -> Draft202012Validator:
    # The components travel along so that the document's own "#/components/..." refs resolve.
    schema = {"$ref": f"#/components/schemas/{component}",
              "components": openapi_document()["components"]}
    return Draft202012Validator(schema, format_checker=_format_checker())


def validate(component: str, value: object) -> None:
    """Raise ``SchemaInvalid`` when ``value`` does not fit ``components/schemas/<component>``."""
    error = next(iter(_validator(component).iter_errors(value)), None)
    if error is not None:
        pointer = "".join(f"/{p}" for p in error.absolute_path)
        raise SchemaInvalid(f"CJIB {component} does not fit the schema ({error.validator})",
                            partner="cjib", stage="processing", path=pointer or "/")


def decode_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SchemaInvalid("CJIB body is not UTF-8 JSON", partner="cjib", stage="processing") from exc


def encode_json(value: object) -> bytes:
    """Compact, key-sorted UTF-8 JSON (the simulator's answers; stable for idempotent repeats)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_vordering(body: bytes) -> dict[str, Any]:
    value = decode_json(body)
    validate("Vordering", value)
    return value


def decode_ontvangst(body: bytes) -> CjibOntvangst:
    d = decode_json(body)
    validate("Ontvangst", d)
    return CjibOntvangst(
        zaaknummer=d["zaaknummer"],
        opdrachtgever_referentie=d["opdrachtgeverReferentie"],
        status=d["status"],
        ontvangen_op=d["ontvangenOp"],
        payload_digest=d["payloadDigest"],
    )


def decode_statuspagina(body: bytes) -> CjibStatusPagina:
    d = decode_json(body)
    validate("StatuswijzigingenPagina", d)
    return CjibStatusPagina(
        wijzigingen=tuple(_wijziging(w) for w in d["wijzigingen"]),
        volgende_cursor=d["volgendeCursor"],
        meer=d["meer"],
    )


def _wijziging(w: dict[str, Any]) -> CjibStatuswijziging:
    return CjibStatuswijziging(
        volgnummer=w["volgnummer"],
        zaaknummer=w["zaaknummer"],
        opdrachtgever_referentie=w["opdrachtgeverReferentie"],
        status=w["status"],
        openstaand_centen=w["openstaandCenten"],
        tijdstip=w["tijdstip"],
        redenen=tuple(Fout(code=r["code"], omschrijving=r["omschrijving"]) for r in w.get("redenen", ())),
    )


def decode_problem(body: bytes) -> dict[str, Any]:
    """An RFC 9457 problem as a dict (``errors`` always present, possibly empty)."""
    d = decode_json(body)
    validate("Problem", d)
    return {**d, "errors": list(d.get("errors", []))}
