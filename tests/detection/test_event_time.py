"""Correlations in event time against a brute-force sliding-window reference (issue 14).

The reference keeps every event a group accepted and, after each event, evaluates by brute
force the window ``(t - T, t]`` ending at the group's newest event and — for a late event — every
window containing it (ending at an event in ``[ts, ts + T)``); the rule fires when one holds,
and a firing *opens* when the condition at the newest event was false before. Streams arrive out
of order, within and beyond the late allowance; the engine's gate (events older than the
watermark minus the allowance are not placed) is applied by the harness as the engine does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.detection import Engine, EngineOptions, Ruleset
from agent.detection.correlation import CorrelationState
from agent.detection.counting import CountingState, supports
from agent.detection.late_windows import HISTORY, ordered
from agent.detection.rule import CorrelationRule, CorrelationType
from agent.events import Event
from tests.detection.helpers import PACKET, T0, event, load, rule_doc, run
from tests.detection.test_correlations import corr

SPAN = 10.0
LATE = 5.0


def _base(name: str, flag: str) -> dict[str, Any]:
    return rule_doc({"sel": {flag: True}, "condition": "sel"},
                    {"product": "vedette", "category": "network_packet"}, name=name)


@pytest.fixture(scope="module")
def ruleset(tmp_path_factory: pytest.TempPathFactory) -> Ruleset:
    group = ["destination.ip"]
    docs = [
        _base("syn", "tcp.flags.syn"), _base("ack", "tcp.flags.ack"),
        corr("event_count", {"gte": 3}, ["syn"], group, title="ec"),
        corr("event_count", {"gt": 1}, ["syn"], group, title="ec2"),
        corr("value_count", {"gte": 2, "field": "destination.port"}, ["syn"], group, title="vc"),
        corr("value_sum", {"gte": 60, "field": "destination.port"}, ["syn"], group, title="vs"),
        corr("temporal", None, ["syn", "ack"], group, title="tp"),
        corr("temporal_ordered", None, ["syn", "ack"], group, title="to"),
    ]
    report = load(tmp_path_factory.mktemp("event-time"), *docs)
    assert not report.errors and not report.rejections, report.rejections
    return report.ruleset


class Reference:
    """Brute force: every accepted event of every group, every window evaluated."""

    def __init__(self, rule: CorrelationRule) -> None:
        self.rule = rule
        self.groups: dict[Any, list[tuple[float, Any]]] = {}
        self.armed: dict[Any, bool] = {}

    def _met(self, events: list[tuple[float, Any]], end: float) -> bool:
        es = sorted((e for e in events if end - SPAN < e[0] <= end), key=lambda e: e[0])
        kind = self.rule.type
        if kind is CorrelationType.EVENT_COUNT:
            return self.rule.condition_met(float(len(es)))
        if kind is CorrelationType.VALUE_COUNT:
            return self.rule.condition_met(float(len({e[1] for e in es})))
        if kind is CorrelationType.VALUE_SUM:
            return self.rule.condition_met(float(sum(e[1] for e in es)))
        if kind is CorrelationType.TEMPORAL:
            return {r for e in es for r in e[1]} >= set(self.rule.rules)
        # temporal_ordered: try every assignment of distinct events to the steps
        return _exists_ordered(list(self.rule.rules), es)

    def observe(self, key: Any, ts: float, payload: Any) -> tuple[bool, bool]:
        events = self.groups.setdefault(key, [])
        newest_before = max((e[0] for e in events), default=None)
        events.append((ts, payload))
        newest = max(e[0] for e in events)
        armed = self.armed.get(key, True)
        if self._met(events, newest):
            self.armed[key] = False
            return True, armed
        self.armed[key] = True
        if newest_before is not None and ts < newest_before:
            ends = {e[0] for e in events if ts <= e[0] < ts + SPAN}
            if any(self._met(events, end) for end in ends):
                return True, True
        return False, False


def _exists_ordered(steps: list[str], es: list[tuple[float, Any]]) -> bool:
    def search(i: int, after: float, used: frozenset[int]) -> bool:
        if i == len(steps):
            return True
        return any(search(i + 1, e[0], used | {j}) for j, e in enumerate(es)
                   if j not in used and e[0] >= after and steps[i] in e[1])
    return search(0, float("-inf"), frozenset())


def _ids(e: tuple[bool, bool]) -> list[str]:
    return [n for n, on in zip(("syn", "ack"), e, strict=True) if on]


stream = st.lists(
    st.tuples(
        st.integers(0, 6),  # seconds after the previous event's clock
        st.sampled_from([0, 0, 0, 2, 3, 4, 6, 8, 11]),  # how late it arrives (allowance: 5)
        st.sampled_from(["198.18.0.1", "198.18.0.2"]),
        st.sampled_from([10, 20, 30]),
        st.sampled_from([(True, False), (False, True), (True, True)]),
        st.sampled_from([0.0, 0.5]),
    ),
    max_size=30,
)


def _rule_ids(rule: CorrelationRule) -> list[str]:
    return list(dict.fromkeys(rule.rules))


@settings(max_examples=400, deadline=None)
@given(events=stream)
def test_every_state_agrees_with_the_brute_force_reference(
    ruleset: Ruleset, events: list[tuple[int, int, str, int, tuple[bool, bool], float]]
) -> None:
    for rule in ruleset.correlations:
        states: list[Any] = [CorrelationState(rule, LATE)]
        if supports(rule):
            states.append(CountingState(rule, LATE))
        names = {r.id: r.name for r in ruleset.detections}
        for state in states:
            ref = Reference(rule)
            watermark = float("-inf")
            clock = T0
            for gap, lag, dst, port, flags, frac in events:
                clock += gap
                # value_sum/value_avg count in one-second buckets (a second's events leave
                # together, docs/rules.md): exact on whole seconds, which is what is compared
                ts = clock - lag + (0.0 if rule.type is CorrelationType.VALUE_SUM else frac)
                late = ts < watermark - LATE
                watermark = max(watermark, ts)
                if late:
                    continue
                matched = [rid for rid in _rule_ids(rule) if names[rid] in _ids(flags)]
                if not matched:
                    continue
                ev = Event(ts, PACKET, {"destination.ip": dst, "destination.port": port})
                firing = state.observe(matched, ev)
                payload: Any = port
                if rule.type in (CorrelationType.TEMPORAL, CorrelationType.TEMPORAL_ORDERED):
                    payload = tuple(matched)
                want = ref.observe(dst, ts, payload)
                got = (firing is not None, bool(firing and firing.opened))
                assert got == want, (rule.ref.title, type(state).__name__, ts - T0, dst, port)


def test_a_window_ending_at_a_late_event_is_evaluated(tmp_path: Path) -> None:
    """Issue 14: event_count gte 3 with arrivals at 3, 4, 15, then 12 s fires."""
    docs = [_base("syn", "tcp.flags.syn"),
            corr("event_count", {"gte": 3}, ["syn"], ["destination.ip"], timespan="10s",
                 title="count")]
    report = load(tmp_path, *docs)
    engine = Engine(report.ruleset, None, EngineOptions(late_allowance_seconds=5))
    evs = [event(T0 + t, PACKET, **{"destination.ip": "198.18.0.1", "tcp.flags.syn": True})
           for t in (3, 4, 15, 12)]
    alerts = run(engine, evs, tick=False)
    assert alerts and alerts[-1].rule.title == "count"


@pytest.mark.parametrize(("order", "fires"), [
    ([("fail", 10), ("succ", 8)], False),  # success before failure in event time
    ([("succ", 10), ("fail", 8)], True),  # failure first in event time, arrived late
    ([("succ", 8), ("fail", 8)], True),  # equal timestamps count as in order
])
def test_temporal_ordered_follows_timestamps_not_arrival(
    tmp_path: Path, order: list[tuple[str, int]], fires: bool
) -> None:
    docs = [_base("fail", "tcp.flags.syn"), _base("succ", "tcp.flags.ack"),
            corr("temporal_ordered", None, ["fail", "succ"], ["destination.ip"],
                 title="ordered")]
    report = load(tmp_path, *docs)
    engine = Engine(report.ruleset, None, EngineOptions(late_allowance_seconds=5))
    flag = {"fail": "tcp.flags.syn", "succ": "tcp.flags.ack"}
    evs = [event(T0 + t, PACKET, **{"destination.ip": "198.18.0.1", flag[k]: True})
           for k, t in order]
    corr_alerts = [a for a in run(engine, evs, tick=False) if a.rule.title == "ordered"]
    assert bool(corr_alerts) is fires


def test_ordered_matches_exhaustive_search_with_ties() -> None:
    es = [(1.0, ("a", "b")), (1.0, ("a",)), (2.0, ("c",))]
    assert ordered(["a", "b", "c"], es)[0] is _exists_ordered(["a", "b", "c"], es) is True
    es = [(1.0, ("a", "b")), (1.0, ("a",))]
    assert ordered(["b", "a"], es)[0] is _exists_ordered(["b", "a"], es) is True
    assert ordered(["a", "a", "a"], es)[0] is _exists_ordered(["a", "a", "a"], es) is False


def test_history_is_bounded(ruleset: Ruleset) -> None:
    rule = next(r for r in ruleset.correlations if r.ref.title == "vc")
    state = CountingState(rule, LATE)
    for i in range(10 * HISTORY):
        state.observe(list(rule.rules),
                      Event(T0 + i / 1000, PACKET, {"destination.ip": "a",
                                                    "destination.port": i}))
    assert all(len(g.history) <= HISTORY for g in state.groups.values())


@pytest.mark.parametrize("bad", [2.0**58, float("nan"), float("inf"), -1.0])
def test_absurd_timestamps_never_crash_and_never_move_the_watermark(
    tmp_path: Path, bad: float
) -> None:
    docs = [_base("syn", "tcp.flags.syn"),
            corr("event_count", {"gte": 2}, ["syn"], ["destination.ip"]),
            corr("value_count", {"gte": 2, "field": "destination.port"}, ["syn"],
                 ["destination.ip"])]
    report = load(tmp_path, *docs)
    engine = Engine(report.ruleset)

    def syn(ts: float, port: int) -> Event:
        return event(ts, PACKET, **{"destination.ip": "198.18.0.1", "destination.port": port,
                                    "tcp.flags.syn": True})
    engine.process(syn(T0, 1))
    engine.process(syn(bad, 2))
    assert engine.watermark == T0
    assert engine.bad_timestamps + engine.late_events == 1  # -1 is merely very late
    assert engine.process(syn(T0 + 1, 3))  # the windows still work
    for state in engine.states.values():  # the states refuse such times themselves too
        for ts in (2.0**58, float("nan")):
            state.observe(list(state.rule.rules), syn(ts, 4))
        assert state.unplaced == 2
