"""The import graph of agent.collectors: no cycles, and the data flow the layout promises.

Built from the source with :mod:`ast` (every ``import`` statement, ``TYPE_CHECKING`` ones
included: a cycle hidden behind ``TYPE_CHECKING`` is still a layout defect), over the whole
``agent`` package so that a cycle through another package (``agent.capture.builder`` →
registry → ``agent.capture.builder``) is found too.
"""

from __future__ import annotations

import ast
from pathlib import Path

AGENT = Path(__file__).resolve().parents[2] / "agent"
COLLECTORS = "agent.collectors"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(AGENT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in AGENT.rglob("*.py")}


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import sub`` imports the submodule when one has that name
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        out.update(t for t in targets if t in known and t != name)
    return out


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(name, path, known) for name, path in known.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_imports_of_the_collectors() -> None:
    graph = _graph()
    assert "agent.collectors.registry" in graph["agent.supervisor"]
    assert "agent.collectors.host" in graph["agent.collectors.registry"]
    assert "agent.collectors.host.process.collector" in graph["agent.collectors.host"]


def test_no_import_cycle_touches_agent_collectors() -> None:
    cycles = [c for c in _cycles(_graph()) if any(m.startswith(COLLECTORS) for m in c)]
    assert cycles == []


def test_parsers_depend_on_nothing_but_parsers_and_events() -> None:
    graph = _graph()
    for name, deps in graph.items():
        if name.startswith(f"{COLLECTORS}.parsers"):
            outside = {d for d in deps if d.startswith("agent.")
                       and not d.startswith(f"{COLLECTORS}.parsers") and d != "agent.events"}
            assert outside == set(), name


def test_only_the_supervisor_uses_the_registry() -> None:
    users = {name for name, deps in _graph().items() if f"{COLLECTORS}.registry" in deps}
    assert users == {"agent.supervisor"}


def test_collector_packages_do_not_import_each_other() -> None:
    """host/ and logs/ meet only in base (and parsers, which logs use): one folder per change."""
    for name, deps in _graph().items():
        for mine, other in (("host", "logs"), ("logs", "host")):
            if name.startswith(f"{COLLECTORS}.{mine}"):
                assert not any(d.startswith(f"{COLLECTORS}.{other}") for d in deps), name
