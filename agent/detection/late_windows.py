"""A group's recent events, to evaluate the windows a late event falls into (event time).

The correlation states keep exactly what the window ending at a group's *newest* event needs.
An event older than that newest one (late, within ``detection.late_allowance_seconds``) also
belongs to the windows ending at every event in ``[ts, ts + timespan)``: those are evaluated
here, by brute force over the group's *history* — its events of the last ``timespan + late
allowance`` seconds, in time order, at most :data:`HISTORY` of them (the newest; a busier group
evaluates late windows on those, its in-order windows stay exact). temporal_ordered, whose
condition depends on the order of timestamps, is always evaluated here.

An entry is ``(timestamp, payload)``: the payload is the distinct value (value_count), the
number (value_sum/value_avg), the tuple of matched rule ids (temporal types) or ``None``.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from agent.detection.rule import CorrelationRule, CorrelationType

HISTORY = 64
"""Events of one group kept for late windows (the newest)."""

Entry = tuple[float, Any]
_TS = itemgetter(0)


def record(history: list[Entry], entry: Entry, horizon: float) -> None:
    """Append an in-order entry and drop those at or before ``horizon`` (and beyond the cap)."""
    history.append(entry)
    if history[0][0] <= horizon:
        del history[: bisect.bisect_right(history, horizon, key=_TS)]
    if len(history) > HISTORY:
        del history[0]


def insert(history: list[Entry], entry: Entry) -> None:
    """Put a late entry in its place (after entries of equal time)."""
    history.insert(bisect.bisect_right(history, entry[0], key=_TS), entry)
    if len(history) > HISTORY:
        del history[0]


def window(history: Sequence[Entry], end: float, span: float) -> Sequence[Entry]:
    """The entries of ``(end - span, end]``."""
    lo = bisect.bisect_right(history, end - span, key=_TS)
    hi = bisect.bisect_right(history, end, key=_TS)
    return history[lo:hi]


Measure = Callable[[Sequence[Entry]], tuple[bool, float]]


def measure_for(rule: CorrelationRule) -> Measure:
    """The condition of ``rule`` over a window's entries: ``(met, value)``."""
    kind = rule.type
    test = rule.condition_met
    if kind is CorrelationType.EVENT_COUNT:
        return lambda es: (test(float(len(es))), float(len(es)))
    if kind is CorrelationType.VALUE_COUNT:
        def distinct(es: Sequence[Entry]) -> tuple[bool, float]:
            n = float(len({e[1] for e in es}))
            return test(n), n
        return distinct
    if kind is CorrelationType.VALUE_SUM:
        def total(es: Sequence[Entry]) -> tuple[bool, float]:
            s = float(sum(e[1] for e in es))
            return test(s), s
        return total
    if kind is CorrelationType.VALUE_AVG:
        def mean(es: Sequence[Entry]) -> tuple[bool, float]:
            if not es:
                return False, 0.0
            a = float(sum(e[1] for e in es)) / len(es)
            return test(a), a
        return mean
    if kind is CorrelationType.TEMPORAL:
        every = set(rule.rules)

        def present(es: Sequence[Entry]) -> tuple[bool, float]:
            seen = frozenset(rid for e in es for rid in e[1])
            if rule.expression is not None:
                return rule.expression(seen), float(len(seen))
            if rule.op is None:
                return seen >= every, float(len(seen))
            return test(float(len(seen))), float(len(seen))
        return present
    steps = tuple(rule.rules)
    return lambda es: ordered(steps, es)


def ordered(steps: Sequence[str], entries: Sequence[Entry]) -> tuple[bool, float]:
    """Whether distinct events matching ``steps`` occur in order of their timestamps (equal
    timestamps count as in order, whichever arrived first); value: the steps completed.

    Greedy over groups of equal time: completing more steps earlier never hurts, and inside a
    group of equal time the steps a group can extend are those with distinct events for each
    (a small bipartite matching)."""
    n, m = len(steps), len(entries)
    done = i = 0
    while i < m and done < n:
        ts = entries[i][0]
        j = i + 1
        while j < m and entries[j][0] == ts:
            j += 1
        if j == i + 1:  # the usual case: one event at this time fills at most one step
            if steps[done] in entries[i][1]:
                done += 1
        else:
            done += _extend(steps[done:], [e[1] for e in entries[i:j]])
        i = j
    return done == n, float(done)


def _extend(steps: Sequence[str], events: list[Any]) -> int:
    """How many of ``steps`` (from the first) events of one time can fill, one event each:
    a bipartite matching grown one step at a time by augmenting paths (O(steps x events) per
    step; events that match none of the steps are left out first)."""
    wanted = set(steps)
    events = [ids for ids in events if not wanted.isdisjoint(ids)]
    owner: dict[int, int] = {}

    def place(s: int, tried: set[int]) -> bool:
        for j, ids in enumerate(events):
            if j not in tried and steps[s] in ids:
                tried.add(j)
                if j not in owner or place(owner[j], tried):
                    owner[j] = s
                    return True
        return False

    k = 0
    while k < len(steps) and k < len(events) and place(k, set()):
        k += 1
    return k


def late_windows(history: Sequence[Entry], ts: float, span: float, measure: Measure
                 ) -> tuple[float, int, float] | None:
    """The first window containing a late event at ``ts`` whose condition holds, among the
    windows ending at each entry in ``[ts, ts + span)``: ``(start, count, value)`` or None."""
    ends = sorted({e[0] for e in history if ts <= e[0] < ts + span})
    for end in ends:
        es = window(history, end, span)
        met, value = measure(es)
        if met:
            return (es[0][0] if es else end), len(es), value
    return None
