"""Metrics that modules register on first use belong to the runtime's own registry."""
from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry, Gauge

from gateway.core.observability import Metrics


def _make(r: CollectorRegistry) -> Gauge:
    return Gauge("gateway_test_extra", "test gauge", registry=r)


def test_each_metrics_object_gets_its_own_gauge_even_at_a_reused_address() -> None:
    # A cache keyed by id(metrics) handed a new Metrics the gauge of a freed one whenever
    # CPython put it at the same address; the value then went to a registry nobody reads.
    addresses = set()
    for n in range(30):
        m = Metrics()
        addresses.add(id(m))
        m.extra("test", _make).set(n)
        assert m.registry.get_sample_value("gateway_test_extra") == n
        del m
        gc.collect()
    assert len(addresses) < 30  # the loop did meet a reused address, so the case above was exercised


def test_the_same_name_gives_the_same_metric() -> None:
    m = Metrics()
    assert m.extra("test", _make) is m.extra("test", _make)
