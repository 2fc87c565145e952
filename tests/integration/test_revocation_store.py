"""The CRL cache (gateway/core/sql/006_revocation.sql) on both backends, and the refresher that fills it."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

from gateway.core.config import Config
from gateway.core.observability import Metrics, get_logger
from gateway.delivery.revocation import RevocationRefresher
from gateway.security import keys, pki, sandbox_ca
from gateway.security.revocation import Revocation
from gateway.wire.server import serve_in_thread


def test_crl_cache_keeps_the_last_good_crl_and_the_last_failure(store: Any) -> None:
    store.crl_put("http://ca/crl", b"\x30\x01", fetched_at=100.0, next_update=160.0)
    store.crl_failed("http://ca/crl", "ConnectError: refused", at=170.0)
    store.crl_failed("http://other/crl", "HTTP 503", at=171.0)
    rows = {r["url"]: r for r in store.crl_rows()}
    assert rows["http://ca/crl"]["crl"] == b"\x30\x01" and rows["http://ca/crl"]["next_update"] == 160.0
    assert rows["http://ca/crl"]["last_error"] == "ConnectError: refused"
    assert rows["http://other/crl"]["crl"] is None and rows["http://other/crl"]["fetched_at"] is None
    store.crl_put("http://ca/crl", b"\x30\x02", fetched_at=200.0, next_update=260.0)
    again = {r["url"]: r for r in store.crl_rows()}["http://ca/crl"]
    assert again["crl"] == b"\x30\x02" and again["last_error"] is None and again["attempted_at"] == 200.0


class _Rt:
    def __init__(self, store: Any, revocation: Revocation) -> None:
        self.store = store
        self.revocation = revocation
        self.config = Config.model_validate({"revocation": {"retry_seconds": 1.0, "timeout_seconds": 2.0, "ocsp_interval_seconds": 0}})
        self.metrics = Metrics()
        self.log = get_logger("test")


def test_refresher_fetches_over_http_caches_and_a_restart_starts_from_the_cache(store: Any, tmp_path: Path) -> None:
    ca = sandbox_ca.SandboxCA(tmp_path, next_update_seconds=30)
    with serve_in_thread(ca) as server:
        pki.init(tmp_path, ca_url=server.url)
        trust = keys.load_trust("ind", [tmp_path / "ca.pem"], [tmp_path / "ind.pem"])
        sandbox_ca.revoke(tmp_path, "ind")
        rt = _Rt(store, Revocation([trust], policies={}, grace_seconds=0))
        refresher = RevocationRefresher(rt)
        assert refresher.refresh_due() == 1 and ca.served["crl"] == 1
        assert refresher.refresh_due() == 0  # not due before nextUpdate
        row = store.crl_rows()[0]
        # Between rounds it sleeps until the CRL's nextUpdate (30 s here), not a tick at a time.
        now = dt.datetime.now(dt.UTC).timestamp()
        assert 25 <= refresher.seconds_to_next(now) <= row["next_update"] - now + 0.001
        assert row["url"] == pki.crl_url(server.url) and row["crl"] and row["last_error"] is None
    # The CA is gone now: a new process starts from the cache and still knows the revocation.
    restarted = _Rt(store, Revocation([trust], policies={}, grace_seconds=0))
    RevocationRefresher(restarted).load_cached()
    assert restarted.revocation.status(trust.certificates[0], dt.datetime.now(dt.UTC).timestamp()) == "revoked"
    later = RevocationRefresher(restarted)
    assert later.refresh_due(now=row["next_update"] + 1) == 1  # due at nextUpdate; the fetch fails
    failed = store.crl_rows()[0]
    assert failed["last_error"] and failed["crl"] == row["crl"]
    # After a failure it looks again after retry_seconds (1 s), and never sooner than a tick.
    assert later.seconds_to_next(row["next_update"] + 1) == 1.0


def test_a_reload_wakes_the_refresher_at_once(store: Any, tmp_path: Path) -> None:
    ca = sandbox_ca.SandboxCA(tmp_path, next_update_seconds=3600)
    with serve_in_thread(ca) as server:
        pki.init(tmp_path, ca_url=server.url)
        ind = keys.load_trust("ind", [tmp_path / "ca.pem"], [tmp_path / "ind.pem"])
        rt = _Rt(store, Revocation([], policies={}, grace_seconds=0))
        refresher = RevocationRefresher(rt)
        refresher.start()
        try:
            assert refresher.seconds_to_next(dt.datetime.now(dt.UTC).timestamp()) == 60.0  # nothing watched
            rt.revocation.retarget([ind], {})
            deadline = dt.datetime.now(dt.UTC).timestamp() + 5
            while ca.served["crl"] == 0 and dt.datetime.now(dt.UTC).timestamp() < deadline:
                threading.Event().wait(0.05)
            assert ca.served["crl"] == 1  # fetched within seconds, not after the 60 s sleep
        finally:
            refresher.stop()
