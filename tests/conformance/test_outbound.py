"""Revocation on the gateway's own calls (WT004) and the revocation policy, each on a chain of its own.

The chains here revoke the partners' own certificates (or take the CA away), so they do not share
the module chain of the other conformance tests.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from prometheus_client import generate_latest

from gateway.core.errors import CertificateRevoked
from gateway.mapping.ind_to_duo import bericht_id_for
from gateway.runtime import Runtime
from gateway.sandbox import Chain, start_chain, wait_until
from gateway.security import sandbox_ca


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Any]:
    chains: list[Chain] = []

    def make(**kw: Any) -> Chain:
        directory = tmp_path / f"chain{len(chains)}"
        chain = start_chain(directory, dsn=f"sqlite:///{directory}.db", crl_next_update_seconds=1.0, **kw)
        chains.append(chain)
        return chain

    yield make
    for chain in chains:
        chain.stop()


def _rt(chain: Chain) -> Runtime:
    assert chain.daemon is not None, "the chain's gateway is not running"
    return chain.daemon.rt


def _revoked_seen(chain: Chain, name: str) -> bool:
    cert = x509.load_pem_x509_certificate((chain.directory / "pki" / f"{name}.pem").read_bytes())
    revocation = _rt(chain).revocation
    assert revocation is not None, "revocation checking is off"
    return wait_until(lambda: revocation.status(cert, time.time()) == "revoked", 10)


def _attempt_details(chain: Chain, melding_id: str) -> list[str]:
    rows = _rt(chain).store.query(
        "SELECT a.detail FROM attempts a JOIN outbox o ON o.id = a.outbox_id WHERE o.idempotency_key = :k "
        "ORDER BY a.id", {"k": bericht_id_for(melding_id)})
    return [r[0] or "" for r in rows]


def test_WT004_outbound_a_revoked_duo_server_certificate_gets_nothing(fresh) -> None:
    from adapters.ind.simulator import generate_meldingen

    chain = fresh()
    first, second = generate_meldingen(2, seed=5001)
    assert chain.ind.push(chain.ind_endpoint, first).accepted
    assert wait_until(lambda: chain.duo.count(bericht_id_for(first.melding_id)) == 1, 10)
    sandbox_ca.revoke(chain.directory / "pki", "duo")
    assert _revoked_seen(chain, "duo")  # no restart
    received = len(chain.duo.received)
    assert chain.ind.push(chain.ind_endpoint, second).accepted  # IND is fine; DUO's server is not
    assert wait_until(lambda: any("CERT_REVOKED" in d for d in _attempt_details(chain, second.melding_id)), 10)
    time.sleep(0.5)
    assert len(chain.duo.received) == received  # refused after the handshake, before a byte was sent
    assert chain.duo.count(bericht_id_for(second.melding_id)) == 0
    # DUO's own door: its revoked client certificate is refused too, and nothing goes on to CJIB.
    _duo_door_refuses_the_revoked_certificate(chain)


def _duo_door_refuses_the_revoked_certificate(chain: Chain) -> None:
    import datetime as dt

    import httpx

    from adapters.duo.simulator import generate_vorderingen, post_vorderingoverdracht
    from gateway.core.clock import AMS
    from gateway.security import keys, tls

    pki_dir = chain.directory / "pki"
    duo = keys.load_keypair(pki_dir / "duo-key.pem", pki_dir / "duo.pem")
    (claim,) = generate_vorderingen(1, 5003, dt.datetime.now(AMS).date())
    with httpx.Client(verify=tls.client_context(duo, [str(pki_dir / "ca.pem")]), timeout=10) as client:
        response = post_vorderingoverdracht(client, chain.duo_endpoint, claim, duo)
    assert response.status_code == 400 and b"CERT_REVOKED" in response.content
    store = _rt(chain).store
    assert store.query("SELECT fault_code FROM inbound WHERE partner = 'duo' ORDER BY id DESC")[0][0] == "CERT_REVOKED"
    assert store.query("SELECT COUNT(*) FROM outbox WHERE partner = 'cjib'")[0][0] == 0


def test_WT004_outbound_the_ind_feed_with_a_revoked_server_certificate_is_refused(fresh) -> None:
    from gateway.daemon import _ind_feed

    chain = fresh()
    feed = _ind_feed(_rt(chain))
    assert feed.haal_meldingen(1, 1).laatste_volgnummer == 0
    sandbox_ca.revoke(chain.directory / "pki", "ind")
    assert _revoked_seen(chain, "ind")
    with pytest.raises(CertificateRevoked):  # on the kept-alive connection, checked again per request
        feed.haal_meldingen(1, 1)


def test_WT004_policy_hard_fail_refuses_unknown_status_and_soft_fail_accepts_it_loudly(fresh) -> None:
    from adapters.ind.simulator import generate_meldingen
    from gateway.ops import health

    # IND soft-fail, DUO hard-fail (the default); a CRL counts for nextUpdate (1 s) + 1 s of grace.
    chain = fresh(overrides={"revocation": {"grace_seconds": 1.0, "ocsp_interval_seconds": 0.0},
                             "partners": {"ind": {"revocation": "soft-fail"}}})
    rt = _rt(chain)
    (m,) = generate_meldingen(1, seed=5002)
    chain.extra["ca"].up = False
    ind = x509.load_pem_x509_certificate((chain.directory / "pki" / "ind.pem").read_bytes())
    revocation = rt.revocation
    assert revocation is not None, "revocation checking is off"
    assert wait_until(lambda: revocation.status(ind, time.time()) == "unknown", 10)
    # IND (soft-fail): accepted, counted and logged.
    assert chain.ind.push(chain.ind_endpoint, m).accepted
    metrics = generate_latest(rt.metrics.registry).decode()
    assert 'gateway_revocation_soft_fail_total{partner="ind"}' in metrics
    # DUO (hard-fail): its server certificate's status is unknown, so nothing is sent to it.
    assert wait_until(lambda: any("CERT_STATUS_UNKNOWN" in d for d in _attempt_details(chain, m.melding_id)), 10)
    assert chain.duo.count(bericht_id_for(m.melding_id)) == 0
    check = health.evaluate(rt)["checks"]["revocation"]
    assert check["status"] == "failing" and "no valid CRL" in check["reason"]
    # The CA back: the next fetch makes the status known, and the delivery goes out on its retry.
    chain.extra["ca"].up = True
    assert wait_until(lambda: chain.duo.count(bericht_id_for(m.melding_id)) == 1, 20)
    assert wait_until(lambda: health.evaluate(rt)["checks"]["revocation"]["status"] == "ok", 10)
