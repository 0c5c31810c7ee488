"""event_count and value_count correlations decided per event: the engine's hot path.

Same semantics as :class:`~agent.detection.correlation.CorrelationState`, which stays the
reference implementation of every correlation type (``tests/detection/test_counting.py`` runs
both on random streams and compares every firing), with a representation and code specialised
for counting:

* event_count: a group keeps the newest timestamps its condition needs in a deque;
* value_count: a group keeps each distinct value's newest timestamp in a dict set in place per
  event — the distinct count is its length — expired through a sorted snapshot rebuilt only
  when something can leave the window (:meth:`_Window.expire`), and the one-second buckets
  (:func:`~agent.detection.correlation.tally`) that give the alert's event count and window
  start. The reference keeps the same values in time order instead (an ``OrderedDict``); the
  tests compare what both keep.

Neither grows with the event rate: a flood into one group costs what a trickle does.

:meth:`CountingState.feeder` returns a closure that does all the work of an in-order event in
one call — group key, window update, condition — and returns what the event triggered without
building a :class:`~agent.detection.correlation.Firing` unless the group opens an alert: a group
whose condition stays true is returned as its key (the engine hands both to the alert books,
:meth:`~agent.detection.lifecycle.AlertBook.apply`, which alone know whether an alert is open).
Anything unusual (a new group, a late event, an unhashable value) goes through
:meth:`CountingState.observe`.
``lt``/``lte`` conditions need timers and stay with the reference state.

Under a spoofed-source flood nearly every group has one event: a value_count group that needs
two values starts *bare* (:class:`_Window`), holding that event only, and the feeder opens it
inline. (Over 400 lines on purpose: the window, its checkpoint form and the per-event closure
share one representation that is specialised for speed; splitting them would spread it.)
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from agent.detection import state_codec as codec
from agent.detection.correlation import (
    Firing,
    GroupTable,
    at_least,
    bucket_count,
    count_cap,
    insert_capped,
    tally,
)
from agent.detection.correlation import (
    distinct as distinct_value,
)
from agent.detection.keys import values_of
from agent.detection.late_windows import (
    HISTORY,
    Entry,
    insert,
    late_windows,
    measure_for,
    record,
)
from agent.detection.rule import OPERATORS, CorrelationRule, CorrelationType
from agent.events import Event

_INF = float("inf")

Feed = Callable[[Event], Firing | tuple[Any, ...] | None]
"""One in-order, not-late event that matched a base rule → a firing, the key of a group whose
condition stays true, or nothing (:data:`~agent.detection.lifecycle.Fired`)."""


def supports(rule: CorrelationRule) -> bool:
    """Rules :class:`CountingState` evaluates (the others use the reference state)."""
    return rule.type in (CorrelationType.EVENT_COUNT, CorrelationType.VALUE_COUNT) and not (
        rule.has_timer
    )


class _Window:
    """One group's window, compact: a spoofed-source flood keeps ``max_groups`` groups per rule,
    nearly all of one event (:class:`~agent.detection.correlation.GroupTable`).

    A group uses the parts of its rule's type; the others, and the parts not needed yet (the
    late heap, the expiry snapshot), are shared empty lists that are never written. A
    value_count group whose condition needs two values or more starts *bare*: its one event is
    ``first`` and nothing else is allocated; its second event :meth:`grow` s it into the full
    form (which then never shrinks back). Buckets are a list (a deque costs 760 bytes)."""

    __slots__ = ("armed", "buckets", "first", "front", "history", "late", "order", "queue",
                 "rebuilt", "seen")

    def __init__(self, cap: int | None, ts: float, bare: bool = False) -> None:
        counting = cap is not None
        self.queue: deque[float] = deque(maxlen=cap) if counting else _NO_QUEUE
        """event_count: the newest ``cap`` timestamps, in time order. The newest event never
        leaves the window, so the queue's last timestamp is the group's newest."""
        self.seen: dict[Any, float] = _NO_VALUES if counting or bare else {}
        """value_count: value → its newest timestamp in the window (set in place per event)."""
        self.order: list[tuple[float, Any]] = _NO_ORDER
        """value_count: ``seen`` as it was at the last rebuild, newest first (entries whose
        value was seen again since are stale); values seen in order since then are newer than
        ``rebuilt``."""
        self.rebuilt = ts
        self.late: list[Any] = _NO_ORDER
        """value_count: heap of values placed late in ``seen`` (its own list once used)."""
        self.buckets: list[list[Any]] = _NO_BUCKETS if counting or bare else []
        """value_count: one-second buckets ``[second, newest, n, 0.0, oldest]``; the last one
        holds the group's newest event (it never leaves the window)."""
        self.front = ts
        """value_count: nothing in ``seen`` or ``buckets`` leaves the window before this."""
        self.armed = True
        self.history: list[Entry] = _NO_ORDER if bare else []
        """recent ``(timestamp, value)``, for the windows of late events (late_windows)"""
        self.first: Entry | None = None
        """A bare group's one event ``(timestamp, value)``; None once grown (or not bare)."""

    def grow(self) -> None:
        """The full form of a bare group: as the first event left a full one."""
        assert self.first is not None
        ts, value = self.first
        self.first = None
        self.seen = {value: ts}
        self.buckets = [[ts // 1.0, ts, 1, 0.0, ts]]
        self.history = [(ts, value)]

    def kept(self) -> tuple[list[float], dict[Any, float], list[list[Any]]]:
        """What the group keeps (timestamps, values, buckets), bare or not (tests, export)."""
        if self.first is not None:
            ts, value = self.first
            return [], {value: ts}, [[ts // 1.0, ts, 1, 0.0, ts]]
        return list(self.queue), dict(self.seen), [list(b) for b in self.buckets]

    def sight(self, value: Any, ts: float, newest: float) -> None:
        """Record ``value`` at ``ts`` (late when older than the group's ``newest``)."""
        seen = self.seen
        old = seen.get(value)
        if old is not None and old >= ts:
            return
        seen[value] = ts
        if ts < newest:
            late = self.late
            if late is _NO_ORDER:
                late = self.late = []
            heapq.heappush(late, (ts, next(_ORDER), value))
            if len(late) > 2 * len(seen) + 16:  # stale entries: keep the current ones
                late[:] = [e for e in late if seen.get(e[2]) == e[0]]
                heapq.heapify(late)
            self.front = -_INF

    def expire(self, limit: float, newest: float) -> None:
        """Drop the values and buckets that left the window ``(limit, newest]``.

        ``order`` is consumed from its oldest end (its last entry); once it is empty every
        value not placed late was seen after the rebuild, so nothing expires before
        ``rebuilt`` — then ``order`` is rebuilt from ``seen``. Each rebuild sorts only values
        seen since the previous one: a flood of five values rebuilds once per timespan, a scan
        once per window of values.
        """
        seen, late, order = self.seen, self.late, self.order
        while late and late[0][0] <= limit:
            ts, _, value = heapq.heappop(late)
            if seen.get(value) == ts:
                del seen[value]
        while order and order[-1][0] <= limit:
            ts, value = order.pop()
            if seen.get(value) == ts:
                del seen[value]
        if not order and self.rebuilt <= limit:
            for value in [v for v, ts in seen.items() if ts <= limit]:
                del seen[value]
            order = self.order = sorted(((ts, v) for v, ts in seen.items()), key=_FIRST,
                                        reverse=True) if seen else _NO_ORDER
            self.rebuilt = newest
        buckets = self.buckets
        gone = 0
        for bucket in buckets:
            if bucket[1] > limit:
                break
            gone += 1
        if gone:
            del buckets[:gone]
        front = order[-1][0] if order else self.rebuilt
        if buckets and buckets[0][1] < front:
            front = buckets[0][1]
        self.front = -_INF if late else front


_ORDER = itertools.count()
_FIRST = itemgetter(0)
_NO_QUEUE: deque[float] = deque(maxlen=0)
_NO_VALUES: dict[Any, float] = {}
_NO_ORDER: list[Any] = []
_NO_BUCKETS: list[list[Any]] = []


class CountingState(GroupTable["_Window"]):
    """Sliding-window event_count/value_count groups of one rule (bounded LRU)."""

    KIND = "counting"

    def __init__(self, rule: CorrelationRule, late_allowance: float = 5.0) -> None:
        if not supports(rule):
            raise ValueError(f"{rule.type.value} with {rule.op} needs the reference state")
        super().__init__(rule)
        self._distinct = rule.type is CorrelationType.VALUE_COUNT
        self._span = rule.timespan
        self._test = OPERATORS[rule.op or "gte"]
        self._threshold = rule.threshold if rule.threshold is not None else 1.0
        self._cap = None if self._distinct else count_cap(rule.op, self._threshold)
        self._keep = self._span + late_allowance
        self.unplaced = 0
        """Events refused because their timestamp cannot be placed in a window (NaN, huge)."""
        self._window_measure = measure_for(rule)
        least = at_least(rule.op, self._threshold)
        self._bare = self._distinct and least is not None and least > 1
        """New groups start bare (one event cannot meet the condition)."""

    def _new_group(self, ts: float) -> _Window:
        return _Window(self._cap, ts, self._bare)

    def _export(self, group: _Window) -> dict[str, Any]:
        if group.first is not None:  # as the full form it grows into
            full = _Window(None, group.first[0])
            full.first, full.armed = group.first, group.armed
            full.grow()
            group = full
        seen = sorted(((ts, v) for v, ts in group.seen.items()), key=_FIRST)
        return {
            "a": group.armed,
            "q": codec.newest(list(group.queue)),
            "s": [[ts, codec.encode(v)] for ts, v in codec.newest(seen)],
            "b": [list(b) for b in codec.newest(list(group.buckets))],
            "h": [[ts, codec.encode(p)] for ts, p in codec.newest(group.history)],
        }

    def _import(self, raw: dict[str, Any]) -> _Window:
        """The group as :meth:`_Window.expire` leaves it: ``seen`` in time order, ``order``
        its snapshot newest first, no late heap."""
        history = codec.entries(raw["h"])
        if self._distinct:
            buckets = [codec.bucket(b) for b in raw["b"]]
            if not buckets or any(a[0] >= b[0] for a, b in itertools.pairwise(buckets)):
                raise ValueError("value_count buckets empty or out of time order")
            newest = buckets[-1][1]
            group = _Window(None, newest)
            group.buckets.extend(buckets)
            seen = [(ts, v) for ts, v in codec.entries(raw["s"]) if ts > newest - self._span]
            group.seen.update((v, ts) for ts, v in seen)
            group.order = sorted(((ts, v) for v, ts in group.seen.items()), key=_FIRST,
                                 reverse=True) or _NO_ORDER
            front = group.order[-1][0] if group.order else newest
            group.front = min(front, buckets[0][1])
        else:
            queue = codec.stamps(raw["q"])
            if not queue:
                raise ValueError("event_count group without timestamps")
            group = _Window(self._cap, queue[-1])
            group.queue.extend(queue)
            history = [(ts, None) for ts, _ in history]
        group.armed = bool(raw["a"])
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
        value: Any = None
        if self._distinct:
            value = fields.get(rule.value_field[matched[0]])
            if value is None:
                return None
            value = distinct_value(value)
        ts = event.timestamp
        if not ts - self._span < ts:  # NaN, or so large that the window has no length
            self.unplaced += 1
            return None
        group = self._place(key, existing, ts)
        if existing is None and self._bare:  # one value: nothing to count yet
            group.first = (ts, value)
            return None
        if group.first is not None:
            group.grow()
        late = existing is not None and ts < self._newest(group)
        if late:
            insert(group.history, (ts, value))
        else:
            record(group.history, (ts, value), ts - self._keep)
        self._insert(group, ts, value)
        firing = self._evaluate(key, group)
        if firing is None and late:
            hit = late_windows(group.history, ts, self._span, self._window_measure)
            if hit is not None:  # a window ending at or after the late event holds
                start, count, n = hit
                firing = Firing(key, self._names, start, count, n, group.armed)
        return firing

    def _insert(self, group: _Window, ts: float, value: Any) -> None:
        """Put one event in its place (late events within the allowance go back in time)."""
        if not self._distinct:
            insert_capped(group.queue, ts)
            return
        buckets = group.buckets
        newest = buckets[-1][1] if buckets else ts
        if ts > newest - self._span:  # else older than the window: nothing to count
            group.sight(value, ts, newest)
            tally(buckets, ts, 0.0)
            group.front = min(group.front, ts)

    def _newest(self, group: _Window) -> float:
        if group.first is not None:
            return group.first[0]
        return float(group.buckets[-1][1] if self._distinct else group.queue[-1])

    def _evaluate(self, key: tuple[Any, ...], group: _Window) -> Firing | None:
        newest = self._newest(group)
        limit = newest - self._span
        if self._distinct:
            if group.front <= limit:
                group.expire(limit, newest)
            value = len(group.seen)
        else:
            queue = group.queue
            while queue and queue[0] <= limit:
                queue.popleft()
            value = len(queue)
        if not self._test(value, self._threshold):
            group.armed = True
            return None
        opened = group.armed
        group.armed = False
        if self._distinct:
            buckets = group.buckets
            start, count = (buckets[0][4] if buckets else limit), bucket_count(buckets)
        else:
            queue = group.queue
            start, count = (queue[0] if queue else limit), len(queue)
        return Firing(key, self._names, start, count, float(value), opened)

    def feeder(self, base_id: str) -> Feed:
        """The per-event closure for events of base rule ``base_id`` (see the module doc): it
        returns what :meth:`observe` would — a :class:`Firing` — except for a group whose
        condition stays true, returned as its key. The engine rebuilds feeders whenever rules
        are swapped."""
        rule = self.rule
        names_of_base = rule.group_fields[base_id]
        # itemgetter is C, and raises KeyError for a missing group-by field (then ignored)
        key_of = itemgetter(*names_of_base) if len(names_of_base) > 1 else values_of(
            names_of_base)
        get, touch, keep = self.groups.get, self.groups.move_to_end, self.fresh.pop
        add, bare, cap_of = self._open_group, self._bare, self._cap
        distinct, value_field = self._distinct, rule.value_field.get(base_id, "")
        span, test, threshold, names = self._span, self._test, self._threshold, self._names
        least = at_least(rule.op, threshold)
        observe, ids = self.observe, [base_id]
        cap = HISTORY

        def slow(event: Event) -> Firing | None:
            return observe(ids, event)

        def feed(event: Event) -> Firing | tuple[Any, ...] | None:
            fields = event.fields
            try:
                key = key_of(fields)
                group = get(key)
            except KeyError:  # a group-by field is missing: ignored
                return None
            except TypeError:  # an unhashable group-by value
                return slow(event)
            ts = event.timestamp
            if not ts - span < ts:  # not a usable time: the full path refuses it
                return slow(event)
            if group is None:  # new (or None in the key: no group has one)
                if not bare or None in key:
                    return slow(event)
                value = fields.get(value_field)  # observe() for a new bare group, inlined
                if value is None:
                    return None
                window = _Window(cap_of, ts, True)
                window.first = (ts, value if value.__class__ is str else distinct_value(value))
                add(key, window)
                return None
            if distinct:
                value = fields.get(value_field)
                if value is None:
                    return None
                if value.__class__ is not str:
                    value = distinct_value(value)
                buckets = group.buckets
                if not buckets:  # bare (one event so far): grown by the full path
                    return slow(event)
                last = buckets[-1]  # the newest event's bucket (never expired)
                if last[1] > ts:
                    return slow(event)
                seen = group.seen
                try:
                    seen[value] = ts
                except TypeError:  # unhashable (a list): slow() counts its text
                    return slow(event)
                touch(key)
                keep(key, None)
                history = group.history  # record(), inlined: the bound, not the horizon
                history.append((ts, value))
                if len(history) > cap:
                    del history[0]
                if ts - last[0] < 1.0:  # the same second (exact: Sterbenz)
                    last[1] = ts
                    last[2] += 1
                else:
                    buckets.append([ts // 1.0, ts, 1, 0.0, ts])
                limit = ts - span
                if group.front <= limit:
                    group.expire(limit, ts)
                n = len(seen)
            else:
                queue = group.queue
                if queue[-1] > ts:
                    return slow(event)
                touch(key)
                keep(key, None)
                history = group.history
                history.append((ts, None))
                if len(history) > cap:
                    del history[0]
                queue.append(ts)
                limit = ts - span
                while queue[0] <= limit:
                    queue.popleft()
                n = len(queue)
            if not (n >= least if least is not None else test(n, threshold)):
                group.armed = True
                return None
            if group.armed:
                group.armed = False
                if distinct:
                    start, count = group.buckets[0][4], bucket_count(group.buckets)
                else:
                    start, count = group.queue[0], n
                return Firing(key, names, start, count, float(n), True)
            return key  # the condition stays true: more of the open alert, if one is open

        return feed

    # ------------------------------------------------------------------ timers

    def tick(
        self, now: float, late_allowance: float, event_now: float | None = None
    ) -> list[Firing]:
        """Expire groups idle in event time (no timer conditions here: nothing fires)."""
        idle_before = (now if event_now is None else min(now, event_now)) - self._span - (
            late_allowance)
        groups = self.groups
        while groups:
            key, group = next(iter(groups.items()))
            if self._newest(group) > idle_before:
                break
            self._drop_idle(key)
        return []
