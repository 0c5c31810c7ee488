"""Per-group correlation memory does not grow with the event rate.

The window parts (distinct values with their newest timestamps, one-second buckets) are checked
against a brute-force model that keeps every event; then floods of one group through every
correlation type must leave only a handful of stored items per group.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.detection import Engine, EngineOptions
from agent.detection.correlation import CorrelationState, forget, sight, tally
from agent.detection.counting import CountingState, _Window
from tests.detection.helpers import PACKET, PROC, T0, engine_for, event, rule_doc
from tests.detection.test_correlations import corr, syn_rule

SPAN = 3.0
LATE = st.sampled_from([0.0, 0.0, 0.0, 0.05, 0.3, 0.7, 1.0, 1.5, 2.5, 3.5, 5.0])


@st.composite
def late_stream(draw: st.DrawFn) -> list[tuple[float, int]]:
    """Events moving forward in small steps, some of them late (up to 5 s back)."""
    out, now = [], T0
    for _ in range(draw(st.integers(1, 80))):
        now += draw(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9, 1.0, 2.0, 4.0]))
        out.append((now - draw(LATE), draw(st.integers(0, 6))))
    return out


@settings(max_examples=300, deadline=None)
@given(stream=late_stream())
def test_distinct_values_keep_their_newest_time_in_the_window(
    stream: list[tuple[float, int]],
) -> None:
    seen: OrderedDict[Any, float] = OrderedDict()
    late: list[Any] = []
    newest = -1e18
    kept: list[tuple[float, int]] = []  # the model: every event, never forgotten
    for ts, value in stream:
        if ts > newest - SPAN:
            sight(seen, late, value, ts, newest)
        newest = max(newest, ts)
        kept.append((ts, value))
        limit = newest - SPAN
        forget(seen, late, limit)
        model: dict[int, float] = {}
        for t, v in kept:
            if t > limit and t > model.get(v, -1e18):
                model[v] = t
        assert dict(seen) == model
        assert len(late) <= 2 * len(seen) + 17


@settings(max_examples=300, deadline=None)
@given(stream=late_stream())
def test_the_fast_paths_values_keep_their_newest_time_in_the_window(
    stream: list[tuple[float, int]],
) -> None:
    """The counting state's value_count window: values set in place, expired through a sorted
    snapshot (and the heap of late ones)."""
    window = _Window(None, stream[0][0])
    newest = stream[0][0]
    kept: list[tuple[float, int]] = []
    for ts, value in stream:
        if ts > newest - SPAN:
            window.sight(value, ts, newest)
            tally(window.buckets, ts, 0.0)
            window.front = min(window.front, ts)
        newest = max(newest, ts)
        kept.append((ts, value))
        limit = newest - SPAN
        if window.front <= limit:
            window.expire(limit, newest)
        model: dict[int, float] = {}
        for t, v in kept:
            if t > limit and t > model.get(v, -1e18):
                model[v] = t
        assert window.seen == model
        # a snapshot of the window at its last rebuild: never more than the values there are
        assert len(window.order) <= len({v for _, v in kept})
        assert len(window.late) <= 2 * len(model) + 17


@settings(max_examples=200, deadline=None)
@given(stream=late_stream())
def test_buckets_count_the_window_to_the_second(stream: list[tuple[float, int]]) -> None:
    buckets: deque[list[Any]] = deque()
    newest = -1e18
    live: list[tuple[float, int]] = []  # the model: events counted and not yet expired
    for ts, value in stream:
        if ts > newest - SPAN:
            tally(buckets, ts, float(value))
            live.append((ts, value))
        newest = max(newest, ts)
        limit = newest - SPAN
        while buckets and buckets[0][1] <= limit:
            buckets.popleft()
        # a second's events leave together, when the newest of them does
        last: dict[float, float] = {}
        for t, _ in live:
            last[t // 1.0] = max(t, last.get(t // 1.0, t))
        live = [(t, v) for t, v in live if last[t // 1.0] > limit]
        seconds = [b[0] for b in buckets]
        assert seconds == sorted(s for s in last if last[s] > limit)
        assert sum(b[2] for b in buckets) == len(live)
        assert sum(b[3] for b in buckets) == sum(v for _, v in live)
        assert buckets[0][4] == min(t for t, _ in live)
        assert all(t > limit - 1.0 for t, _ in live)  # at most one second too long


# ------------------------------------------------------------------ floods into one group

FLOOD = 1_000_000


def test_a_million_packets_of_one_source_keep_a_few_items(tmp_path: Path) -> None:
    """1,000,000 SYNs from one source to 5 ports within 100 s, some late, into a 60 s
    value_count window: the group holds 5 values and at most 62 buckets, not 600,000 events."""
    doc = corr("value_count", {"gte": 10, "field": "destination.port"}, ["syn"], ["source.ip"],
               timespan="60s")
    engine = engine_for(tmp_path, syn_rule(), doc)
    state = engine.states[doc["id"]]
    assert isinstance(state, CountingState)
    fields = {"tcp.flags.syn": True, "source.ip": "198.18.0.5", "destination.ip": "198.18.0.1"}
    ports = [{**fields, "destination.port": p} for p in (22, 80, 443, 8080, 3306)]
    largest = 0
    for i in range(FLOOD):
        # every fifth packet is late (its port newer than before: each goes to the heap)
        ts = T0 + i * 1e-4 - (2e-4 if i % 5 == 4 else 0.0)
        engine.process(event(ts, PACKET, **ports[i % 5]))
        if i % 50_000 == 0:
            (group,) = state.groups.values()
            largest = max(largest, len(group.buckets))
            assert len(group.late) <= 2 * 5 + 17
    (group,) = state.groups.values()
    assert len(group.seen) == 5 and len(group.order) <= 5 and len(group.late) <= 2 * 5 + 17
    assert max(largest, len(group.buckets)) <= 62
    assert not engine.books[doc["id"]].open  # 5 ports never reach 10


def _web(ts: float, size: int) -> Any:
    return event(ts, PACKET._replace(category="web_access"),
                 **{"source.ip": "198.18.0.7", "http.response.body.bytes": size})


def test_floods_through_every_reference_type_stay_bounded(tmp_path: Path) -> None:
    base = rule_doc({"sel": {"http.response.body.bytes|gte": 0}, "condition": "sel"},
                    {"product": "vedette", "category": "web_access"}, name="resp")
    big = rule_doc({"sel": {"http.response.body.bytes|gte": 1000}, "condition": "sel"},
                   {"product": "vedette", "category": "web_access"}, name="big")
    value = {"field": "http.response.body.bytes"}
    docs = [
        corr("value_sum", {"gte": 1e12, **value}, ["resp"], ["source.ip"], timespan="30s"),
        corr("value_avg", {"gt": 1e9, **value}, ["resp"], ["source.ip"], timespan="30s"),
        corr("value_count", {"lt": 3, **value}, ["resp"], ["source.ip"], timespan="30s"),
        corr("event_count", {"lte": 5}, ["resp"], ["source.ip"], timespan="30s"),
        corr("temporal", None, ["resp", "big"], ["source.ip"], timespan="30s"),
        corr("temporal_ordered", None, ["resp", "big"], ["source.ip"], timespan="30s"),
    ]
    engine = engine_for(tmp_path, base, big, *docs, options=EngineOptions(5.0))
    states = [engine.states[d["id"]] for d in docs]
    assert all(isinstance(s, CorrelationState) for s in states)
    for i in range(200_000):  # 200,000 responses of one client within 50 s, some late
        ts = T0 + i * 2.5e-4 - (0.7 if i % 97 == 0 else 0.0)
        engine.process(_web(ts, (i % 4) * 700))
    for state in states:
        assert isinstance(state, CorrelationState)
        (group,) = state.groups.values()
        assert len(group.queue) <= 6 and len(group.buckets) <= 32
        assert len(group.seen) <= 4 and len(group.late) <= 2 * 4 + 17
    (group,) = states[0].groups.values()  # value_sum: the window's 30 s of events, in buckets
    assert group.n == sum(b[2] for b in group.buckets) > 100_000
    assert group.total == sum(b[3] for b in group.buckets)


def test_a_flood_of_one_process_rule_keeps_one_time_per_rule(tmp_path: Path) -> None:
    a = rule_doc({"sel": {"Image|endswith": "/whoami"}, "condition": "sel"}, name="a")
    b = rule_doc({"sel": {"Image|endswith": "/id"}, "condition": "sel"}, name="b")
    doc = corr("temporal", None, ["a", "b"], ["User"], timespan="60s")
    engine: Engine = engine_for(tmp_path, a, b, doc)
    for i in range(50_000):
        exe = "/usr/bin/whoami" if i % 2 else "/usr/bin/id"
        engine.process(event(T0 + i * 1e-3, PROC, **{"process.executable": exe,
                                                     "user.name": "x"}))
    state = engine.states[doc["id"]]
    assert isinstance(state, CorrelationState)
    (group,) = state.groups.values()
    assert list(group.seen) == sorted(group.seen, key=group.seen.__getitem__)
    assert len(group.seen) == 2 and group.n == 50_000 and len(group.buckets) == 50
