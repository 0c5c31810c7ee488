"""Turn the intermediate form of :mod:`agent.detection.matcher` into one fast predicate.

Nested closures, with the per-leaf work pushed into C where possible: one frozenset lookup for
equality alternatives, one literal alternation (``re``, plain literals only, so no backtracking)
for prefix/substring alternatives, RE2 called directly for wildcards and ``|re``. A predicate
takes ``(fields, low)``: the event's flat field dict and its :class:`Lowered` view.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from typing import Any

import re2 as _re2  # google-re2: the linear-time guarantee; a declared dependency, no fallback
from sigma.types import CompareOperators

from agent.detection.matcher import STRING_KINDS, Leaf, Lowered, Tree, text

Predicate = Callable[[dict[str, Any], Lowered], Any]

def regex_test(compiled: Any, full: bool = False) -> Callable[[str], bool]:
    """A fast yes/no test of an RE2 pattern (search, or fullmatch when ``full``).

    Calls the RE2 binding directly on UTF-8 bytes instead of going through the wrapper, which
    computes match offsets we do not need.
    """
    inner = getattr(compiled, "_regexp", None)
    anchor_type = getattr(_re2, "_Anchor", None)
    if inner is None or anchor_type is None:  # stdlib re, or an unknown binding version
        method = compiled.fullmatch if full else compiled.search
        return lambda s: method(s) is not None
    anchor = anchor_type.ANCHOR_BOTH if full else anchor_type.UNANCHORED
    match = inner.Match
    null = (-1, -1)

    def test(s: str) -> bool:
        b = s.encode("utf-8", "surrogatepass")
        return bool(match(anchor, b, 0, len(b))[0] != null)
    return test


# ---------------------------------------------------------------------------- code generation


def compile_tree(tree: Tree) -> Predicate:
    if isinstance(tree, Leaf):
        return _compile_leaf(tree)
    preds = [compile_tree(a) for a in tree.args]
    if tree.op == "not":
        inner = preds[0]
        return lambda f, low: not inner(f, low)
    if tree.op == "and":
        return _chain(preds, all_of=True)
    return _chain(preds, all_of=False)


def _chain(preds: list[Predicate], all_of: bool) -> Predicate:
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        a, b = preds
        if all_of:
            return lambda f, low: a(f, low) and b(f, low)
        return lambda f, low: a(f, low) or b(f, low)
    if len(preds) == 3:
        a, b, c = preds
        if all_of:
            return lambda f, low: a(f, low) and b(f, low) and c(f, low)
        return lambda f, low: a(f, low) or b(f, low) or c(f, low)
    ps = tuple(preds)
    if all_of:
        def every(f: dict[str, Any], low: Lowered) -> bool:
            for p in ps:  # noqa: SIM110 - a loop, not all(genexpr): no generator per call
                if not p(f, low):
                    return False
            return True
        return every

    def some(f: dict[str, Any], low: Lowered) -> bool:
        for p in ps:  # noqa: SIM110 - same
            if p(f, low):
                return True
        return False
    return some


_RE_SPECIAL = re.compile(r"([\\.^$|?*+()\[\]{}])")


def literal(value: str) -> str:
    """A literal as a pattern valid for both ``re`` and RE2 (only metacharacters escaped)."""
    return _RE_SPECIAL.sub(r"\\\1", value)


def _any_literal(
    prefixes: list[str], contains: list[str], suffixes: list[str]
) -> Callable[[str], Any]:
    """One C-level search for "starts with any / contains any / ends with any" (no backtracking:
    alternatives are plain literals)."""
    parts = []
    if prefixes:
        parts.append(r"\A(?:" + "|".join(map(literal, prefixes)) + ")")
    if contains:
        parts.append("(?:" + "|".join(map(literal, contains)) + ")")
    if suffixes:
        parts.append("(?:" + "|".join(map(literal, suffixes)) + r")\Z")
    search: Callable[[str], Any] = re.compile("|".join(parts), re.S).search
    return search


def _string_check(kind: str, values: list[Any]) -> Callable[[str], Any]:
    """One check on an already normalised string (C-level callables where possible)."""
    if kind == "eq":
        if len(values) == 1:
            return str(values[0]).__eq__
        return frozenset(values).__contains__
    if kind == "prefix":
        return _any_literal(values, [], [])
    if kind == "suffix":
        suf = tuple(values)
        return lambda s: s.endswith(suf)
    if kind == "contains":
        return _any_literal([], values, [])
    if kind == "glob":
        if any(p is None for p, _ in values):
            return lambda s: True
        tests = tuple(regex_test(p, full=True) for p, _ in values)
        if len(tests) == 1:
            return tests[0]
        return _first_true(tests)
    raise AssertionError(kind)


def _string_set_check(pairs: list[tuple[str, Any]]) -> Callable[[str], Any]:
    by_kind: dict[str, list[Any]] = {}
    for kind, value in pairs:
        by_kind.setdefault(kind, []).append(value)
    checks: list[Callable[[str], Any]] = []
    if "eq" in by_kind:
        checks.append(_string_check("eq", by_kind["eq"]))
    if any(k in by_kind for k in ("prefix", "contains", "suffix")):
        checks.append(_any_literal(by_kind.get("prefix", []), by_kind.get("contains", []),
                                   by_kind.get("suffix", [])))
    if "glob" in by_kind:
        checks.append(_string_check("glob", by_kind["glob"]))
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        c1, c2 = checks
        return lambda s: c1(s) or c2(s)
    return _first_true(tuple(checks))


def _first_true(checks: tuple[Callable[[str], Any], ...]) -> Callable[[str], bool]:
    """``s -> any(c(s) for c in checks)``, without a generator per call."""
    def test(s: str) -> bool:
        for check in checks:  # noqa: SIM110 - no generator per call (hot path)
            if check(s):
                return True
        return False
    return test


def _on_field(name: str, check: Callable[[str], Any], cased: bool) -> Predicate:
    """Apply a string check to a (lowered or exact) field value, any element of a list."""
    if cased:
        def exact(f: dict[str, Any], low: Lowered) -> bool:
            v = f.get(name)
            if isinstance(v, list | tuple):
                return any(t is not None and check(t) for t in map(text, v))
            t = text(v)
            return t is not None and check(t)
        return exact

    def folded(f: dict[str, Any], low: Lowered) -> Any:
        s = low[name]
        if s.__class__ is str:
            return check(s)
        if s is None:
            return False
        return any(check(x) for x in s)
    return folded


def _compile_leaf(leaf: Leaf) -> Predicate:
    name, kind = leaf.field, leaf.kind
    if kind == "set":
        return _on_field(name, _string_set_check(leaf.values), leaf.cased)
    if kind in STRING_KINDS:
        return _on_field(name, _string_check(kind, leaf.values), leaf.cased)
    if kind == "null":
        return lambda f, low: f.get(name) is None
    if kind == "exists":
        want = leaf.values[0]
        return lambda f, low: (f.get(name) is not None) is want
    if kind == "re":
        return _on_field(name, regex_test(leaf.values[0]), cased=True)
    if kind == "cidr":
        return _cidr(name, tuple(leaf.values))
    if kind == "cmp":
        return _compare(name, *leaf.values[0])
    if kind == "ref":
        return _fieldref(name, *leaf.values[0])
    raise AssertionError(kind)


def _elements(value: Any) -> tuple[Any, ...]:
    """A field value as the values a test is applied to: any element of a list matches."""
    if isinstance(value, list | tuple):
        return tuple(value)
    return (value,)


def _cidr(name: str, nets: tuple[Any, ...]) -> Predicate:
    def one(v: Any) -> bool:
        if not isinstance(v, str):
            return False
        try:
            ip = ipaddress.ip_address(v)
        except ValueError:
            return False
        return any(ip.version == n.version and ip in n for n in nets)

    def match(f: dict[str, Any], low: Lowered) -> bool:
        v = f.get(name)
        if v.__class__ is str:
            return one(v)
        return isinstance(v, list | tuple) and any(one(x) for x in v)
    return match


_CMP: dict[CompareOperators, Callable[[float, float], bool]] = {
    CompareOperators.LT: lambda a, b: a < b,
    CompareOperators.LTE: lambda a, b: a <= b,
    CompareOperators.GT: lambda a, b: a > b,
    CompareOperators.GTE: lambda a, b: a >= b,
    CompareOperators.NEQ: lambda a, b: a != b,
}


_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def number(value: Any) -> float | None:
    """Numeric value of an event field: numbers, or text that is exactly a decimal number
    (ASCII digits, optional sign, fraction and exponent; no spaces, underscores, ``inf`` or
    ``nan``, which Python's ``float()`` would accept); never booleans. A number must be finite:
    an integer too large for a float (``json.loads`` accepts 400 digits) or an infinite float
    (``Infinity`` in JSON) is no number, like its text ``1e999`` — never an exception that
    would drop the whole event for every rule."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            return None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and len(value) < 64 and _DECIMAL.fullmatch(value):
        n = float(value)
        return n if math.isfinite(n) else None
    return None


def _compare(name: str, op: CompareOperators, limit: float) -> Predicate:
    test = _CMP[op]

    def one(v: Any) -> bool:
        n = number(v)
        return n is not None and test(n, limit)

    def match(f: dict[str, Any], low: Lowered) -> bool:
        v = f.get(name)
        if isinstance(v, list | tuple):
            return any(one(x) for x in v)
        return one(v)
    return match


def _fieldref(name: str, other: str, mode: str) -> Predicate:
    """Compare two fields (lowered); with lists, any element of one against any of the other."""
    def one(a: str, b: str) -> bool:
        if mode == "prefix":
            return a.startswith(b)
        if mode == "suffix":
            return a.endswith(b)
        if mode == "contains":
            return b in a
        return a == b

    def match(f: dict[str, Any], low: Lowered) -> bool:
        a, b = low[name], low[other]
        if a is None or b is None:
            return False
        if a.__class__ is str and b.__class__ is str:
            return one(a, b)
        return any(one(x, y) for x in _elements(a) for y in _elements(b))
    return match
