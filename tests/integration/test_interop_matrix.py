"""docs/interop.md's matrix of peers is the list of what the interoperability tests prove.

Each interop test module declares ``MATRIX``: rows of (peer, profile, direction, settings, result,
test function). The table between the matrix markers in docs/interop.md must hold exactly those
rows, and every named test must exist; the tests themselves check each row's result. A case added
to a test without a row (or a row without its test) fails here.
"""

from __future__ import annotations

from tests.integration import test_interop_wss4j, test_interop_xmlsec1
from tests.paths import REPO

DOC = REPO / "docs" / "interop.md"
MODULES = (test_interop_xmlsec1, test_interop_wss4j)
BEGIN, END = "<!-- matrix:begin -->", "<!-- matrix:end -->"


def documented_rows() -> list[tuple[str, ...]]:
    text = DOC.read_text(encoding="utf-8")
    table = text[text.index(BEGIN) + len(BEGIN): text.index(END)]
    rows = []
    for line in table.strip().splitlines()[2:]:  # after the header and its rule
        cells = tuple(cell.strip().strip("`") for cell in line.strip().strip("|").split("|"))
        rows.append(cells)
    return rows


def declared_rows() -> list[tuple[str, ...]]:
    return [(*row[:5], f"{module.__name__.rsplit('.', 1)[1]}::{row[5]}") for module in MODULES
            for row in module.MATRIX]


def test_every_named_test_exists():
    for module in MODULES:
        for row in module.MATRIX:
            assert callable(getattr(module, row[5], None)), f"{module.__name__} has no {row[5]}"


def test_the_document_shows_exactly_the_tested_rows():
    assert documented_rows() == declared_rows(), "\n" + "\n".join(matrix_markdown())


def matrix_markdown() -> list[str]:
    """The table as it belongs in docs/interop.md (printed when the test fails)."""
    lines = ["| Peer | Profile | Direction | Settings | Result | Test |", "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join((*row[:5], f"`{row[5]}`")) + " |" for row in declared_rows()]
    return lines
