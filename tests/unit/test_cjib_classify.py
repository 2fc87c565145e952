"""Every CJIB answer to POST /v1/vorderingen, classified."""

from __future__ import annotations

import json

import httpx
import pytest

from adapters.cjib.errors import (
    DEFAULT_RETRY_AFTER_SECONDS,
    classify,
    classify_exception,
    feed_error,
    retry_after,
)
from gateway.core.errors import PermanentDelivery, TransientDelivery
from gateway.wire.client import Timeout, Unanswered

REF = "c41d8a2e-6f0b-4a7c-9e13-5b2f8d6a0c94"
ONTVANGST = json.dumps({
    "zaaknummer": "CJIB-2026-000123", "opdrachtgeverReferentie": REF, "status": "IN_BEHANDELING",
    "ontvangenOp": "2026-11-28T23:00:00+01:00", "payloadDigest": "A" * 43,
}).encode()


def problem(status: int, **extra: object) -> bytes:
    return json.dumps({"type": "about:blank", "title": "t", "status": status, **extra}).encode()


def test_201_is_success_with_zaaknummer_and_receipt() -> None:
    o = classify(201, {}, ONTVANGST)
    assert (o.kind, o.http_status, o.reference, o.receipt) == ("success", 201, "CJIB-2026-000123", ONTVANGST)


def test_201_with_an_unreadable_body_is_retried() -> None:
    o = classify(201, {}, b'{"zaaknummer": "nope"}')
    assert o.kind == "retry" and o.reference is None and "201" in o.detail


def test_400_is_permanent_refusal_with_errors() -> None:
    errors = [{"code": "BSN_ELFPROEF", "pointer": "/debiteur/bsn", "omschrijving": "elfproef"}]
    o = classify(400, {}, problem(400, errors=errors))
    assert o.kind == "permanent" and o.http_status == 400
    assert o.extra == {"errors": errors, "refused": True}


def test_400_without_readable_problem_is_still_a_refusal() -> None:
    o = classify(400, {}, b"<html>bad request</html>")
    assert o.kind == "permanent" and o.extra == {"errors": [], "refused": True}


def test_401_is_permanent() -> None:
    o = classify(401, {}, problem(401))
    assert o.kind == "permanent" and "refused" not in o.extra


def test_409_is_retry_with_default_or_header() -> None:
    assert classify(409, {}, problem(409)).retry_after_seconds == DEFAULT_RETRY_AFTER_SECONDS
    o = classify(409, {"Retry-After": "5"}, problem(409))
    assert (o.kind, o.retry_after_seconds) == ("retry", 5.0)


def test_422_is_permanent_with_alarm() -> None:
    o = classify(422, {}, problem(422))
    assert o.kind == "permanent" and o.extra == {"alarm": "IDEMPOTENCY_CONFLICT"}


@pytest.mark.parametrize("status", [429, 503])
def test_429_and_503_retry_after_the_header(status: int) -> None:
    o = classify(status, httpx.Headers({"retry-after": "17"}), problem(status))
    assert (o.kind, o.http_status, o.retry_after_seconds) == ("retry", status, 17.0)


@pytest.mark.parametrize("status", [429, 503])
def test_429_and_503_without_header_get_the_default(status: int) -> None:
    assert classify(status, {}, b"").retry_after_seconds == DEFAULT_RETRY_AFTER_SECONDS


@pytest.mark.parametrize("status", [500, 502, 504, 599])
def test_other_5xx_retry(status: int) -> None:
    o = classify(status, {}, b"oops")
    assert o.kind == "retry" and o.http_status == status and o.retry_after_seconds is None


@pytest.mark.parametrize("status", [200, 204, 302, 404, 405, 413, 415])
def test_unexpected_statuses_retry(status: int) -> None:
    o = classify(status, {}, b"")
    assert o.kind == "retry" and "unexpected" in o.detail


@pytest.mark.parametrize("exc", [
    Unanswered("ConnectionRefusedError"), Timeout("TimeoutError"), Unanswered("BadAnswer"),
    Timeout("SSLTimeoutError"),
])
def test_network_errors_retry(exc: Unanswered) -> None:
    o = classify_exception(exc)
    assert o.kind == "retry" and o.http_status is None


@pytest.mark.parametrize(("headers", "seconds"), [
    ({"Retry-After": "3"}, 3.0), ({"retry-after": " 0 "}, 0.0), ({"RETRY-AFTER": "2.5"}, 2.5),
    ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, None), ({"Retry-After": "-1"}, None), ({}, None),
])
def test_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after(headers) == seconds


# ---------------------------------------------------------------- the status feed


def test_feed_200_is_no_error() -> None:
    assert feed_error(200, {}, b"{}") is None


@pytest.mark.parametrize(("status", "headers", "seconds"), [
    (429, {"Retry-After": "4"}, 4.0), (503, {"Retry-After": "60"}, 60.0),
    (429, {}, DEFAULT_RETRY_AFTER_SECONDS), (500, {}, None), (502, {"Retry-After": "1"}, 1.0),
])
def test_feed_transient_statuses(status: int, headers: dict[str, str], seconds: float | None) -> None:
    error = feed_error(status, headers, b"")
    assert isinstance(error, TransientDelivery) and error.retryable
    assert (error.http_status, error.retry_after_seconds, error.partner) == (status, seconds, "cjib")


@pytest.mark.parametrize("status", [400, 401, 403, 404, 301])
def test_feed_other_statuses_are_permanent(status: int) -> None:
    error = feed_error(status, {}, b"x")
    assert isinstance(error, PermanentDelivery) and not error.retryable
    assert (error.http_status, error.receipt) == (status, b"x")
