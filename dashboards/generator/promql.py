"""Which metric names and label names a PromQL expression uses (a tokenizer, not a full parser).

Used by the dashboard tests to check every query against the agent's metric catalogue and
against the list of bounded labels. It understands what appears in dashboards and alert rules:
strings, label matchers (``{a="b", __name__="m"}``), range and subquery brackets, durations,
``offset``/``@``, grouping clauses (``by``/``without``/``on``/``ignoring``/``group_left``/
``group_right`` with their label lists), function calls, keywords, numbers and Grafana
variables (``$instance``, ``${job}``, ``$__rate_interval``). Anything else is a
:class:`PromQLSyntaxError` naming the position, so a new construct fails loudly instead of being
silently skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<var>\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*)
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+(?![A-Za-z0-9_:]))
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>==|!=|=~|!~|>=|<=|[-+*/%^<>=(){}\[\],:@])
    """,
    re.VERBOSE,
)

# Binary and modifier keywords (PromQL keywords are case-insensitive).
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
# Aggregation operators are keywords: ``sum by (a) (x)`` has no metric called ``sum``.
_AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
    "topk", "quantile", "limitk", "limit_ratio",
}


class PromQLSyntaxError(ValueError):
    def __init__(self, expr: str, pos: int, reason: str) -> None:
        super().__init__(f"{reason} at offset {pos}: {expr[max(0, pos - 20):pos + 20]!r}")
        self.pos = pos


@dataclass
class Usage:
    """Metric names and label names referenced by one expression."""

    metrics: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokens(expr: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise PromQLSyntaxError(expr, pos, f"unexpected character {expr[pos]!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    return out


def usage(expr: str) -> Usage:
    """Metric and label names used by ``expr``."""
    toks = _tokens(expr)
    found = Usage()
    i = 0
    depth_brackets = 0
    while i < len(toks):
        tok = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if tok.text == "[":
            depth_brackets += 1
        elif tok.text == "]":
            depth_brackets -= 1
            if depth_brackets < 0:
                raise PromQLSyntaxError(expr, tok.pos, "unbalanced ']'")
        elif depth_brackets:
            pass  # durations, variables and ':' of a range or subquery
        elif tok.text == "{":
            i = _matchers(expr, toks, i, found)
            continue
        elif tok.kind == "ident":
            low = tok.text.lower()
            if low in _GROUPING:
                if nxt is not None and nxt.text == "(":
                    i = _label_list(expr, toks, i + 1, found)
                    continue
                if low not in ("group_left", "group_right"):
                    raise PromQLSyntaxError(expr, tok.pos, f"{tok.text} without a label list")
            elif low in _KEYWORDS or low in _AGGREGATIONS:
                pass
            elif nxt is not None and nxt.text == "(":
                pass  # a function or aggregation
            else:
                found.metrics.add(tok.text)
        i += 1
    if depth_brackets:
        raise PromQLSyntaxError(expr, len(expr), "unbalanced '['")
    depth = 0
    for tok in toks:
        depth += (tok.text == "(") - (tok.text == ")")
        if depth < 0:
            raise PromQLSyntaxError(expr, tok.pos, "unbalanced ')'")
    if depth:
        raise PromQLSyntaxError(expr, len(expr), "unbalanced '('")
    return found


def _matchers(expr: str, toks: list[_Tok], i: int, found: Usage) -> int:
    """Consume ``{label op "value", ...}`` starting at ``toks[i] == '{'``; return next index."""
    i += 1
    while i < len(toks) and toks[i].text != "}":
        name = toks[i]
        if name.kind != "ident":
            raise PromQLSyntaxError(expr, name.pos, "expected a label name")
        if i + 2 >= len(toks) or toks[i + 1].text not in ("=", "!=", "=~", "!~"):
            raise PromQLSyntaxError(expr, name.pos, "expected a label matcher operator")
        value = toks[i + 2]
        if value.kind not in ("string", "var"):
            raise PromQLSyntaxError(expr, value.pos, "expected a quoted label value")
        if name.text == "__name__":
            if toks[i + 1].text != "=" or value.kind != "string":
                raise PromQLSyntaxError(expr, name.pos, "__name__ must be matched exactly")
            found.metrics.add(value.text[1:-1])
        else:
            found.labels.add(name.text)
        i += 3
        if i < len(toks) and toks[i].text == ",":
            i += 1
    if i >= len(toks):
        raise PromQLSyntaxError(expr, len(expr), "unclosed '{'")
    return i + 1


def _label_list(expr: str, toks: list[_Tok], i: int, found: Usage) -> int:
    """Consume ``(a, b)`` starting at ``toks[i] == '('``; return next index."""
    i += 1
    while i < len(toks) and toks[i].text != ")":
        tok = toks[i]
        if tok.kind != "ident":
            raise PromQLSyntaxError(expr, tok.pos, "expected a label name in a grouping list")
        found.labels.add(tok.text)
        i += 1
        if i < len(toks) and toks[i].text == ",":
            i += 1
    if i >= len(toks):
        raise PromQLSyntaxError(expr, len(expr), "unclosed grouping list")
    return i + 1


_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(?P<expr>.*),)?\s*(?P<label>\w+)\s*\)\s*$", re.S)
_LEGEND_LABEL = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def variable_usage(query: str) -> Usage:
    """Usage of a Grafana Prometheus variable query (``label_values(expr, label)`` or PromQL)."""
    m = _LABEL_VALUES.match(query)
    if m is None:
        return usage(query)
    found = usage(m.group("expr")) if m.group("expr") else Usage()
    found.labels.add(m.group("label"))
    return found


def legend_labels(legend: str) -> set[str]:
    """Labels a Grafana legend format (``{{instance}} {{sink}}``) displays."""
    return set(_LEGEND_LABEL.findall(legend))
