"""The detection engine: events in, alert snapshots out. Single-threaded by design.

``process(event)`` routes the event to the rules of its logsource, runs their compiled
predicates and feeds correlation windows, collecting what the event triggered (single-event
matches, correlation firings) and handing it to the alert books in one call
(:meth:`~agent.detection.lifecycle.AlertBook.apply`).
``advance(now)`` runs the timers: lt/lte correlation windows, idle group expiry, pending alert
updates, quiet-period closes and the suppression meta-alert. ``swap(ruleset)`` replaces the
rules atomically, keeping the state of rules whose content did not change.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from agent.alerts import Alert, RuleRef
from agent.detection.correlation import CorrelationState, Firing
from agent.detection.counting import CountingState, Feed, supports
from agent.detection.lifecycle import MAX_EVIDENCE, AlertBook, Source, Triggers
from agent.detection.match_cache import MAX_CACHED_ROUTES, RouteState
from agent.detection.matcher import Lowered
from agent.detection.rule import CorrelationRule, DetectionRule, RuleOptions
from agent.detection.ruleset import Ruleset
from agent.events import Event, LogSource

SUPPRESSION_RULE = RuleRef(
    id="vedette-alert-suppression",
    title="Vedette is suppressing alerts of a rule",
    level="medium",
    description="A rule triggers faster than its alerts can be opened (cooldown or per-minute "
    "cap); triggers are being dropped. Look at the rule's open alerts and tune it.",
    author="Vedette",
)


log = logging.getLogger(__name__)

State = CorrelationState | CountingState
_Shared = tuple[State, Source, dict[str, Feed] | None]
"""A correlation of several base rules: its state, where its firings go, and for a counting
state its per-event closure by base rule (an event matching several of its bases is counted
once, by the first — what :meth:`CountingState.observe` does, without its slow path)."""
_Plan = tuple[tuple[tuple[Feed, Source], ...], tuple[_Shared, ...]]


@dataclass(frozen=True, slots=True)
class EngineOptions:
    late_allowance_seconds: float = 5.0
    """Correlations accept events up to this many seconds older than the newest one seen."""
    meta_alert_threshold: int = 1000
    """Dropped triggers of one rule within ``meta_window`` seconds that raise a meta-alert."""
    meta_window: float = 60.0
    max_evidence: int = MAX_EVIDENCE
    max_future_seconds: float | None = None
    """When set (the daemon: wall time), :meth:`Engine.advance` pulls a watermark more than this
    far ahead of ``now`` back to ``now``: one event stamped in the future (the clock stepped
    forward, then corrected; a restored checkpoint from such a run) would otherwise make every
    later event late, and correlations blind, until real time caught up."""


class Engine:
    def __init__(
        self, ruleset: Ruleset, metrics: Any = None, options: EngineOptions | None = None
    ) -> None:
        self.options = options or EngineOptions()
        self._late_allowance = self.options.late_allowance_seconds
        self.metrics = metrics
        self.ruleset = Ruleset()
        self.books: dict[str, AlertBook] = {}
        self.states: dict[str, State] = {}
        self.watermark = -math.inf
        self.late_events = 0
        self.watermark_resets = 0
        self._horizon = math.inf  # newest event time that may move the watermark
        """Watermarks pulled back from the future by :meth:`advance` (``max_future_seconds``)."""
        self.bad_timestamps = 0
        """Events whose timestamp is not a time (NaN, before 1970, after year 5000): they match
        single-event rules but feed no correlation window and never move the watermark."""
        self.evaluations = 0
        self.predicate_errors: dict[str, int] = {}
        """Rule id → how many events its predicate raised on."""
        self._pending: list[Alert] = []
        self._plans: dict[str, _Plan] = {}
        self._singles: dict[str, Source] = {}
        self._meta = AlertBook(SUPPRESSION_RULE, RuleOptions(), self.options.max_evidence)
        self._drops: dict[str, deque[tuple[float, int]]] = {}
        self._drop_seen: dict[str, int] = {}
        self._reported: dict[str, list[int]] = {}
        self.swap(ruleset)

    def reconfigure(self, options: EngineOptions) -> None:
        """Use ``options`` from now on, except the late allowance: every correlation window
        and history was built with the current one (changing it needs a restart)."""
        self.options = replace(options,
                               late_allowance_seconds=self.options.late_allowance_seconds)

    # ------------------------------------------------------------------ rules

    def swap(self, ruleset: Ruleset) -> None:
        """Use ``ruleset`` from now on; rules with the same id and content keep their state."""
        old = self.ruleset
        books: dict[str, AlertBook] = {}
        states: dict[str, State] = {}
        for rule in ruleset.rules():
            prev = old.by_id.get(rule.id)
            same = prev is not None and prev.content_hash == rule.content_hash
            if same and rule.id in self.books:
                books[rule.id] = self.books[rule.id]
                books[rule.id].ref = rule.ref
            else:
                books[rule.id] = AlertBook(rule.ref, rule.options, self.options.max_evidence)
            if isinstance(rule, CorrelationRule):
                if same and rule.id in self.states:
                    states[rule.id] = self.states[rule.id]
                    states[rule.id].rule = rule
                elif supports(rule):
                    states[rule.id] = CountingState(rule, self._late_allowance)
                else:
                    states[rule.id] = CorrelationState(rule, self._late_allowance)
        for rule_id, book in self.books.items():
            if books.get(rule_id) is not book:
                now = max((a.alert.last_seen for a in book.open.values()), default=0.0)
                self._pending.extend(book.close_all(now))
                self._forget(rule_id, rule_id not in books)
        self.ruleset, self.books, self.states = ruleset, books, states
        self._routes: dict[LogSource, RouteState] = {}
        self._plans = self._plan(states)
        self._singles = {rule.id: Source(books[rule.id], rule.fields + rule.options.fields,
                                         rule.options.group_by)
                         for rule in ruleset.detections if rule.output}
        if self.metrics is not None:
            self.metrics.rules_loaded.labels(kind="detection").set(len(ruleset.detections))
            self.metrics.rules_loaded.labels(kind="correlation").set(len(ruleset.correlations))

    def _plan(self, states: dict[str, State]) -> dict[str, _Plan]:
        """Base rule id → what its matches feed: per-event closures of the correlations it is
        the only base of (in rule order), and the states that need all of an event's base rules
        at once (several bases: temporal); each with the :class:`Source` its firings go to."""
        feeds: dict[str, list[tuple[Feed, Source]]] = {}
        shared: dict[str, list[_Shared]] = {}
        for state in states.values():
            rule = state.rule
            bases = list(dict.fromkeys(rule.rules))
            by_base = ({rid: state.feeder(rid) for rid in bases}
                       if len(bases) > 1 and isinstance(state, CountingState) else None)
            for rid in bases:
                base = self.ruleset.by_id.get(rid)
                fields = base.fields if isinstance(base, DetectionRule) else ()
                source = Source(self.books[rule.id], fields + rule.options.fields,
                                describe=partial(_describe, rule))
                if len(bases) > 1:
                    shared.setdefault(rid, []).append((state, source, by_base))
                elif isinstance(state, CountingState):
                    feeds.setdefault(rid, []).append((state.feeder(rid), source))
                else:
                    feeds.setdefault(rid, []).append((partial(state.observe, [rid]), source))
        return {rid: (tuple(feeds.get(rid, ())), tuple(shared.get(rid, ())))
                for rid in {*feeds, *shared}}

    def _forget(self, rule_id: str, removed: bool) -> None:
        """Drop the bookkeeping of a replaced rule (and its gauge series when removed)."""
        self._reported.pop(rule_id, None)
        self._drops.pop(rule_id, None)
        self._drop_seen.pop(rule_id, None)
        if removed and self.metrics is not None and rule_id in self.states:
            try:
                self.metrics.correlation_groups.remove(rule_id)
            except KeyError:
                pass

    def _predicate_failed(self, rule: DetectionRule, exc: Exception) -> None:
        """A rule's predicate raised on an event: that rule does not match it, every other rule
        still sees it. Counted per rule; logged the first time and then every 1000th time, so a
        hostile event stream cannot flood the log."""
        count = self.predicate_errors.get(rule.id, 0) + 1
        self.predicate_errors[rule.id] = count  # bounded: ids of loaded rules only
        if self.metrics is not None:
            self.metrics.rule_errors.labels(rule=rule.id).inc()
        if count == 1 or count % 1000 == 0:
            log.error("rule %s: its condition failed on an event (%s: %s); the rule skips "
                      "such events, the other rules see them (%d so far)", rule.id,
                      type(exc).__name__, str(exc)[:200].encode("unicode_escape").decode(),
                      count)

    # ------------------------------------------------------------------ events

    def process(self, event: Event) -> list[Alert]:
        entry = self._routes.get(event.logsource)
        if entry is None:
            entry = RouteState(self.ruleset.route(event.logsource))
            if len(self._routes) < MAX_CACHED_ROUTES:
                self._routes[event.logsource] = entry
        if entry.empty:
            return []
        ts = event.timestamp
        watermark = self.watermark
        if ts > watermark and ts <= _SANE_TIME[1] and ts <= self._horizon:
            self.watermark = ts
        fields = event.fields
        # Predicates are pure functions of the fields their route reads: identical values
        # (and types: True == 1 in Python) give identical matches, so results are memoised
        # while that pays (repetitive streams: cron jobs, packets of one flow).
        matched: list[DetectionRule] | None = None
        caching = entry.caching
        key: Any = None
        if caching:
            key = entry.key_of(fields)
            try:
                matched = entry.cache.get(key)
            except TypeError:  # an unhashable value (a list): evaluate, do not remember
                key = None
            if matched is not None:
                entry.hits += 1
        else:
            entry.skipped += 1
            if entry.skipped >= entry.PAUSE:
                entry.resume()
        if matched is None:
            low = _new_lowered(Lowered)  # skips the Python-level __init__ (hot path)
            low.fields = fields
            candidates = entry.candidates(low)
            self.evaluations += len(candidates)
            matched = []
            failed = False
            for rule in candidates:
                try:  # free when nothing raises (3.11 zero-cost exceptions)
                    if rule.predicate(fields, low):
                        matched.append(rule)
                except Exception as exc:  # one broken predicate must not blind the others
                    self._predicate_failed(rule, exc)
                    failed = True
            if caching and not failed:
                entry.missed(key, fields, matched)
        if not matched:
            return []
        tuning = self.ruleset.tuning
        if tuning is not None:  # filters and trusted sources (agent/detection/tuning.py)
            matched = tuning.admit(matched, event)
            if not matched:
                return []
        hand: Triggers = []
        pending: dict[State, tuple[Source, dict[str, Feed] | None, list[str]]] | None = None
        late: bool | None = None
        plans = self._plans
        for rule in matched:
            if rule.output:
                hand.append((self._singles[rule.id], None))
            plan = plans.get(rule.id)
            if plan is None:
                continue
            if late is None:
                late = ts < watermark - self._late_allowance
                if late:
                    self.late_events += 1
                elif not _SANE_TIME[0] <= ts <= _SANE_TIME[1]:  # absurd: never in a window
                    late = True
                    self.bad_timestamps += 1
            if late:
                continue
            feeds, shared = plan
            for feed, source in feeds:
                fired = feed(event)
                if fired is not None:
                    hand.append((source, fired))
            if shared:  # several base rules: collect them all first (temporal)
                if pending is None:
                    pending = {}
                for state, source, by_base in shared:
                    pending.setdefault(state, (source, by_base, []))[2].append(rule.id)
        if pending:
            for state, (source, by_base, base_ids) in pending.items():
                fired = (by_base[base_ids[0]](event) if by_base is not None
                         else state.observe(base_ids, event))
                if fired is not None:
                    hand.append((source, fired))
        return AlertBook.apply(hand, event) if hand else []

    # ------------------------------------------------------------------ timers

    def advance(self, now: float) -> list[Alert]:
        """Run every timer up to ``now`` (wall time in the daemon, event time in tests)."""
        out, self._pending = self._pending, []
        late = self.options.late_allowance_seconds
        ahead = self.options.max_future_seconds
        if ahead is not None:
            # an event beyond the horizon is evaluated but does not move the watermark; one
            # that moved it before (a restored checkpoint, a clock stepped back) is undone
            self._horizon = now + ahead
            if self.watermark > self._horizon:
                self.watermark = now
                self.watermark_resets += 1
        for rule_id, state in self.states.items():
            for firing in state.tick(now, late, self.watermark):
                firing_ts = max(now, firing.window_start)
                book = self.books[rule_id]
                out.extend(book.trigger(firing.key, firing.group, firing_ts, firing.window_start,
                                        firing.count, dict(firing.group), None,
                                        _describe(state.rule, firing)))
        for book in self.books.values():
            if book.open:
                out.extend(book.tick(now))
        out.extend(self._suppression(now))
        out.extend(self._meta.tick(now))
        self._report()
        return out

    def _suppression(self, now: float) -> list[Alert]:
        """Raise (or update) the meta-alert of rules dropping many triggers recently."""
        out: list[Alert] = []
        window = self.options.meta_window
        for rule_id, book in self.books.items():
            history = self._drops.get(rule_id)
            seen = self._drop_seen.get(rule_id, 0)
            if book.dropped == seen and not history:
                continue
            if history is None:
                history = self._drops[rule_id] = deque()
            if book.dropped > seen:
                history.append((now, book.dropped - seen))
                self._drop_seen[rule_id] = book.dropped
            while history and history[0][0] <= now - window:
                history.popleft()
            recent = sum(n for _, n in history)
            if recent >= self.options.meta_alert_threshold:
                group = {"rule.id": rule_id}
                matched = {"rule.id": rule_id, "rule.name": book.ref.title}
                message = (f"{recent} alerts of rule {book.ref.title!r} suppressed in the last "
                           f"{window:g} s (cooldown / max_alerts_per_minute)")
                out.extend(self._meta.trigger(rule_id, group, now, now, recent, matched, None,
                                              message))
                history.clear()
        return out

    def _report(self) -> None:
        m = self.metrics
        if m is None:
            return
        m.rule_evaluations.inc(self.evaluations)
        self.evaluations = 0
        m.late_events.inc(self.late_events)
        self.late_events = 0
        if self.bad_timestamps:
            m.bad_timestamps.inc(self.bad_timestamps)
            self.bad_timestamps = 0
        for rule_id, book in self.books.items():
            seen = self._reported.setdefault(rule_id, [0, 0, 0])
            state = self.states.get(rule_id)
            evictions = (state.evictions if state else 0) + book.evicted
            if book.dropped > seen[0]:
                m.alerts_suppressed.labels(rule=rule_id, reason="dropped").inc(
                    book.dropped - seen[0])
            if book.coalesced > seen[1]:
                m.alerts_suppressed.labels(rule=rule_id, reason="coalesced").inc(
                    book.coalesced - seen[1])
            if evictions > seen[2]:
                m.group_evictions.labels(rule=rule_id).inc(evictions - seen[2])
            self._reported[rule_id] = [book.dropped, book.coalesced, evictions]
            if state is not None:
                m.correlation_groups.labels(rule=rule_id).set(len(state))


_new_lowered = Lowered.__new__
_SANE_TIME = (0.0, 95_617_584_000.0)  # 1970-01-01 .. 5000-01-01 (a float's µs still exact)


def _describe(rule: CorrelationRule, firing: Firing) -> str:
    where = ", ".join(f"{k}={v}" for k, v in firing.group.items())
    cond = f" ({rule.op} {rule.threshold:g})" if rule.op and rule.threshold is not None else ""
    return (f"{rule.ref.title}: {rule.type.value} {firing.value:g}{cond} within "
            f"{rule.timespan:g} s" + (f" for {where}" if where else ""))
