"""Where the suite finds its files: everything inside this checkout, nothing beside it.

The partners' samples are vendored byte for byte under tests/fixtures/contracts/samples and pinned
by tests/fixtures/contracts/SHA256SUMS (``sha256sum -c`` format, paths relative to that
directory); the partners' schemas are vendored in xsd/ and pinned by xsd/SHA256SUMS.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONTRACTS = REPO / "tests" / "fixtures" / "contracts"
SAMPLES = CONTRACTS / "samples"
