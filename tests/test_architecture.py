"""The shape of drpd's import graph (ARCHITECTURE.md), read from the sources.

Every ``import`` counts, also those inside functions and under
``TYPE_CHECKING``: a dependency is a dependency, whenever it is loaded.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "drpd"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in ROOT.rglob("*.py")}


def _imports(name: str) -> set[str]:
    """Every module (of drpd or not) that module ``name`` imports."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.add(sub if sub in MODULES else module)
    return found


GRAPH: dict[str, set[str]] = {name: _imports(name) for name in MODULES}


def _in(module: str, *parts: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in parts)


def _edges(sources: Iterable[str], targets: tuple[str, ...]) -> list[str]:
    return sorted(f"{src} -> {dst}" for src in sources for dst in GRAPH[src]
                  if _in(dst, *targets))


def _of(*packages: str) -> list[str]:
    return [m for m in MODULES if _in(m, *packages)]


def test_the_graph_was_read() -> None:
    assert "drpd.plugins.controller" in GRAPH["drpd.daemon"]
    assert "drpd.plugins.interface" in GRAPH["drpd.api.context"]


def test_no_import_cycle_inside_plugins() -> None:
    inside = {m: {d for d in GRAPH[m] if _in(d, "drpd.plugins") and d != "drpd.plugins"}
              for m in _of("drpd.plugins")}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(inside.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(inside):
        if node not in state:
            visit(node, [node])
    assert cycles == []


@pytest.mark.parametrize(("sources", "forbidden"), [
    # models imports nothing else of drpd
    (("drpd.models",), ("drpd.api", "drpd.store", "drpd.plugins", "drpd.cli", "drpd.bus",
                        "drpd.daemon", "drpd.metrics", "drpd.sdk", "drpd.providers",
                        "drpd.params", "drpd.content", "drpd.auth", "drpd.config")),
    (("drpd.store", "drpd.bus"), ("drpd.api", "drpd.plugins", "drpd.cli", "drpd.daemon")),
    (("drpd.sdk", "drpd.providers"), ("drpd.api", "drpd.store", "drpd.plugins", "drpd.daemon",
                                      "quart", "quart_trio", "hypercorn")),
    (("drpd.cli",), ("drpd.api", "drpd.store", "drpd.plugins", "drpd.daemon")),
    # below the API: metrics, plugins, the rest; only the daemon builds the API
    (("drpd.metrics", "drpd.plugins", "drpd.wire", "drpd.params", "drpd.content", "drpd.auth",
      "drpd.secure", "drpd.http11", "drpd.config", "drpd.static", "drpd.notify", "drpd.logs",
      "drpd.catalog", "drpd.client", "drpd.backup"), ("drpd.api", "drpd.daemon", "quart")),
    # the wire protocol module is light: both drpd and every provider import it
    (("drpd.wire",), ("drpd.plugins", "drpd.api", "drpd.store", "drpd.sdk", "trio")),
])
def test_no_lower_layer_imports_a_higher_one(sources: tuple[str, ...],
                                              forbidden: tuple[str, ...]) -> None:
    assert _edges(_of(*sources), forbidden) == []


def test_the_api_sees_the_plugin_side_only_through_its_typed_face() -> None:
    reached = {d for src in _of("drpd.api") for d in GRAPH[src] if _in(d, "drpd.plugins")}
    assert reached == {"drpd.plugins.interface"}
    # and the face itself is only types: models, nothing that runs plugins
    assert _edges(["drpd.plugins.interface"], ("drpd.plugins", "drpd.store", "trio")) == []


def test_a_supervisor_knows_nothing_of_its_owner() -> None:
    owners = ("drpd.plugins.controller", "drpd.plugins.providers", "drpd.plugins.actions",
              "drpd.plugins.server_api", "drpd.plugins.left", "drpd.store", "drpd.api",
              "drpd.auth", "drpd.config", "drpd.params")
    assert _edges(["drpd.plugins.supervisor", "drpd.plugins.spec", "drpd.plugins.host",
                   "drpd.plugins.publisher"], owners) == []


def test_the_wire_protocol_is_spelled_once() -> None:
    literals = ("/api-plugin/v4", "/api-server-plugin/v4", "/api-plugin-server/v4")
    spelled = []
    for name, path in MODULES.items():
        if name == "drpd.wire":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(owner.body[0].value) for owner in ast.walk(tree)
                      if isinstance(owner, ast.Module | ast.ClassDef | ast.FunctionDef
                                    | ast.AsyncFunctionDef)
                      and owner.body and isinstance(owner.body[0], ast.Expr)}
        spelled += [f"{name}:{node.lineno}" for node in ast.walk(tree)
                    if isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and id(node) not in docstrings and any(lit in node.value for lit in literals)]
    assert spelled == []


def test_the_generic_router_names_no_prefix() -> None:
    """Per-prefix behaviour lives in ``api/kind_rules.py`` (and hooks other
    parts register), never in branches of the generic router (issue 15)."""
    import re

    from drpd.models.kinds import KINDS

    source = (Path(__file__).parent.parent / "drpd" / "api" / "objects.py").read_text()
    assert not re.findall(r"prefix\s*[!=]=|[!=]=\s*[\w.]*prefix\b", source)
    named = sorted({p for p in KINDS if p != "params" and f'"{p}"' in source})
    assert named == [], f"objects.py names prefixes {named}: move that into kind_rules.py"
    # "params" only as the sub-resource's name (/<prefix>/<key>/params)
    assert source.count('"params"') == 1 and 'sub[0] == "params"' in source
