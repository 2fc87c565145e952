"""Schemas are compiled safely when the first requests arrive in several threads at once.

libxml2 must not compile two schemas at the same time; the sandbox crashed (or answered 500 with
"Document is not valid XML Schema") when the first IND pushes hit the intake pool together.
"""

from __future__ import annotations

import threading

from gateway.security import c14n
from gateway.wire import xmlsafe

NAMES = [xmlsafe.IND_XSD, xmlsafe.DUO_XSD, None] * 4


def compile_all_at_once() -> tuple[list[object], list[BaseException]]:
    xmlsafe._compiled.cache_clear()
    c14n._compiled.cache_clear()
    barrier = threading.Barrier(len(NAMES))
    results: list[object] = []
    errors: list[BaseException] = []

    def compile_one(name: str | None) -> None:
        barrier.wait()
        try:
            results.append(c14n._schema() if name is None else xmlsafe.schema(name))
        except BaseException as exc:  # noqa: BLE001 - any failure is the finding
            errors.append(exc)

    threads = [threading.Thread(target=compile_one, args=(n,)) for n in NAMES]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def test_first_compiles_in_many_threads_at_once() -> None:
    for _ in range(5):
        results, errors = compile_all_at_once()
        assert errors == []
        assert len(results) == len(NAMES)
        assert len({id(r) for r in results}) == 3  # one compiled object per schema, shared
