"""The house's rule of direction (docs/DESIGN.md), checked over the import graph.

- A partner package (``adapters/<partner>/``) imports only the core's lowest floor and its own
  modules: never another partner, the store, the routes, delivery, rules, archive, ops, cli or
  the wiring.
- Only the routes and the wiring import partner packages.
- No import circles.

Every import counts, also one inside a function. (house-rewrite: skip)
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PARTNERS = ("ind", "duo", "cjib")
WIRING = ("gateway.app", "gateway.daemon", "gateway.sandbox", "gateway.cli")
#: What a partner package may never import (a module or a package and everything under it).
PARTNER_FORBIDDEN = ("gateway.core.store", "gateway.runtime", "gateway.routes", "gateway.delivery", "gateway.rules",
                     "gateway.archive", "gateway.ops", "gateway.mapping", *WIRING)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    files = sorted([*ROOT.glob("gateway/**/*.py"), *ROOT.glob("adapters/**/*.py")])
    return {_module_name(p): p for p in files}


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported module of this project: line of the first import}."""
    modules = _modules()
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges: dict[str, int] = {}
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    package = name.split(".") if is_package else name.split(".")[:-1]
                    package = package[: len(package) - (node.level - 1)]
                    base = ".".join([*package, base] if base else package)
                # "from gateway.wire import soap" imports the module gateway.wire.soap
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]  # gateway.core.store.Store -> gateway.core.store
                if target and target != name and target.split(".")[0] in ("gateway", "adapters"):
                    edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _partner_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "adapters" and parts[1] in PARTNERS else None


def _where(graph: dict[str, dict[str, int]], a: str, b: str) -> str:
    return f"{a} imports {b} ({_modules()[a].relative_to(ROOT)}:{graph[a][b]})"


def partner_violations(graph: dict[str, dict[str, int]]) -> list[str]:
    out = []
    for module, edges in graph.items():
        partner = _partner_of(module)
        if partner is None:
            continue
        for target in edges:
            other = _partner_of(target)
            if other is not None and other != partner:
                out.append(_where(graph, module, target) + ": a partner package imports another partner")
            elif any(_under(target, f) for f in PARTNER_FORBIDDEN):
                out.append(_where(graph, module, target) + ": a partner package imports above the core's floor")
    return out


def partner_importers(graph: dict[str, dict[str, int]]) -> list[str]:
    """Modules other than the routes and the wiring that import a partner package."""
    out = []
    for module, edges in graph.items():
        if module.startswith("adapters") or _under(module, "gateway.routes") or any(_under(module, w) for w in WIRING):
            continue
        for target in edges:
            if _partner_of(target) is not None:
                out.append(_where(graph, module, target) + ": only the routes and the wiring may name partners")
    return out


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(_one_cycle(graph, set(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _one_cycle(graph: dict[str, dict[str, int]], component: set[str]) -> list[str]:
    start = min(component)
    path, seen = [start], {start}
    while True:
        nxt = min(w for w in graph[path[-1]] if w in component)
        if nxt in seen:
            return path[path.index(nxt):] + [nxt]
        path.append(nxt)
        seen.add(nxt)


def test_the_graph_sees_every_module_and_imports_inside_functions() -> None:
    graph = import_graph()
    assert "adapters.ind.server" in graph and "gateway.routes.ind_to_duo" in graph
    # gateway.daemon imports the partner clients inside functions only
    assert "adapters.duo.client" in graph["gateway.daemon"]


def test_a_partner_package_imports_no_other_partner_nor_anything_above_the_floor() -> None:
    problems = partner_violations(import_graph())
    assert not problems, "\n".join(problems)


def test_only_the_routes_and_the_wiring_name_partners() -> None:
    problems = partner_importers(import_graph())
    assert not problems, "\n".join(problems)


def test_no_import_circles() -> None:
    graph = import_graph()
    found = cycles(graph)
    assert not found, "\n".join(
        "import circle: " + " -> ".join(c) + "\n  " + "\n  ".join(_where(graph, a, b) for a, b in zip(c, c[1:], strict=False))
        for c in found)


def test_the_checks_catch_what_they_are_for() -> None:
    graph = {m: dict(e) for m, e in import_graph().items()}
    graph["adapters.duo.simulator"]["adapters.ind.simulator"] = 1
    graph["adapters.cjib.codec"]["gateway.core.store"] = 1
    graph["gateway.core.models"]["adapters.ind.codec"] = 1
    assert any("adapters.duo.simulator imports adapters.ind.simulator" in p for p in partner_violations(graph))
    assert any("adapters.cjib.codec imports gateway.core.store" in p for p in partner_violations(graph))
    assert any("gateway.core.models imports adapters.ind.codec" in p for p in partner_importers(graph))
    graph = {m: dict(e) for m, e in import_graph().items()}
    graph["gateway.core.models"]["gateway.core.errors"] = 1
    graph["gateway.core.errors"]["gateway.core.models"] = 1
    assert ["gateway.core.errors", "gateway.core.models", "gateway.core.errors"] in cycles(graph)
