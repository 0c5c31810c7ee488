"""Compile a Sigma detection (pySigma's parsed condition tree) into one fast predicate.

The pySigma tree is first lowered into a small intermediate form (:class:`Leaf` nodes under
``And``/``Or``/``Not``), simplified (nested operators flattened, same-field string alternatives
folded into one set/prefix/suffix/substring test) and then turned into nested closures. A
predicate takes ``(fields, low)``: the event's flat field dict and a :class:`Lowered` view that
lower-cases each field value at most once per event.

Matching semantics (the Sigma specification leaves these to backends):

* strings compare case-insensitively; ``*``/``?`` are wildcards, escaped ones are literals;
  ``|cased`` compares exactly; numbers and booleans match their text (``'true'`` matches ``True``);
* a list-valued event field (``process.args``) matches when any element matches;
* ``null`` matches an absent or ``None`` field, never ``''``; ``|exists`` tests presence;
* ``|re`` searches unanchored with RE2 (linear time; patterns RE2 cannot run are rejected);
* ``|cidr`` tests IP membership; ``|gt``… compare numerically; ``|fieldref`` compares two fields;
* keywords (values without a field) are substrings of ``message``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.types import (
    CompareOperators,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SpecialChars,
)

from agent.detection.fields import MESSAGE

try:
    import re2 as _re2
except ImportError:  # pragma: no cover - google-re2 ships with pysigma 2
    _re2 = None

Predicate = Callable[[dict[str, Any], "Lowered"], bool]


class Unsupported(Exception):
    """The rule is valid Sigma but uses something this engine cannot evaluate (→ rejection)."""


def text(value: Any) -> str | None:
    """Canonical case-sensitive text of an event value, the same everywhere (index + matcher)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def lowered(value: Any) -> str | tuple[str, ...] | None:
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, list | tuple):
        items = (text(v) for v in value)
        return tuple(t.lower() for t in items if t is not None)
    t = text(value)
    return None if t is None else t.lower()


class Lowered(dict[str, Any]):
    """Lower-cased field values of one event, computed on first use."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        super().__init__()
        self.fields = fields

    def __missing__(self, key: str) -> str | tuple[str, ...] | None:
        value = self.fields.get(key)
        if value.__class__ is str:
            out: str | tuple[str, ...] | None = value.lower()
        elif value is True:
            out = "true"
        elif value is False:
            out = "false"
        else:
            out = lowered(value)
        self[key] = out
        return out


# ---------------------------------------------------------------------------- intermediate form


@dataclass(slots=True)
class Leaf:
    """One test on one field; ``kind`` is eq/prefix/suffix/contains/glob/set (strings),
    null, exists, re, cidr, cmp or ref."""

    field: str
    kind: str
    values: list[Any] = dataclasses.field(default_factory=list)
    cased: bool = False


@dataclass(slots=True)
class Node:
    op: str  # and | or | not
    args: list[Node | Leaf]


Tree = Node | Leaf


def lower_tree(cond: Any) -> Tree:
    """pySigma condition tree → intermediate form (raises :class:`Unsupported`)."""
    if isinstance(cond, ConditionAND):
        return Node("and", [lower_tree(a) for a in cond.args])
    if isinstance(cond, ConditionOR):
        return Node("or", [lower_tree(a) for a in cond.args])
    if isinstance(cond, ConditionNOT):
        return Node("not", [lower_tree(cond.args[0])])
    if isinstance(cond, ConditionFieldEqualsValueExpression):
        return _leaf(cond.field, cond.value, keyword=False)
    if isinstance(cond, ConditionValueExpression):
        return _leaf(MESSAGE, cond.value, keyword=True)
    raise Unsupported(f"condition element {type(cond).__name__} is not supported")


def _leaf(name: str, value: Any, keyword: bool) -> Tree:
    if isinstance(value, SigmaExpansion):
        return Node("or", [_leaf(name, v, keyword) for v in value.values])
    if isinstance(value, SigmaString):
        if value.contains_placeholder():
            raise Unsupported("uses placeholders (%name%) that need values from a pipeline")
        return _string_leaf(name, value, keyword)
    if isinstance(value, SigmaBool):
        return Leaf(name, "eq", ["true" if value.boolean else "false"])
    if isinstance(value, SigmaNumber):
        return Leaf(name, "eq", [text(value.number)])
    if isinstance(value, SigmaNull):
        return Leaf(name, "null")
    if isinstance(value, SigmaExists):
        return Leaf(name, "exists", [bool(value.exists)])
    if isinstance(value, SigmaRegularExpression):
        return Leaf(name, "re", [_regex(value)])
    if isinstance(value, SigmaCIDRExpression):
        return Leaf(name, "cidr", [value.network])
    if isinstance(value, SigmaCompareExpression):
        return Leaf(name, "cmp", [(value.op, float(value.number.number))])
    if isinstance(value, SigmaFieldReference):
        mode = "prefix" if value.starts_with else "suffix" if value.ends_with else "eq"
        return Leaf(name, "ref", [(value.field, mode)])
    raise Unsupported(f"value type {type(value).__name__} is not supported")


def _string_leaf(name: str, value: SigmaString, keyword: bool) -> Leaf:
    cased = isinstance(value, SigmaCasedString)
    parts: list[Any] = [
        p if isinstance(p, SpecialChars) else (str(p) if cased else str(p).lower())
        for p in value.s
    ]
    if keyword:
        if not parts or parts[0] is not SpecialChars.WILDCARD_MULTI:
            parts.insert(0, SpecialChars.WILDCARD_MULTI)
        if parts[-1] is not SpecialChars.WILDCARD_MULTI:
            parts.append(SpecialChars.WILDCARD_MULTI)
    multi = SpecialChars.WILDCARD_MULTI
    n = len(parts)
    if n == 0:
        return Leaf(name, "eq", [""], cased)
    if all(isinstance(p, str) for p in parts):
        return Leaf(name, "eq", ["".join(parts)], cased)
    if n == 1 and parts[0] is multi:
        return Leaf(name, "glob", [(None, "")], cased)  # '*' matches any present value
    if n == 2 and parts[0] is multi and isinstance(parts[1], str):
        return Leaf(name, "suffix", [parts[1]], cased)
    if n == 2 and parts[1] is multi and isinstance(parts[0], str):
        return Leaf(name, "prefix", [parts[0]], cased)
    if n == 3 and parts[0] is multi and parts[2] is multi and isinstance(parts[1], str):
        return Leaf(name, "contains", [parts[1]], cased)
    pattern = "".join(
        ".*" if p is multi else "." if p is SpecialChars.WILDCARD_SINGLE else re.escape(str(p))
        for p in parts
    )
    longest = max((p for p in parts if isinstance(p, str)), key=len, default="")
    return Leaf(name, "glob", [(_compile_regex("(?s)" + pattern), longest)], cased)


def _regex(value: SigmaRegularExpression) -> Any:
    flags = "".join(
        f for flag, f in (
            (SigmaRegularExpressionFlag.IGNORECASE, "i"),
            (SigmaRegularExpressionFlag.MULTILINE, "m"),
            (SigmaRegularExpressionFlag.DOTALL, "s"),
        ) if flag in value.flags
    )
    pattern = str(value.regexp)
    return _compile_regex(f"(?{flags}){pattern}" if flags else pattern)


def _compile_regex(pattern: str) -> Any:
    if _re2 is None:  # pragma: no cover - bounded fallback without RE2
        if len(pattern) > 512:
            raise Unsupported("regex longer than 512 characters and RE2 is not installed")
        return re.compile(pattern)
    try:
        return _re2.compile(pattern)
    except Exception as exc:
        reason = f"regex {pattern[:80]!r} cannot run in linear time (RE2: {exc})"
        raise Unsupported(reason) from None


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


def leaves(tree: Tree) -> list[Leaf]:
    if isinstance(tree, Leaf):
        return [tree]
    return [leaf for arg in tree.args for leaf in leaves(arg)]


def referenced_fields(tree: Tree) -> list[str]:
    """Every event field a rule looks at, in first-use order."""
    names: dict[str, None] = {}
    for leaf in leaves(tree):
        names[leaf.field] = None
        if leaf.kind == "ref":
            names[leaf.values[0][0]] = None
    return list(names)


# ---------------------------------------------------------------------------- simplification

_STRING_KINDS = frozenset({"eq", "prefix", "suffix", "contains", "glob"})


def simplify(tree: Tree) -> Tree:
    if isinstance(tree, Leaf):
        return tree
    args = [simplify(a) for a in tree.args]
    if tree.op == "not":
        return Node("not", args)
    flat: list[Tree] = []
    for arg in args:
        if isinstance(arg, Node) and arg.op == tree.op:
            flat.extend(arg.args)
        else:
            flat.append(arg)
    if tree.op == "or":
        flat = _fold_or(flat)
    if len(flat) == 1:
        return flat[0]
    if tree.op == "and":
        flat.sort(key=_cost)
    return Node(tree.op, flat)


def _fold_or(args: list[Tree]) -> list[Tree]:
    """Merge same-field string leaves of an OR into one ``set`` leaf (values by kind)."""
    groups: dict[tuple[str, bool], Leaf] = {}
    out: list[Tree] = []
    for arg in args:
        if isinstance(arg, Leaf) and arg.kind in _STRING_KINDS:
            key = (arg.field, arg.cased)
            merged = groups.get(key)
            if merged is None:
                merged = Leaf(arg.field, "set", [], arg.cased)
                groups[key] = merged
                out.append(merged)
            merged.values.extend((arg.kind, v) for v in arg.values)
        else:
            out.append(arg)
    return [
        (Leaf(a.field, a.values[0][0], [a.values[0][1]], a.cased)
         if isinstance(a, Leaf) and a.kind == "set" and len(a.values) == 1 else a)
        for a in out
    ]


_KIND_COST = {"null": 0, "exists": 0, "eq": 1, "set": 2, "prefix": 2, "suffix": 2, "cmp": 3,
              "ref": 3, "contains": 4, "cidr": 6, "glob": 8, "re": 10}


def _cost(tree: Tree) -> int:
    if isinstance(tree, Leaf):
        return _KIND_COST.get(tree.kind, 5)
    return 10 + sum(_cost(a) for a in tree.args)


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
    ps = tuple(preds)
    if all_of:
        return lambda f, low: all(p(f, low) for p in ps)
    return lambda f, low: any(p(f, low) for p in ps)


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
        return lambda s: any(t(s) for t in tests)
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
    cs = tuple(checks)
    return lambda s: any(c(s) for c in cs)


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
    if kind in _STRING_KINDS:
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


def _cidr(name: str, nets: tuple[Any, ...]) -> Predicate:
    def match(f: dict[str, Any], low: Lowered) -> bool:
        v = f.get(name)
        if not isinstance(v, str):
            return False
        try:
            ip = ipaddress.ip_address(v)
        except ValueError:
            return False
        return any(ip.version == n.version and ip in n for n in nets)
    return match


_CMP: dict[CompareOperators, Callable[[float, float], bool]] = {
    CompareOperators.LT: lambda a, b: a < b,
    CompareOperators.LTE: lambda a, b: a <= b,
    CompareOperators.GT: lambda a, b: a > b,
    CompareOperators.GTE: lambda a, b: a >= b,
    CompareOperators.NEQ: lambda a, b: a != b,
}


def number(value: Any) -> float | None:
    """Numeric value of an event field (numbers or numeric strings; never booleans)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and len(value) < 64:
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _compare(name: str, op: CompareOperators, limit: float) -> Predicate:
    test = _CMP[op]

    def match(f: dict[str, Any], low: Lowered) -> bool:
        n = number(f.get(name))
        return n is not None and test(n, limit)
    return match


def _fieldref(name: str, other: str, mode: str) -> Predicate:
    def match(f: dict[str, Any], low: Lowered) -> bool:
        a, b = low[name], low[other]
        if not isinstance(a, str) or not isinstance(b, str):
            return False
        if mode == "prefix":
            return a.startswith(b)
        if mode == "suffix":
            return a.endswith(b)
        return a == b
    return match
