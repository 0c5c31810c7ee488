"""Correlation groups under a spoofed-source flood: compact windows, eviction that keeps evidence.

The counting state's compact windows (bare one-event groups, list buckets, lazily allocated
parts) must give exactly what the reference state gives on flood-shaped random streams — many
one-off sources, a few repeat sources, late events, a small ``max_groups`` so that eviction runs
all the time — and a flood of new groups must not evict a group that already has evidence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.detection import Engine, EngineOptions, Ruleset, counting
from agent.detection.correlation import CorrelationState
from agent.detection.counting import CountingState
from tests.detection.helpers import PACKET, T0, event, load, rule_doc
from tests.detection.test_correlations import corr, syn_rule

OPTIONS = EngineOptions(late_allowance_seconds=2.0)
SMALL = {"max_groups": 8, "update_interval": 1, "quiet_period": 3}


@pytest.fixture(scope="module")
def ruleset(tmp_path_factory: pytest.TempPathFactory) -> Ruleset:
    docs = [
        syn_rule(),
        rule_doc({"sel": {"tcp.flags.ack": True}, "condition": "sel"},
                 {"product": "vedette", "category": "network_packet"}, name="ack"),
        # several base rules: an event of both is counted once, by the first
        corr("value_count", {"gte": 2, "field": "destination.port"}, ["syn", "ack"],
             ["source.ip"], timespan="4s", vedette={**SMALL, "max_groups": 6}),
        corr("event_count", {"gte": 3}, ["ack", "syn"], ["destination.ip"], timespan="3s",
             vedette={**SMALL, "max_groups": 2}),
        # bare groups: two values or more needed
        corr("value_count", {"gte": 3, "field": "destination.port"}, ["syn"],
             ["source.ip", "destination.ip"], timespan="5s", vedette=SMALL),
        corr("value_count", {"gt": 1, "field": "destination.port"}, ["syn"], ["source.ip"],
             timespan="3s", vedette={**SMALL, "max_groups": 4}),
        # never bare (one value can meet the condition), same eviction
        corr("value_count", {"gte": 1, "field": "destination.port"}, ["syn"], ["source.ip"],
             timespan="2s", vedette={**SMALL, "max_groups": 5}),
        corr("event_count", {"gte": 2}, ["syn"], ["source.ip"], timespan="4s",
             vedette={**SMALL, "max_groups": 6}),
    ]
    report = load(tmp_path_factory.mktemp("eviction"), *docs)
    assert not report.errors and not report.rejections
    return report.ruleset


def _reference(ruleset: Ruleset) -> Engine:
    engine = Engine(ruleset, None, OPTIONS)
    engine.states = {rid: CorrelationState(s.rule) for rid, s in engine.states.items()}
    engine._plans = engine._plan(engine.states)
    return engine


SOURCES = st.one_of(
    st.integers(0, 10_000).map(lambda i: f"198.19.{i // 250}.{i % 250}"),  # spoofed: one-off
    st.sampled_from(["198.18.0.66", "198.18.0.67", "198.18.0.68"]),  # repeat sources
)
STEPS = st.sampled_from([0.0, 0.01, 0.05, 0.3, 1.0, 2.5, -0.1, -1.0, -3.0])


@st.composite
def floods(draw: st.DrawFn) -> list[tuple[float, dict[str, Any], bool]]:
    out = []
    ts = T0
    for _ in range(draw(st.integers(1, 120))):
        ts += draw(STEPS)
        fields = {"tcp.flags.syn": draw(st.sampled_from([True, True, False])),
                  "tcp.flags.ack": draw(st.booleans()), "source.ip": draw(SOURCES),
                  "destination.ip": draw(st.sampled_from(["198.18.0.10", "198.18.0.11"])),
                  "destination.port": draw(st.integers(1, 6))}
        out.append((ts, fields, draw(st.booleans())))
    return out


def _kept(group: Any) -> tuple[Any, ...]:
    if isinstance(group, counting._Window):
        return group.kept()
    return (list(group.queue), dict(group.seen), [list(b) for b in group.buckets])


@settings(max_examples=300, deadline=None)
@given(stream=floods())
def test_compact_windows_give_the_reference_alerts_under_a_flood(
    ruleset: Ruleset, stream: list[tuple[float, dict[str, Any], bool]]
) -> None:
    fast, ref = Engine(ruleset, None, OPTIONS), _reference(ruleset)
    assert {type(s) for s in fast.states.values()} == {CountingState}
    now = T0
    for ts, fields, tick in stream:
        if tick and ts > now:
            now = ts
            assert fast.advance(now) == ref.advance(now)
        assert fast.process(event(ts, PACKET, **fields)) == ref.process(
            event(ts, PACKET, **fields)), (ts, fields)
    for rid, state in fast.states.items():
        other = ref.states[rid]
        assert state.evictions == other.evictions
        assert list(state.groups) == list(other.groups)
        assert list(state.fresh) == list(other.fresh)
        assert [_kept(g) for g in state.groups.values()] == [
            _kept(g) for g in other.groups.values()]
    # the shared empty parts of bare and event_count windows were never written
    assert not counting._NO_ORDER and not counting._NO_BUCKETS and not counting._NO_VALUES
    end = max(now, fast.watermark) + 60
    assert fast.advance(end) == ref.advance(end)


@pytest.mark.parametrize("reference", [False, True])
def test_a_flood_of_new_sources_does_not_evict_a_scanner_with_evidence(
    tmp_path: Path, reference: bool
) -> None:
    rules = load(tmp_path, syn_rule(), corr(
        "value_count", {"gte": 5, "field": "destination.port"}, ["syn"], ["source.ip"],
        timespan="60s", vedette={"max_groups": 100}))
    engine = _reference(rules.ruleset) if reference else Engine(rules.ruleset, None, OPTIONS)
    (state,) = engine.states.values()
    alerts = []
    ts = T0

    def syn(source: str, port: int) -> None:
        alerts.extend(engine.process(event(ts, PACKET, **{
            "tcp.flags.syn": True, "source.ip": source, "destination.port": port})))

    for port in (1, 2):  # the scanner's first two probes: its group has evidence
        syn("198.18.0.66", port)
        ts += 1.0
    for port in (3, 4, 5):  # then one probe every 10 s, 1000 spoofed sources in between
        for i in range(1000):
            syn(f"198.{19 + port}.{i // 250}.{i % 250}", 80)
            ts += 0.01
        syn("198.18.0.66", port)
    assert [a.group for a in alerts] == [{"source.ip": "198.18.0.66"}]
    assert state.evictions > 2000 and ("198.18.0.66",) in state.groups
    assert len(state.groups) == 100


def test_kept_groups_over_their_share_are_evicted_least_recently_used(tmp_path: Path) -> None:
    rules = load(tmp_path, syn_rule(), corr(
        "value_count", {"gte": 50, "field": "destination.port"}, ["syn"], ["source.ip"],
        timespan="60s", vedette={"max_groups": 8}))
    engine = Engine(rules.ruleset, None, OPTIONS)
    (state,) = engine.states.values()
    for i in range(8):  # eight sources with two probes each: all kept
        for port in (1, 2):
            engine.process(event(T0 + i, PACKET, **{
                "tcp.flags.syn": True, "source.ip": f"198.18.0.{i}", "destination.port": port}))
    assert not state.fresh and len(state.groups) == 8
    for i in range(5):  # new sources: kept groups are cut back to 6, then fresh evict fresh
        engine.process(event(T0 + 10 + i, PACKET, **{
            "tcp.flags.syn": True, "source.ip": f"198.19.0.{i}", "destination.port": 1}))
    assert list(state.groups) == [("198.18.0.2",), ("198.18.0.3",), ("198.18.0.4",),
                                  ("198.18.0.5",), ("198.18.0.6",), ("198.18.0.7",),
                                  ("198.19.0.3",), ("198.19.0.4",)]
    assert list(state.fresh) == [("198.19.0.3",), ("198.19.0.4",)]
    assert state.evictions == 5
