"""Sliding event-time windows for Sigma correlation rules.

One :class:`CorrelationState` per correlation rule keeps a bounded LRU of groups (``group-by``
values → :class:`_Group`). A group's window is ``(end - timespan, end]`` where ``end`` is its
newest event — no fixed buckets, so a burst straddling a boundary is still one window. After every
event the condition is evaluated: the rule *fires* once when it becomes true, further events while
it stays true are *updates*, and it re-arms when it turns false. ``lt``/``lte`` conditions can only
be decided once a window has elapsed, so they are evaluated by :meth:`tick` (driven by event time
in tests, wall time in the daemon). Idle groups expire; groups beyond ``max_groups`` are evicted
oldest-first and counted.

A group's memory does not grow with the event rate — a flood into one group costs no more than a
trickle:

* event_count keeps only the newest timestamps its condition needs (:func:`count_cap`);
* value_count keeps each distinct value's newest timestamp (:func:`sight`, :func:`forget`);
  temporal keeps each referenced rule's;
* the alert's event count, and value_sum/value_avg's sum and number of values, are kept in
  one-second buckets (:func:`tally`): a second's events leave the window together, when the newest
  of them does (at most one second late, never early).

A late event (older than its group's newest, within the engine's late allowance) is also
placed in every window that contains it: :mod:`agent.detection.late_windows` evaluates the
windows ending at each event in ``[ts, ts + timespan)`` over the group's bounded history, and
temporal_ordered is always decided there, by timestamps (not by arrival).

This is the straightforward implementation of every correlation type. The engine evaluates
event_count and value_count rules without timers with :mod:`agent.detection.counting` instead
(its hot path); tests hold the two to the same firings on random streams.

(Over 400 lines on purpose: the window parts, the group table both states share — with its
checkpoint export/import — and the reference state work on the same group representation;
the JSON encoding and the bounds live in :mod:`agent.detection.state_codec`.)
"""

from __future__ import annotations

import heapq
import itertools
import math
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from collections.abc import Callable, MutableSequence, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Generic, TypeVar

from agent.detection import state_codec as codec
from agent.detection.codegen import number
from agent.detection.late_windows import (
    Entry,
    insert,
    late_windows,
    measure_for,
    ordered,
    record,
    window,
)
from agent.detection.matcher import text
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


# ---------------------------------------------------------------------- bounded window parts


def at_least(op: str | None, threshold: float) -> int | None:
    """``gt``/``gte`` on a count as "count >= k" (one comparison inline, no call), else None."""
    if not math.isfinite(threshold):
        return None
    if op == "gt":
        return math.floor(threshold) + 1
    if op in ("gte", None):
        return math.ceil(threshold)
    return None


def count_cap(op: str | None, threshold: float) -> int:
    """How many of a window's newest timestamps event_count keeps: enough to decide the
    condition, and exact whenever a group opens an alert.

    With ``count >= k`` (gt/gte) the condition holds exactly when the newest ``k`` events are in
    the window; otherwise the newest ``floor(threshold) + 1`` tell every operator (a count at or
    above that is more than the threshold). A group opens when its condition turns true one
    event (or one expiry) after it was false, when the window holds at most the cap, so the
    alert's count and window start are those of the full window. A SYN flood then costs ``k``
    timestamps per group, not one per packet. (An infinite threshold makes the count
    irrelevant: one timestamp.)
    """
    if not math.isfinite(threshold):
        return 1
    k = at_least(op, threshold)
    return max(1, k if k is not None else math.floor(threshold) + 1)


def insert_capped(queue: deque[float], ts: float) -> None:
    """Put a timestamp in its place in a time-ordered queue of at most ``maxlen`` (the newest)."""
    if len(queue) == queue.maxlen:  # full: only the newest ``cap`` events count
        if ts < queue[0]:
            return
        queue.popleft()
    queue.insert(insertion_index(len(queue), ts, queue.__getitem__), ts)


_ORDER = itertools.count()
_FIRST = itemgetter(0)


def sight(seen: OrderedDict[Any, float], late: list[Any], value: Any, ts: float,
          newest: float) -> None:
    """Record ``value`` at ``ts`` in ``seen`` (value → its newest timestamp, oldest first).

    A value's timestamp only moves forward. In-order sightings (``ts >= newest``, the group's
    newest event) keep ``seen`` in time order by moving the value to the end; a late one moves
    it to the end too and is remembered in the heap ``late`` so that :func:`forget` still expires
    it on time. The heap holds at most about twice the distinct values: stale entries are
    dropped when it grows beyond that.
    """
    old = seen.get(value)
    if old is not None and old >= ts:
        return
    seen[value] = ts
    seen.move_to_end(value)
    if ts < newest:
        heapq.heappush(late, (ts, next(_ORDER), value))
        if len(late) > 2 * len(seen) + 16:
            late[:] = [e for e in late if seen.get(e[2]) == e[0]]
            heapq.heapify(late)


def forget(seen: OrderedDict[Any, float], late: list[Any], limit: float) -> None:
    """Drop the values of ``seen`` whose newest timestamp is ``<= limit``.

    Every value in front of an in-order one is older than it, so the scan from the oldest end
    stops at the first value still in the window; values placed late are found through the heap.
    """
    while late and late[0][0] <= limit:
        ts, _, value = heapq.heappop(late)
        if seen.get(value) == ts:
            del seen[value]
    while seen:
        value = next(iter(seen))
        if seen[value] > limit:
            break
        del seen[value]


def tally(buckets: MutableSequence[list[Any]], ts: float, x: float) -> None:
    """Count an event (value ``x``) in its one-second bucket ``[second, newest, n, sum, oldest]``
    of ``buckets`` (in time order; a late event goes back to its second)."""
    second = ts // 1.0
    if buckets:
        last = buckets[-1]
        if last[0] < second:
            buckets.append([second, ts, 1, x, ts])
            return
        if last[0] != second:
            i = insertion_index(len(buckets), second, lambda j: buckets[j][0])
            if not i or buckets[i - 1][0] != second:
                buckets.insert(i, [second, ts, 1, x, ts])
                return
            last = buckets[i - 1]
        last[2] += 1
        last[3] += x
        if ts > last[1]:
            last[1] = ts
        elif ts < last[4]:
            last[4] = ts
        return
    buckets.append([second, ts, 1, x, ts])


def bucket_count(buckets: Sequence[list[Any]]) -> int:
    """Events in the buckets."""
    return sum(b[2] for b in buckets)


class _Group:
    __slots__ = ("armed", "buckets", "first", "history", "last", "late", "n", "queue", "seen",
                 "total")

    def __init__(self, ts: float, cap: int | None, seen: bool) -> None:
        # Parts a type does not use are shared empty containers, never written.
        bare = cap is not None
        # event_count: the newest timestamps
        self.queue: deque[float] = deque(maxlen=cap) if bare else _NO_QUEUE
        # value_count/temporal: value (rule id) → newest timestamp, and a heap of
        # (timestamp, order, value) placed late in ``seen``
        self.seen: OrderedDict[Any, float] = OrderedDict() if seen else _NO_VALUES
        self.late: list[Any] = [] if seen else _NO_LATE
        # the others: [second, newest, n, sum, oldest] per second of the window
        self.buckets: deque[list[Any]] = _NO_BUCKETS if bare else deque()
        self.n = 0  # events in the buckets
        self.total = 0.0  # sum of their values (value_sum/value_avg)
        self.armed = True
        self.first = ts
        self.last = ts
        # recent events, for the windows of late events (agent.detection.late_windows)
        self.history: list[Entry] = []


_NO_QUEUE: deque[float] = deque(maxlen=0)
_NO_VALUES: OrderedDict[Any, float] = OrderedDict()
_NO_LATE: list[Any] = []
_NO_BUCKETS: deque[list[Any]] = deque(maxlen=0)


def hashable(value: Any) -> Any:
    """A list, dict, set or bytearray field value counts (and groups) by its text."""
    if isinstance(value, list | dict | set | bytearray):
        return str(value)
    return value


def distinct(value: Any) -> Any:
    """What ``value_count`` counts: a scalar's text, as matching compares it (``22``, ``22.0``
    and ``"22"`` are one value, ``True`` is ``"true"`` and not ``1``); other values by
    :func:`hashable`. Python's own equality would merge ``True`` with ``1`` yet keep ``1``
    apart from ``"1"``."""
    if value.__class__ is str:
        return value
    t = text(value)
    return hashable(value) if t is None else t


G = TypeVar("G")

FRESH_RESERVE = 0.25
"""Share of a full group table kept for groups with one event (:class:`GroupTable`)."""


class GroupTable(ABC, Generic[G]):
    """The groups of one correlation rule, least recently used first, at most ``max_groups``
    (evictions are counted): what the reference and the counting state share.

    Eviction keeps the groups with evidence: a group that has had one event is *fresh*
    (:attr:`fresh`, oldest first); its second event makes it *kept*. When the table is full, a
    new group evicts the oldest fresh group as long as kept groups hold at most
    ``max_groups - reserve`` (``reserve`` = :data:`FRESH_RESERVE` of ``max_groups``, at least
    one), else the least recently used kept group. A spoofed-source flood — a new group per
    packet — then only churns the fresh groups: it cannot evict a scanner's group that already
    has two probes, however many addresses it forges (the engine's side of the packet path's
    new-source reserve, :mod:`agent.netevents.budgets`). It does evict single-probe groups
    quickly: a scanner slower than the flood's turnover of ``reserve`` fresh groups is not
    counted while the flood lasts (its own probes still pass the budgets).

    :meth:`export_groups` and :meth:`import_groups` carry the windows across a restart (the
    detection checkpoint, :mod:`agent.detection.checkpoint`), bounded by
    :mod:`agent.detection.state_codec`."""

    KIND = ""
    """Which representation the groups have: a checkpoint is restored only into the same."""

    def __init__(self, rule: CorrelationRule) -> None:
        self.rule = rule
        self.groups: OrderedDict[tuple[Any, ...], G] = OrderedDict()
        self.fresh: OrderedDict[tuple[Any, ...], None] = OrderedDict()
        """Keys of the groups that have had only one event, oldest first."""
        self.evictions = 0
        # (a rule is swapped in only with the same content: the same options)
        self._limit = limit = rule.options.max_groups
        self._kept_limit = limit - max(1, int(limit * FRESH_RESERVE))
        # Alerts name the group by the event fields of the first referenced rule.
        self._names = rule.group_names or rule.group_fields[rule.rules[0]]

    def __len__(self) -> int:
        return len(self.groups)

    def _find(self, matched: list[str], fields: dict[str, Any]
              ) -> tuple[tuple[Any, ...], G | None] | None:
        """``(key, group or None)`` of an event by the group-by fields of its first matched
        rule; ``None`` when one is missing: like SIEM "by" clauses, such events are ignored."""
        key = tuple(map(fields.get, self.rule.group_fields[matched[0]]))
        if None in key:
            return None
        try:
            return key, self.groups.get(key)
        except TypeError:  # a list/dict value: group by its text
            key = tuple(map(hashable, key))
            return key, self.groups.get(key)

    def _place(self, key: tuple[Any, ...], group: G | None, ts: float) -> G:
        """``group`` marked most recently used, or a new one (evicting the oldest if full)."""
        if group is not None:
            self.groups.move_to_end(key)
            self.fresh.pop(key, None)
            return group
        group = self._new_group(ts)
        self._open_group(key, group)
        return group

    def _open_group(self, key: tuple[Any, ...], group: G) -> None:
        """A new group, most recently used and fresh (evicting one of a full table)."""
        groups = self.groups
        groups[key] = group
        self.fresh[key] = None
        if len(groups) > self._limit:
            self._evict()

    def _evict(self) -> None:
        """Drop one group of a full table (see the class docstring)."""
        groups, fresh = self.groups, self.fresh
        if fresh and len(groups) - len(fresh) <= self._kept_limit:
            key, _ = fresh.popitem(last=False)
        else:  # kept groups over their share: the least recently used of them (at most
            # ``reserve`` fresh keys are skipped, fresh groups being then fewer than that)
            key = next(k for k in groups if k not in fresh)
        del groups[key]
        self.evictions += 1

    def _drop_idle(self, key: tuple[Any, ...]) -> None:
        """Drop an idle group."""
        del self.groups[key]
        self.fresh.pop(key, None)

    @abstractmethod
    def _new_group(self, ts: float) -> G:
        """An empty group whose first event is at ``ts``."""

    # ------------------------------------------------------------------ checkpoint

    def export_groups(self, budget: int) -> tuple[list[dict[str, Any]], int]:
        """The groups as JSON data, most recently used first until ``budget`` entries
        (:func:`~agent.detection.state_codec.size`) are used; returned oldest first, with how
        many groups were left out (beyond the budget, or holding a value JSON cannot keep)."""
        out: list[dict[str, Any]] = []
        used = 0
        groups = self.groups
        for key in reversed(groups):
            try:
                raw = self._export(groups[key])
                raw["k"] = codec.encode(key)
                if key in self.fresh:
                    raw["one"] = True
            except ValueError:
                continue
            n = codec.size(raw)
            if used + n > budget:
                break
            out.append(raw)
            used += n
        out.reverse()
        return out, len(groups) - len(out)

    def import_groups(self, raws: Any) -> tuple[int, int]:
        """Put exported groups back, oldest first (after a restart, before any event); returns
        ``(restored, refused)``. A group that does not read back whole is refused."""
        if not isinstance(raws, list):
            return 0, 1
        restored = refused = 0
        for raw in raws:
            try:
                key = codec.decode(raw["k"])
                if not isinstance(key, tuple) or len(key) != len(self._names):
                    raise ValueError("not a group key")
                group = self._import(raw)
            except (KeyError, TypeError, ValueError, IndexError):
                refused += 1
                continue
            self.groups[key] = group
            self.groups.move_to_end(key)
            self.fresh.pop(key, None)
            if raw.get("one") is True:  # fresh groups are never touched: LRU is age order
                self.fresh[key] = None
            if len(self.groups) > self._limit:
                self._evict()
            restored += 1
        return restored, refused

    @abstractmethod
    def _export(self, group: G) -> dict[str, Any]:
        """One group as JSON data (lists capped at ``ENTRIES_PER_LIST``, the newest kept)."""

    @abstractmethod
    def _import(self, raw: dict[str, Any]) -> G:
        """A group read back from :meth:`_export`'s data; raises on anything inconsistent."""


class CorrelationState(GroupTable["_Group"]):
    KIND = "reference"

    def __init__(self, rule: CorrelationRule, late_allowance: float = 5.0) -> None:
        super().__init__(rule)
        self._ids = rule.type in (CorrelationType.TEMPORAL, CorrelationType.TEMPORAL_ORDERED)
        self._keep = rule.timespan + late_allowance
        self._window_measure = measure_for(rule)
        self.unplaced = 0
        """Events refused because their timestamp cannot be placed in a window (NaN, huge)."""
        self._seen = rule.type in (CorrelationType.VALUE_COUNT, CorrelationType.TEMPORAL)
        self._summed = rule.type in (CorrelationType.VALUE_SUM, CorrelationType.VALUE_AVG)
        self._distinct = rule.type is CorrelationType.VALUE_COUNT
        self._bare = rule.type is CorrelationType.EVENT_COUNT
        threshold = rule.threshold if rule.threshold is not None else 1.0
        self._cap = count_cap(rule.op, threshold)
        self._timer = rule.has_timer

    def _new_group(self, ts: float) -> _Group:
        return _Group(ts, self._cap if self._bare else None, self._seen)

    def _export(self, group: _Group) -> dict[str, Any]:
        seen = sorted(((ts, v) for v, ts in group.seen.items()), key=_FIRST)
        return {
            "a": group.armed, "f": group.first, "l": group.last,
            "q": codec.newest(list(group.queue)),
            "s": [[ts, codec.encode(v)] for ts, v in codec.newest(seen)],
            "b": [list(b) for b in codec.newest(list(group.buckets))],
            "h": [[ts, codec.encode(p)] for ts, p in codec.newest(group.history)],
        }

    def _import(self, raw: dict[str, Any]) -> _Group:
        first, last = codec.stamp(raw["f"]), codec.stamp(raw["l"])
        group = self._new_group(first)
        group.last = last
        group.armed = bool(raw["a"])
        if self._bare:
            group.queue.extend(codec.stamps(raw["q"])[-self._cap:])
        if self._seen:  # in time order, so forget() needs no late heap
            for ts, value in codec.entries(raw["s"]):
                group.seen[value] = ts
        if not self._bare:
            group.buckets.extend(codec.bucket(b) for b in raw["b"])
            if any(a[0] >= b[0] for a, b in itertools.pairwise(group.buckets)):
                raise ValueError("buckets out of time order")
            group.n = sum(b[2] for b in group.buckets)
            group.total = sum(b[3] for b in group.buckets)
        history = codec.entries(raw["h"])
        for _, payload in history:
            if self._ids and not isinstance(payload, tuple):
                raise ValueError("not the rule ids of a temporal entry")
            if self._summed and (isinstance(payload, bool | str) or payload is None):
                raise ValueError("not the number of a value_sum/value_avg entry")
        group.history = history
        return group

    # ------------------------------------------------------------------ events

    def observe(self, matched: list[str], event: Event) -> Firing | None:
        """Add an event that matched the base rules ``matched`` (ids, in rule order)."""
        rule = self.rule
        fields = event.fields
        found = self._find(matched, fields)
        if found is None:
            return None
        key, existing = found
        ts = event.timestamp
        if not ts - rule.timespan < ts:  # NaN, or so large that the window has no length
            self.unplaced += 1
            return None
        payload: Any = None
        if self._distinct:
            payload = fields.get(rule.value_field[matched[0]])
            if payload is None:
                return None
            payload = distinct(payload)
        elif self._summed:
            payload = number(fields.get(rule.value_field[matched[0]]))
            if payload is None:
                return None
        group = self._place(key, existing, ts)
        late = ts < group.last
        entry = (ts, tuple(matched) if self._ids else payload)
        if late:
            insert(group.history, entry)
        else:
            record(group.history, entry, ts - self._keep)
        if ts > group.last - rule.timespan:  # else older than the window: nothing to count
            if rule.type is CorrelationType.TEMPORAL:
                for rid in matched:
                    self._add(group, ts, rid)
            else:
                self._add(group, ts, payload)
        if ts > group.last:  # noqa: PLR1730 - hot path, no max() call
            group.last = ts
        if self._timer:  # decided by tick(); keep only the window meanwhile
            self._expire(group, group.last)
            return None
        firing = self._evaluate(key, group, group.last)
        if firing is None and late:
            hit = late_windows(group.history, ts, rule.timespan, self._window_measure)
            if hit is not None:  # a window ending at or after the late event holds
                start, count, value = hit
                firing = Firing(key, self._names, start, count, value, group.armed)
        return firing

    def _add(self, group: _Group, ts: float, payload: Any) -> None:
        if self._bare:
            insert_capped(group.queue, ts)
            return
        if self._seen:
            sight(group.seen, group.late, payload, ts, group.last)
        x = payload if self._summed else 0.0
        tally(group.buckets, ts, x)
        group.n += 1
        group.total += x

    def _expire(self, group: _Group, end: float) -> None:
        limit = end - self.rule.timespan
        if self._bare:
            queue = group.queue
            while queue and queue[0] <= limit:
                queue.popleft()
            return
        if self._seen:
            forget(group.seen, group.late, limit)
        buckets = group.buckets
        while buckets and buckets[0][1] <= limit:
            bucket = buckets.popleft()
            group.n -= bucket[2]
            group.total -= bucket[3]
        if not buckets:
            group.total = 0.0  # no rounding residue left behind

    def _measure(self, group: _Group) -> tuple[bool, float]:
        rule = self.rule
        kind = rule.type
        if kind is CorrelationType.EVENT_COUNT:
            value = float(len(group.queue))
        elif kind is CorrelationType.VALUE_COUNT:
            value = float(len(group.seen))
        elif kind is CorrelationType.VALUE_SUM:
            value = group.total
        elif kind is CorrelationType.VALUE_AVG:
            if not group.n:
                return False, 0.0
            value = group.total / group.n
        elif kind is CorrelationType.TEMPORAL:
            seen = frozenset(group.seen)
            value = float(len(seen))
            if rule.expression is not None:
                return rule.expression(seen), value
            if rule.op is None:
                return len(seen) == len(set(rule.rules)), value
        else:  # temporal_ordered: by timestamps, over the group's recent events
            return ordered(rule.rules, window(group.history, group.last, rule.timespan))
        return rule.condition_met(value), value

    def _evaluate(self, key: tuple[Any, ...], group: _Group, end: float) -> Firing | None:
        self._expire(group, end)
        met, value = self._measure(group)
        if not met:
            group.armed = True
            return None
        opened = group.armed
        group.armed = False
        if self._bare:
            queue = group.queue
            start, count = (queue[0] if queue else end - self.rule.timespan), len(queue)
        else:
            buckets = group.buckets
            start = buckets[0][4] if buckets else end - self.rule.timespan
            count = group.n
        return Firing(key, self._names, start, count, value, opened)

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
            self._drop_idle(key)
        return out
