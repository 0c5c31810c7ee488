"""An immutable, compiled rule set with its routing index.

Routing is required for correctness: a rule only sees events of its logsource (product, and
category/service when the rule sets them). Inside a logsource, rules are indexed by a cheap
*discriminator* computed from their condition — a field value the event must have for the rule to
possibly match (exact value of a field, or the basename of ``process.executable`` for
``Image|endswith: /curl`` style rules) — so that an event meets only the rules it could match.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from agent.detection.matcher import Leaf, Lowered, Node, Tree
from agent.detection.rule import CorrelationRule, DetectionRule, Rule
from agent.events import LogSource

BASENAME_FIELDS = frozenset({"process.executable", "process.parent.executable", "file.path"})
MAX_ROUTES = 1024

Discriminator = tuple[str, str, frozenset[str]]  # (field, kind "eq"|"base", values)


def discriminator(tree: Tree) -> Discriminator | None:
    """A (field, kind, values) that every matching event satisfies, or ``None``."""
    if isinstance(tree, Leaf):
        return _leaf_discriminator(tree)
    if tree.op == "not":
        return None
    subs = [discriminator(a) for a in tree.args]
    if tree.op == "and":
        known = [s for s in subs if s is not None]
        return min(known, key=lambda d: len(d[2])) if known else None
    if any(s is None for s in subs):
        return None
    keys = {(s[0], s[1]) for s in subs if s is not None}
    if len(keys) != 1:
        return None
    name, kind = next(iter(keys))
    return (name, kind, frozenset().union(*(s[2] for s in subs if s is not None)))


def _leaf_discriminator(leaf: Leaf) -> Discriminator | None:
    if leaf.cased:
        return None
    pairs = leaf.values if leaf.kind == "set" else [(leaf.kind, v) for v in leaf.values]
    if leaf.field in BASENAME_FIELDS:
        bases = set()
        for kind, value in pairs:
            if kind not in ("eq", "suffix") or not isinstance(value, str) or "/" not in value:
                return None
            base = value.rsplit("/", 1)[1]
            if not base:
                return None
            bases.add(base)
        return (leaf.field, "base", frozenset(bases))
    if all(kind == "eq" and isinstance(value, str) for kind, value in pairs) and pairs:
        return (leaf.field, "eq", frozenset(v for _, v in pairs))
    return None


def event_keys(kind: str, value: Any) -> Iterator[str]:
    """The index keys of one lowered field value (each element of a list)."""
    items = (value,) if isinstance(value, str) else (value or ())
    for item in items:
        yield item.rsplit("/", 1)[-1] if kind == "base" else item


@dataclass(frozen=True, slots=True)
class Route:
    """The detection rules an event of one logsource can meet."""

    always: tuple[DetectionRule, ...]
    indexes: tuple[tuple[str, str, dict[str, tuple[DetectionRule, ...]]], ...]

    @property
    def empty(self) -> bool:
        return not self.always and not self.indexes

    def candidates(self, low: Lowered) -> list[DetectionRule]:
        out = list(self.always)
        for name, kind, table in self.indexes:
            value = low[name]
            if value is None:
                continue
            if value.__class__ is str:
                hit = table.get(value.rsplit("/", 1)[-1] if kind == "base" else value)
                if hit:
                    out.extend(hit)
            else:
                seen: set[int] = set()
                for key in event_keys(kind, value):
                    for rule in table.get(key, ()):
                        if id(rule) not in seen:
                            seen.add(id(rule))
                            out.append(rule)
        return out


def _applies(rule_ls: tuple[str | None, str | None, str | None], ls: LogSource) -> bool:
    return all(want is None or want == have for want, have in zip(rule_ls, ls, strict=True))


@dataclass(frozen=True)
class Ruleset:
    detections: tuple[DetectionRule, ...] = ()
    correlations: tuple[CorrelationRule, ...] = ()
    _routes: dict[LogSource, Route] = field(default_factory=dict, repr=False, compare=False)
    by_id: dict[str, Rule] = field(default_factory=dict, repr=False, compare=False)
    consumers: dict[str, tuple[CorrelationRule, ...]] = field(
        default_factory=dict, repr=False, compare=False
    )
    _active: tuple[DetectionRule, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for rule in self.rules():
            self.by_id[rule.id] = rule
        users: dict[str, list[CorrelationRule]] = {}
        for corr in self.correlations:
            for rid in dict.fromkeys(corr.rules):
                users.setdefault(rid, []).append(corr)
        self.consumers.update({k: tuple(v) for k, v in users.items()})
        # Rules that neither alert nor feed a correlation need not be evaluated.
        active = tuple(d for d in self.detections if d.output or d.id in self.consumers)
        object.__setattr__(self, "_active", active)

    def rules(self) -> list[Rule]:
        """Detection rules then correlation rules."""
        return [*self.detections, *self.correlations]

    def __len__(self) -> int:
        return len(self.detections) + len(self.correlations)

    def route(self, logsource: LogSource) -> Route:
        route = self._routes.get(logsource)
        if route is None:
            route = self._build_route(logsource)
            if len(self._routes) < MAX_ROUTES:
                self._routes[logsource] = route
        return route

    def _build_route(self, logsource: LogSource) -> Route:
        always: list[DetectionRule] = []
        tables: dict[tuple[str, str], dict[str, list[DetectionRule]]] = {}
        for rule in self._active:
            if not _applies(rule.logsource, logsource):
                continue
            disc = discriminator(rule.tree)
            if disc is None:
                always.append(rule)
                continue
            table = tables.setdefault((disc[0], disc[1]), {})
            for value in sorted(disc[2]):
                table.setdefault(value, []).append(rule)
        indexes = tuple(
            (name, kind, {k: tuple(v) for k, v in table.items()})
            for (name, kind), table in tables.items()
        )
        return Route(tuple(always), indexes)


def describe_tree(tree: Tree) -> str:
    """Short human form of a compiled condition (``rules list -v``)."""
    if isinstance(tree, Leaf):
        return f"{tree.field}:{tree.kind}"
    inner = f" {tree.op} ".join(describe_tree(a) for a in tree.args)
    return f"not ({inner})" if isinstance(tree, Node) and tree.op == "not" else f"({inner})"
