"""Lower a Sigma detection (pySigma's parsed condition tree) into a small intermediate form.

The pySigma tree becomes :class:`Leaf` tests under ``and``/``or``/``not`` :class:`Node` s, which
:func:`simplify` flattens and folds (same-field string alternatives into one ``set`` leaf);
:mod:`agent.detection.codegen` turns the result into closures. :class:`Lowered` is the per-event
view that lower-cases each field value at most once.

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
import re
from dataclasses import dataclass
from typing import Any

import re2 as _re2  # google-re2: the linear-time guarantee; a declared dependency, no fallback
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.types import (
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
    if isinstance(value, SigmaBool | SigmaNumber):
        # a keyword is a substring of the message whatever its YAML type (`keywords: [6]`)
        word = text(value.boolean if isinstance(value, SigmaBool) else value.number)
        return Leaf(name, "contains" if keyword else "eq", [word])
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
        # pySigma: |startswith sets starts_with, |endswith ends_with, |contains both
        mode = ("contains" if value.starts_with and value.ends_with else
                "prefix" if value.starts_with else "suffix" if value.ends_with else "eq")
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
    try:
        return _re2.compile(pattern)
    except Exception as exc:
        reason = f"regex {pattern[:80]!r} cannot run in linear time (RE2: {exc})"
        raise Unsupported(reason) from None


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

STRING_KINDS = frozenset({"eq", "prefix", "suffix", "contains", "glob"})


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
        if isinstance(arg, Leaf) and arg.kind in STRING_KINDS:
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
