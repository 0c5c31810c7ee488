"""Sliding event-time windows for Sigma correlation rules.

One :class:`CorrelationState` per correlation rule keeps a bounded LRU of groups (``group-by``
values → :class:`_Group`). Each group holds the events of its window ``(end - timespan, end]`` as
``(timestamp, payload)`` pairs — no fixed buckets, so a burst straddling a boundary is still one
window. After every event the condition is evaluated: the rule *fires* once when it becomes true,
further events while it stays true are *updates*, and it re-arms when it turns false. ``lt``/``lte``
conditions can only be decided once a window has elapsed, so they are evaluated by :meth:`tick`
(driven by event time in tests, wall time in the daemon). Idle groups expire; groups beyond
``max_groups`` are evicted oldest-first and counted.

This is the straightforward implementation of every correlation type. The engine evaluates
event_count and value_count rules without timers with :mod:`agent.detection.counting` instead
(its hot path); tests hold the two to the same firings on random streams.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.detection.codegen import number
from agent.detection.rule import CorrelationRule, CorrelationType
from agent.events import Event


@dataclass(slots=True)
class Firing:
    """The condition of one group is true: a new alert (``opened``) or more of the same."""

    key: tuple[Any, ...]
    names: tuple[str, ...]
    window_start: float
    count: int
    value: float
    opened: bool

    @property
    def group(self) -> dict[str, Any]:
        """Group-by event field → value."""
        return dict(zip(self.names, self.key, strict=True))


def insertion_index(count: int, ts: float, stamp: Callable[[int], float]) -> int:
    """Where an event at ``ts`` goes among ``count`` entries in time order (``stamp(j)``: the
    timestamp of entry ``j``), after those of equal time.

    Gallops back from the newest entry, then bisects: a late event lands near the end, and even
    a flood's long window costs O(log n) probes, never a scan per event.
    """
    lo, hi, step = 0, count, 1
    while step <= count:
        j = count - step
        if stamp(j) <= ts:
            lo = j + 1
            break
        hi = j
        step *= 2
    while lo < hi:
        mid = (lo + hi) // 2
        if stamp(mid) > ts:
            hi = mid
        else:
            lo = mid + 1
    return lo


class _Group:
    __slots__ = ("armed", "counts", "first", "last", "queue", "seq", "total")

    def __init__(self, ts: float, steps: int) -> None:
        self.queue: deque[Any] = deque()  # (timestamp, payload), or bare timestamps
        self.counts: dict[Any, int] = {}
        self.total = 0.0
        self.armed = True
        self.first = ts
        self.last = ts
        self.seq: list[float | None] | None = [None] * steps if steps else None


_UNHASHABLE = frozenset({list, dict, set, bytearray})


def _hashable(value: Any) -> Any:
    if isinstance(value, list | dict | set | bytearray):
        return str(value)
    return value


class CorrelationState:
    def __init__(self, rule: CorrelationRule) -> None:
        self.rule = rule
        self.groups: OrderedDict[tuple[Any, ...], _Group] = OrderedDict()
        self.evictions = 0
        self._steps = len(rule.rules) if rule.type is CorrelationType.TEMPORAL_ORDERED else 0
        self._counted = rule.type in (CorrelationType.VALUE_COUNT, CorrelationType.TEMPORAL)
        self._summed = rule.type in (CorrelationType.VALUE_SUM, CorrelationType.VALUE_AVG)
        self._distinct = rule.type is CorrelationType.VALUE_COUNT
        self._bare = rule.type is CorrelationType.EVENT_COUNT
        self._timer = rule.has_timer
        # Alerts name the group by the event fields of the first referenced rule.
        self._names = rule.group_fields[rule.rules[0]]

    def __len__(self) -> int:
        return len(self.groups)

    # ------------------------------------------------------------------ events

    def observe(self, matched: list[str], event: Event) -> Firing | None:
        """Add an event that matched the base rules ``matched`` (ids, in rule order)."""
        rule = self.rule
        fields = event.fields
        key = tuple(map(fields.get, rule.group_fields[matched[0]]))
        if None in key:
            return None  # like SIEM "by" clauses: events without the group-by fields are ignored
        try:
            group = self.groups.get(key)
        except TypeError:  # a list/dict value: group by its text
            key = tuple(map(_hashable, key))
            group = self.groups.get(key)
        ts = event.timestamp
        payload: Any = None
        if self._distinct:
            payload = fields.get(rule.value_field[matched[0]])
            if payload is None:
                return None
            if payload.__class__ in _UNHASHABLE:
                payload = str(payload)
        elif self._summed:
            payload = number(fields.get(rule.value_field[matched[0]]))
            if payload is None:
                return None
        if group is None:
            group = _Group(ts, self._steps)
            self.groups[key] = group
            if len(self.groups) > rule.options.max_groups:
                self.groups.popitem(last=False)
                self.evictions += 1
        else:
            self.groups.move_to_end(key)
        if rule.type is CorrelationType.TEMPORAL:
            for rid in matched:
                self._add(group, ts, rid)
        else:
            self._add(group, ts, payload)
        if group.seq is not None:
            self._advance_sequence(group, matched, ts)
        if ts > group.last:  # noqa: PLR1730 - hot path, no max() call
            group.last = ts
        if self._timer:
            return None
        return self._evaluate(key, group, group.last)

    def _stamp(self, item: Any) -> float:
        return float(item if self._bare else item[0])

    def _add(self, group: _Group, ts: float, payload: Any) -> None:
        queue = group.queue
        item = ts if self._bare else (ts, payload)
        if not queue or self._stamp(queue[-1]) <= ts:
            queue.append(item)
        else:  # late event (within the allowance): keep the queue sorted
            queue.insert(insertion_index(len(queue), ts, lambda j: self._stamp(queue[j])), item)
        if self._counted:
            group.counts[payload] = group.counts.get(payload, 0) + 1
        elif self._summed:
            group.total += payload

    def _advance_sequence(self, group: _Group, matched: list[str], ts: float) -> None:
        seq = group.seq
        assert seq is not None
        span = self.rule.timespan
        steps = self.rule.rules
        for k in sorted((steps.index(rid) for rid in matched), reverse=True):
            if k == 0:
                seq[0] = ts
            else:
                start = seq[k - 1]
                if start is not None and ts - start <= span:
                    seq[k] = start

    def _expire(self, group: _Group, end: float) -> None:
        limit = end - self.rule.timespan
        queue = group.queue
        while queue and self._stamp(queue[0]) <= limit:
            if self._bare:
                queue.popleft()
                continue
            payload: Any = queue.popleft()[1]
            if self._counted:
                left = group.counts[payload] - 1
                if left:
                    group.counts[payload] = left
                else:
                    del group.counts[payload]
            elif self._summed:
                group.total -= payload
        if group.seq is not None:
            group.seq = [s if s is not None and s > limit else None for s in group.seq]

    def _measure(self, group: _Group) -> tuple[bool, float]:
        rule = self.rule
        kind = rule.type
        if kind is CorrelationType.EVENT_COUNT:
            value = float(len(group.queue))
        elif kind is CorrelationType.VALUE_COUNT:
            value = float(len(group.counts))
        elif kind is CorrelationType.VALUE_SUM:
            value = group.total
        elif kind is CorrelationType.VALUE_AVG:
            if not group.queue:
                return False, 0.0
            value = group.total / len(group.queue)
        elif kind is CorrelationType.TEMPORAL:
            seen = frozenset(group.counts)
            value = float(len(seen))
            if rule.expression is not None:
                return rule.expression(seen), value
            if rule.op is None:
                return len(seen) == len(set(rule.rules)), value
        else:  # temporal_ordered
            assert group.seq is not None
            return group.seq[-1] is not None, float(sum(s is not None for s in group.seq))
        return rule.condition_met(value), value

    def _evaluate(self, key: tuple[Any, ...], group: _Group, end: float) -> Firing | None:
        self._expire(group, end)
        met, value = self._measure(group)
        if not met:
            group.armed = True
            return None
        opened = group.armed
        group.armed = False
        start = self._stamp(group.queue[0]) if group.queue else end - self.rule.timespan
        return Firing(key, self._names, start, len(group.queue), value, opened)

    # ------------------------------------------------------------------ timers

    def tick(
        self, now: float, late_allowance: float, event_now: float | None = None
    ) -> list[Firing]:
        """Evaluate timer conditions (lt/lte) at ``now`` and expire idle groups.

        Idle means idle in *event* time (``event_now``, the newest event seen; default ``now``):
        a backlog of old events read after a restart must not lose its windows to wall time.
        """
        out: list[Firing] = []
        span = self.rule.timespan
        if self.rule.has_timer:
            for key, group in list(self.groups.items()):
                if now - group.first >= span:
                    firing = self._evaluate(key, group, now)
                    if firing is not None and firing.opened:
                        out.append(firing)
        idle_before = (now if event_now is None else min(now, event_now)) - span - late_allowance
        while self.groups:
            key, group = next(iter(self.groups.items()))
            if group.last > idle_before:
                break
            if self.rule.has_timer and group.armed and now - group.first < span:
                break
            del self.groups[key]
        return out
