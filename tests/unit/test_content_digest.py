"""content_digest must give the digest ``dataclasses.asdict`` gave: stored digests are compared with new ones."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from typing import Any

from adapters.duo.simulator import generate_vorderingen
from adapters.ind.simulator import generate_meldingen
from gateway.routes.common import content_digest


def _as_before(model: Any) -> str:
    return hashlib.sha256(json.dumps(dataclasses.asdict(model), sort_keys=True, default=str).encode()).hexdigest()


def test_the_digest_of_notifications_and_claims_is_unchanged() -> None:
    models: list[Any] = [*generate_meldingen(60, seed=11), *generate_vorderingen(60, 12, dt.date(2026, 11, 2))]
    assert all(content_digest(m) == _as_before(m) for m in models)


def test_the_digest_follows_the_content() -> None:
    first, second = generate_meldingen(2, seed=13)
    same = dataclasses.replace(first)
    assert content_digest(first) == content_digest(same) != content_digest(second)
