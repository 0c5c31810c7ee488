"""The packet path's modules import each other without cycles (issue 15: decode → traffic
state → analyzers → events, each layer importing only the ones below it).

Every ``import`` statement of every module under ``agent/netevents``, ``agent/netdecode`` and
``agent/capture`` counts, at any depth of the module (a function-local import is still an edge):
the graph is read with :mod:`ast`, not by importing, so a cycle Python happens to tolerate at
import time fails here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

AGENT = Path(__file__).resolve().parents[2] / "agent"
PACKAGES = ("netevents", "netdecode", "capture")


def _module_name(path: Path) -> str:
    parts = path.relative_to(AGENT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((AGENT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` that the file imports (``from pkg import mod`` names the
    module ``pkg.mod`` when that is one)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_packet_path_modules_import_without_cycles() -> None:
    modules = _modules()
    assert "agent.netevents.processor" in modules and "agent.netevents.analyzers.tcp" in modules
    graph = {name: _imports(path, name, modules) for name, path in modules.items()}
    assert "agent.netevents.state" in graph["agent.netevents.analyzers.tcp"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_a_cycle_is_found() -> None:
    """The checker itself: a two-module cycle and a longer one are reported."""
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_analyzers_do_not_import_the_processor() -> None:
    """Analyzers know nothing of the processor (nor of the bulk steps that drive them)."""
    modules = _modules()
    for name, path in modules.items():
        if name.startswith("agent.netevents.analyzers"):
            assert "agent.netevents.processor" not in _imports(path, name, modules), name
