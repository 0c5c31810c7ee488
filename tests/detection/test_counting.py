"""The counting fast path (event_count/value_count) against the reference correlation state.

Two engines share one rule set: the production one (``CountingState`` and its per-event feeders)
and one whose correlations all run on the straightforward ``CorrelationState``. On random streams
— late events inside and beyond the allowance, several events in one second, missing and
unhashable group values, values equal across types, LRU eviction, timers ticking in between —
every alert snapshot must be the same, and so must what each group keeps (its bounded state).
"""

from __future__ import annotations

import bisect
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.detection import Engine, EngineOptions, Ruleset
from agent.detection.correlation import CorrelationState, at_least, insertion_index
from agent.detection.counting import CountingState
from agent.detection.rule import OPERATORS
from tests.detection.helpers import PACKET, T0, event, load, rule_doc
from tests.detection.test_correlations import corr, syn_rule

OPTIONS = EngineOptions(late_allowance_seconds=2.0)
FAST = {"max_groups": 3, "update_interval": 2, "quiet_period": 4, "cooldown": 1}


def _ack_rule() -> dict[str, Any]:
    return rule_doc(
        {"sel": {"tcp.flags.ack": True}, "condition": "sel"},
        {"product": "vedette", "category": "network_packet"},
        name="ack",
    )


@pytest.fixture(scope="module")
def ruleset(tmp_path_factory: pytest.TempPathFactory) -> Ruleset:
    docs = [
        syn_rule(),
        _ack_rule(),
        corr("event_count", {"gte": 3}, ["syn"], ["destination.ip", "destination.port"],
             timespan="5s", vedette=FAST),
        corr("event_count", {"gt": 2}, ["syn"], ["source.ip"], timespan="3s"),
        corr("event_count", {"eq": 2}, ["syn"], ["destination.ip"], timespan="4s"),
        corr("event_count", {"neq": 1}, ["syn"], ["destination.port"], timespan="2s",
             vedette={"max_groups": 2, "update_interval": 0}),
        corr("event_count", {"gte": 2}, ["syn", "ack"], ["destination.ip"], timespan="3s"),
        corr("value_count", {"gte": 2, "field": "destination.port"}, ["syn"], ["source.ip"],
             timespan="5s", vedette=FAST),
        corr("value_count", {"gt": 1, "field": "source.port"}, ["syn"], ["destination.ip"],
             timespan="3s", vedette={"update_interval": 0}),
        corr("value_count", {"neq": 2, "field": "destination.port"}, ["syn"],
             ["destination.ip"], timespan="2s", vedette={"max_groups": 2}),
    ]
    report = load(tmp_path_factory.mktemp("counting"), *docs)
    assert not report.errors and not report.rejections
    return report.ruleset


def _reference(ruleset: Ruleset) -> Engine:
    engine = Engine(ruleset, None, OPTIONS)
    engine.states = {rid: CorrelationState(s.rule) for rid, s in engine.states.items()}
    engine._plans = engine._plan(engine.states)
    return engine


def test_the_production_engine_counts_with_the_fast_state(ruleset: Ruleset) -> None:
    engine = Engine(ruleset, None, OPTIONS)
    kinds = {type(s) for s in engine.states.values()}
    assert kinds == {CountingState}
    assert {type(s) for s in _reference(ruleset).states.values()} == {CorrelationState}


ADDRESSES = st.sampled_from(["198.18.0.1", "198.18.0.2", "198.18.0.3", None, ["198.18.0.9"]])
PORTS = st.sampled_from([22, 80, 443, 1, True, 1.0, "80", None, [22, 80]])
STEPS = st.sampled_from([0.0, 0.0, 0.1, 0.25, 0.5, 0.7, 1.0, 1.5, 3.0, -0.2, -0.5, -1.5, -3.0])


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[float, dict[str, Any], bool]]:
    out = []
    ts = T0
    for _ in range(draw(st.integers(1, 60))):
        ts += draw(STEPS)
        fields = {
            "source.ip": draw(ADDRESSES),
            "destination.ip": draw(ADDRESSES),
            "destination.port": draw(PORTS),
            "source.port": draw(PORTS),
            "tcp.flags.syn": draw(st.sampled_from([True, True, True, False])),
            "tcp.flags.ack": draw(st.booleans()),
        }
        out.append((ts, {k: v for k, v in fields.items() if v is not None}, draw(st.booleans())))
    return out


@settings(max_examples=300, deadline=None)
@given(stream=streams())
def test_fast_counting_matches_the_reference_state(
    ruleset: Ruleset, stream: list[tuple[float, dict[str, Any], bool]]
) -> None:
    fast, ref = Engine(ruleset, None, OPTIONS), _reference(ruleset)
    now = T0
    for ts, fields, tick in stream:
        if tick and ts > now:
            now = ts
            assert fast.advance(now) == ref.advance(now)
        ev = event(ts, PACKET, **fields)
        assert fast.process(ev) == ref.process(event(ts, PACKET, **fields)), (ts, fields)
    for rid, state in fast.states.items():
        other = ref.states[rid]
        assert (len(state), state.evictions) == (len(other), other.evictions)
        assert list(state.groups) == list(other.groups)
        assert [_stored(g) for g in state.groups.values()] == [
            _stored(g) for g in other.groups.values()]
    end = max(now, fast.watermark) + 60
    assert fast.advance(end) == ref.advance(end)
    assert [len(s) for s in fast.states.values()] == [len(s) for s in ref.states.values()]


def _stored(group: Any) -> tuple[Any, ...]:
    """What a group keeps: the newest timestamps (event_count), or each value's newest
    timestamp and the one-second buckets (value_count) — the same in both states."""
    if hasattr(group, "kept"):  # the counting state's window (bare or full)
        queue, seen, buckets = group.kept()
        return (queue, seen, buckets)
    return (list(group.queue), dict(group.seen), [list(b) for b in group.buckets])


def test_a_flood_grows_one_alert_through_the_fast_path(ruleset: Ruleset) -> None:
    engine = Engine(ruleset, None, OPTIONS)
    rule = next(r for r in ruleset.correlations if r.group_by == ("destination.ip",
                                                                  "destination.port"))
    sent = []
    for i in range(200):
        sent += engine.process(event(T0 + i * 0.01, PACKET, **{
            "tcp.flags.syn": True, "destination.ip": "198.18.0.1", "destination.port": 80}))
    mine = [a for a in sent if a.rule.id == rule.id]
    assert len(mine) == 1 and mine[0].count == 3  # opened at the third SYN, then coalesced
    book = engine.books[rule.id]
    (entry,) = book.open.values()
    assert entry.alert.count == 200 and entry.dirty and len(entry.alert.evidence) == 10


@given(times=st.lists(st.integers(0, 20), max_size=40), ts=st.integers(-1, 21))
def test_late_events_are_placed_after_equal_times(times: list[int], ts: int) -> None:
    ordered = sorted(times)
    i = insertion_index(len(ordered), ts, ordered.__getitem__)
    assert i == bisect.bisect_right(ordered, ts)


@given(op=st.sampled_from(["gt", "gte"]), n=st.integers(0, 100),
       threshold=st.floats(-5, 105, allow_nan=False))
def test_count_thresholds_compare_as_integers(op: str, n: int, threshold: float) -> None:
    least = at_least(op, threshold)
    assert least is not None and (n >= least) == OPERATORS[op](n, threshold)
    assert at_least("eq", threshold) is None and at_least("gte", math.inf) is None


def test_a_flood_keeps_only_the_timestamps_the_condition_needs(ruleset: Ruleset) -> None:
    engine = Engine(ruleset, None, OPTIONS)
    for i in range(20_000):  # 20,000 SYNs to one port within one 5 s window
        engine.process(event(T0 + i * 1e-4, PACKET, **{
            "tcp.flags.syn": True, "destination.ip": "198.18.0.1", "destination.port": 80}))
    rule = next(r for r in ruleset.correlations if r.group_by == ("destination.ip",
                                                                  "destination.port"))
    state = engine.states[rule.id]
    assert isinstance(state, CountingState)
    (group,) = state.groups.values()
    assert len(group.queue) == 3  # gte 3: the newest three decide
    assert len(engine.books[rule.id].open) == 1
