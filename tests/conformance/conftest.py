"""The Digikoppeling conformance suite's chain: the gateway with a PKIoverheid-shaped PKI and its CA.

One chain per module (``wus``): the sandbox PKI made fresh (root -> intermediate -> leaves with
the sandbox OINs), the sandbox CA serving its CRL and OCSP on loopback, the gateway, the
simulated IND, DUO and CJIB, all over mutual TLS, on SQLite (the rules are about the wire, not
the store; the CRL cache's SQL runs on both backends in tests/integration/test_revocation.py).

Besides each partner's own certificate, IND's configuration pins two more, issued before the
gateway starts, so one chain serves every test without one test's revocation spoiling another's:

- ``ind-revocable``: IND's name and OIN, revoked by the test that needs a revoked certificate;
- ``ind-wrong-oin``: IND's name, but DUO's OIN in subject serialNumber.

Each test is named after the rule it shows (docs/digikoppeling.md lists them).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.ind.simulator import IndSimulator, generate_meldingen
from gateway.runtime import Runtime
from gateway.sandbox import Chain, start_chain
from gateway.security import keys, pki
from gateway.wire import soap, xmlsafe

EXTRA_IND = ("ind-revocable", "ind-wrong-oin")


@dataclasses.dataclass
class Wus:
    chain: Chain
    pki_dir: Path
    url: str

    @property
    def rt(self) -> Runtime:
        """The gateway's runtime: the ``wus`` fixture starts the daemon before any test."""
        assert self.chain.daemon is not None
        return self.chain.daemon.rt

    def pair(self, name: str) -> keys.KeyPair:
        return keys.load_keypair(self.pki_dir / f"{name}-key.pem", self.pki_dir / f"{name}.pem")

    def simulator(self, name: str) -> IndSimulator:
        """An IND simulator that presents (TLS) and signs with the certificate ``name``."""
        gw = keys.load_trust("gateway", [self.pki_dir / "ca.pem"], [self.pki_dir / "gateway.pem"])
        return IndSimulator(key=self.pair(name), gateway_trust=gw, ca_file=str(self.pki_dir / "ca.pem"))

    def melding(self, seed: int) -> Any:
        return generate_meldingen(1, seed=seed)[0]

    def inbound(self, melding_id: str) -> list[tuple[str, str | None]]:
        """(outcome, fault_code) of every inbound row for this meldingId, oldest first."""
        rows = self.rt.store.query(
            "SELECT outcome, fault_code FROM inbound WHERE message_key = :k ORDER BY id", {"k": melding_id})
        return [(r[0], r[1]) for r in rows]

    def refusals(self) -> list[str]:
        """The fault codes of the refusals in the delivery log, oldest first (a refusal before the
        signature is checked has no message key: nothing unverified is trusted)."""
        rows = self.rt.store.query(
            "SELECT fault_code FROM inbound WHERE outcome = 'refused' ORDER BY id")
        return [r[0] for r in rows]


def fault_code(body: bytes) -> tuple[str | None, str | None]:
    """(faultcode, detail/code) of a SOAP fault."""
    fault = soap.split(xmlsafe.parse(body)).payload
    return fault.findtext("faultcode"), fault.findtext("detail/code")


@pytest.fixture(scope="module")
def wus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wus]:
    directory = tmp_path_factory.mktemp("wus")
    pki_dir = directory / "pki"
    ind_certs = [str(pki_dir / "ind.pem"), *(str(pki_dir / f"{n}.pem") for n in EXTRA_IND)]
    chain = start_chain(directory, dsn=f"sqlite:///{directory / 'gateway.db'}", start=False,
                        crl_next_update_seconds=1.0,
                        overrides={"partners": {"ind": {"certificate_files": ind_certs}},
                                   "revocation": {"ocsp_interval_seconds": 0.5}})
    pki.issue(pki_dir, "ind-revocable", common_name="ind")
    pki.issue(pki_dir, "ind-wrong-oin", common_name="ind", oin=pki.OINS["duo"])
    chain.start_daemon(drain_seconds=5.0)
    assert chain.daemon is not None
    yield Wus(chain, pki_dir, chain.ind_endpoint)
    chain.stop()


@pytest.fixture
def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)
