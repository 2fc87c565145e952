"""Property-based: the simulator's answers conform to CJIB's OpenAPI document (schemathesis 4.x).

The simulator runs under uvicorn on loopback over plain HTTP (so there is no client certificate
to check) with its JWS checks ON: the test signs every generated body with the gateway's key,
for the exact bytes it sends, so generated claims reach the business rules and the
idempotency logic instead of stopping at 401. Bounded: a few dozen examples per operation.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from adapters.cjib.codec import OPENAPI_FILE
from adapters.cjib.simulator import CjibSimulator
from gateway.core.clock import AMS, SystemClock
from gateway.security import jws, pki
from gateway.security.keys import KeyPair, PartnerTrust, load_keypair, load_trust
from gateway.wire.server import serve_in_thread
from tests.paths import SAMPLES

schema = schemathesis.openapi.from_path(OPENAPI_FILE)
SAMPLE = SAMPLES / "cjib-vordering.json"

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


@dataclass
class Rig:
    url: str
    gateway: KeyPair
    cjib_trust: PartnerTrust
    http: httpx.Client


@pytest.fixture(scope="module")
def cjib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    d = tmp_path_factory.mktemp("pki")
    pki.init(d)
    gateway = load_keypair(d / "gateway-key.pem", d / "gateway.pem")
    sim = CjibSimulator(load_keypair(d / "cjib-key.pem", d / "cjib.pem"),
                        load_trust("gateway", [d / "ca.pem"], [d / "gateway.pem"]), SystemClock())
    cjib_trust = load_trust("cjib", [d / "ca.pem"], [d / "cjib.pem"])
    with serve_in_thread(sim) as server, httpx.Client() as http:
        yield Rig(server.url, gateway, cjib_trust, http)


def send_and_validate(case: schemathesis.Case, cjib: Rig) -> httpx.Response:
    """Send ``case`` with a valid JWS over the exact body bytes; check the answer against the document."""
    kwargs = case.as_transport_kwargs(base_url=cjib.url)
    request = cjib.http.build_request(kwargs["method"], kwargs["url"], params=kwargs.get("params"),
                                 headers=kwargs.get("headers"), content=_body(kwargs))
    if request.content:
        request.headers["X-JWS-Signature"] = jws.sign_detached(
            request.content, cjib.gateway, now=dt.datetime.now(dt.UTC), htm=request.method,
            htu=request.url.raw_path.decode("ascii"))
    response = cjib.http.send(request)
    case.validate_response(response, checks=CHECKS)
    if response.content:  # every answer with a body is signed by CJIB
        jws.verify_detached(response.headers["x-jws-signature"], response.content,
                            cjib.cjib_trust, now=dt.datetime.now(dt.UTC))
    return response


@schema.parametrize()
@settings(max_examples=30, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_simulator_conforms_to_the_openapi_document(case: schemathesis.Case, cjib: Rig) -> None:
    send_and_validate(case, cjib)


def test_accepted_claim_case_and_feed_conform(cjib: Rig) -> None:
    """Random claims almost never pass the business rules, so the happy path is driven by hand."""
    d = json.loads(SAMPLE.read_text(encoding="utf-8"))
    today = dt.datetime.now(AMS).date()
    d.update(opdrachtgeverReferentie=str(uuid.uuid4()),
             vervaldatum=(today - dt.timedelta(days=60)).isoformat(),
             aanmaningsdatum=(today - dt.timedelta(days=30)).isoformat())
    post = schema["/v1/vorderingen"]["POST"].Case(
        body=d, headers={"Idempotency-Key": d["opdrachtgeverReferentie"]}, media_type="application/json")
    first = send_and_validate(post, cjib)
    again = send_and_validate(post, cjib)
    assert first.status_code == again.status_code == 201 and first.content == again.content
    zaaknummer = first.json()["zaaknummer"]

    zaak = send_and_validate(schema["/v1/vorderingen/{zaaknummer}"]["GET"].Case(
        path_parameters={"zaaknummer": zaaknummer}), cjib)
    assert zaak.status_code == 200 and zaak.json()["status"] == "IN_BEHANDELING"

    feed = send_and_validate(schema["/v1/statuswijzigingen"]["GET"].Case(query={"limiet": 500}), cjib)
    assert feed.status_code == 200
    assert zaaknummer in [w["zaaknummer"] for w in feed.json()["wijzigingen"]]


def _body(kwargs: dict) -> bytes | None:
    if "json" in kwargs:
        return json.dumps(kwargs["json"]).encode("utf-8")
    data = kwargs.get("data") or kwargs.get("content")
    return data.encode("utf-8") if isinstance(data, str) else data

