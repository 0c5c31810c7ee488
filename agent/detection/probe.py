"""Candidate selection: the rules of a route an event could match, from its index.

:func:`prober` turns a :class:`~agent.detection.ruleset.Route` into one closure per engine. Each
indexed field is probed once — its exact-value and basename tables and its substring index
together — and the result is memoised per field on the field's raw text: executables, parents
and users repeat even when command lines never do, so most events pay one dict lookup for them
and the index work (lower-casing, RE2 set match) only for their unique fields. Memos are
bounded in entries and text and start over when full.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.detection.matcher import Lowered
from agent.detection.rule import DetectionRule
from agent.detection.ruleset import Route, Substrings

Rules = tuple[DetectionRule, ...]
Prober = Callable[[Lowered], list[DetectionRule]]

MEMO_ENTRIES = 4096
MEMO_CHARS = 1 << 18
"""Text one field's memo keeps alive."""
MEMO_VALUE_CHARS = 4096
"""Longer values are probed every time."""


class _Field:
    """Everything the index knows about one field: value → candidate rules."""

    __slots__ = ("base", "chars", "eq", "memo", "name", "subs")

    def __init__(self, name: str) -> None:
        self.name = name
        self.eq: list[dict[str, Rules]] = []
        self.base: list[dict[str, Rules]] = []
        self.subs: list[Substrings] = []
        self.memo: dict[str, Rules] = {}
        self.chars = 0

    def probe(self, value: str | tuple[str, ...]) -> Rules:
        """Candidates for a lowered value (a tuple: any element)."""
        out: list[DetectionRule] = []
        for item in (value,) if value.__class__ is str else value:
            for table in self.eq:
                hit = table.get(item)
                if hit:
                    out += hit
            if self.base:
                name = item[item.rfind("/") + 1:]
                for table in self.base:
                    hit = table.get(name)
                    if hit:
                        out += hit
            for index in self.subs:
                for rules in index.hits(item):
                    out += rules
        return tuple(dict.fromkeys(out))

    def remember(self, raw: str, rules: Rules) -> None:
        size = len(raw)
        if size > MEMO_VALUE_CHARS:
            return
        if len(self.memo) >= MEMO_ENTRIES or self.chars + size > MEMO_CHARS:
            self.memo.clear()  # start over (see match_cache: FIFO on a dict degrades)
            self.chars = 0
        self.memo[raw] = rules
        self.chars += size


def prober(route: Route) -> Prober:
    """``low -> candidate rules`` for events of ``route`` (each rule at most once)."""
    by_name: dict[str, _Field] = {}
    for name, base, table in route.exact:
        entry = by_name.setdefault(name, _Field(name))
        (entry.base if base else entry.eq).append(table)
    for name, index in route.substrings:
        by_name.setdefault(name, _Field(name)).subs.append(index)
    probes = tuple(by_name.values())
    always = route.always

    def candidates(low: Lowered) -> list[DetectionRule]:
        fields = low.fields
        out = list(always)
        found = 0
        for probe in probes:
            raw = fields.get(probe.name)
            if raw is None:
                continue
            if raw.__class__ is str:
                hit = probe.memo.get(raw)
                if hit is None:
                    lowered = low[probe.name] = raw.lower()  # what Lowered would compute
                    hit = probe.probe(lowered)
                    probe.remember(raw, hit)
            else:  # numbers, booleans, lists: their text, every time
                value: Any = low[probe.name]
                if value is None:
                    continue
                hit = probe.probe(value)
            if hit:
                out += hit
                found += 1
        # A rule indexed under several fields may be hit more than once.
        return list(dict.fromkeys(out)) if found > 1 else out

    return candidates
