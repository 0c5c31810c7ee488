"""Correlation windows, open alerts and cooldowns through the detection checkpoint.

The round trip is held to the strongest standard there is: an engine that ran a random stream
to a random point, was checkpointed and restored into a fresh engine (the agent after
``kill -9``), then runs the rest of the stream, produces exactly the alert snapshots the engine
that never stopped produces — for every correlation type, on both the counting fast path and
the reference state, with late events, eviction, cooldowns and per-minute caps.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.alerts import Alert
from agent.detection import Engine, EngineOptions, Ruleset, load_rules
from agent.detection import state_codec as codec
from agent.detection.checkpoint import AlertCheckpoint
from agent.detection.correlation import CorrelationState
from agent.detection.counting import CountingState
from agent.events import Event, LogSource
from tests.detection.helpers import PACKET, T0, event, load, rule_doc
from tests.detection.test_correlations import corr, syn_rule

OPTIONS = EngineOptions(late_allowance_seconds=2.0)
FAST = {"max_groups": 3, "update_interval": 2, "quiet_period": 4, "cooldown": 3,
        "max_alerts_per_minute": 4}


def _ack_rule() -> dict[str, Any]:
    return rule_doc({"sel": {"tcp.flags.ack": True}, "condition": "sel"},
                    {"product": "vedette", "category": "network_packet"}, name="ack")


@pytest.fixture(scope="module")
def ruleset(tmp_path_factory: pytest.TempPathFactory) -> Ruleset:
    docs = [
        syn_rule(vedette={"group_by": ["source.ip"], **FAST}),
        _ack_rule(),
        corr("event_count", {"gte": 3}, ["syn"], ["destination.ip", "destination.port"],
             timespan="5s", vedette=FAST),
        corr("event_count", {"eq": 2}, ["syn"], ["destination.ip"], timespan="4s"),
        corr("event_count", {"lt": 2}, ["syn"], ["source.ip"], timespan="3s",
             vedette=FAST),
        corr("event_count", {"gte": 2}, ["syn", "ack"], ["destination.ip"], timespan="3s"),
        corr("value_count", {"gte": 2, "field": "destination.port"}, ["syn"], ["source.ip"],
             timespan="5s", vedette=FAST),
        corr("value_count", {"neq": 2, "field": "destination.port"}, ["syn"],
             ["destination.ip"], timespan="2s", vedette={"max_groups": 2}),
        corr("value_sum", {"gte": 100, "field": "source.port"}, ["syn"], ["destination.ip"],
             timespan="4s", vedette=FAST),
        corr("value_avg", {"gt": 50, "field": "source.port"}, ["syn"], ["source.ip"],
             timespan="3s"),
        corr("temporal", None, ["syn", "ack"], ["source.ip"], timespan="4s", vedette=FAST),
        corr("temporal_ordered", None, ["syn", "ack"], ["destination.ip"], timespan="4s"),
    ]
    report = load(tmp_path_factory.mktemp("window-checkpoint"), *docs)
    assert not report.errors and not report.rejections
    return report.ruleset


def _engine(ruleset: Ruleset, reference: bool) -> Engine:
    engine = Engine(ruleset, None, OPTIONS)
    if reference:  # every correlation on the reference state
        engine.states = {rid: CorrelationState(s.rule, 2.0) for rid, s in engine.states.items()}
        engine._plans = engine._plan(engine.states)
    return engine


ADDRESSES = st.sampled_from(["198.18.0.1", "198.18.0.2", "198.18.0.3", None, ["198.18.0.9"]])
PORTS = st.sampled_from([22, 80, 443, 1, True, 1.0, "80", None, 60])
STEPS = st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.7, 1.0, 1.5, 3.0, -0.2, -0.5, -1.5, -3.0])


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[float, dict[str, Any], bool]]:
    out = []
    ts = T0
    for _ in range(draw(st.integers(2, 50))):
        ts += draw(STEPS)
        fields = {
            "source.ip": draw(ADDRESSES),
            "destination.ip": draw(ADDRESSES),
            "destination.port": draw(PORTS),
            "source.port": draw(PORTS),
            "tcp.flags.syn": draw(st.sampled_from([True, True, False])),
            "tcp.flags.ack": draw(st.booleans()),
        }
        out.append((ts, {k: v for k, v in fields.items() if v is not None}, draw(st.booleans())))
    return out


def _seen(alerts: list[Alert]) -> list[tuple[Any, ...]]:
    """What a snapshot says (the restored alert keeps one evidence event of its list)."""
    return [(a.id, a.rule.id, str(a.status), a.revision, a.count, a.first_seen, a.last_seen,
             sorted(a.group.items(), key=str), a.message) for a in alerts]


def _feed(engine: Engine, stream: list[tuple[float, dict[str, Any], bool]], now: float
          ) -> tuple[list[Alert], float]:
    out: list[Alert] = []
    for ts, fields, tick in stream:
        if tick and ts > now:
            now = ts
            out += engine.advance(now)
        out += engine.process(event(ts, PACKET, **fields))
    return out, now


@settings(max_examples=150, deadline=None)
@given(stream=streams(), cut=st.floats(0.0, 1.0), reference=st.booleans())
def test_a_restored_engine_carries_on_exactly_as_one_that_never_stopped(
    ruleset: Ruleset, stream: list[tuple[float, dict[str, Any], bool]], cut: float,
    reference: bool,
) -> None:
    k = int(cut * len(stream))
    before, after = stream[:k], stream[k:]
    steady = _engine(ruleset, reference)
    _, now = _feed(steady, before, T0)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = AlertCheckpoint(Path(tmp) / "alert-state.json")
        checkpoint.save_engine(steady)
        restarted = _engine(ruleset, reference)
        checkpoint.restore_engine(restarted)
    assert checkpoint.restored_groups == sum(len(s) for s in steady.states.values())
    expected, end = _feed(steady, after, now)
    got, _ = _feed(restarted, after, now)
    assert _seen(got) == _seen(expected)
    final = max(end, steady.watermark) + 60
    assert _seen(restarted.advance(final)) == _seen(steady.advance(final))


def _ssh_engine() -> Engine:
    rules = Path(__file__).resolve().parents[2] / "rules" / "auth" / "ssh_bruteforce.yml"
    report = load_rules([rules])
    assert not report.errors
    return Engine(report.ruleset, None, EngineOptions())


def _failure(ts: float, ip: str = "198.18.0.7") -> Event:
    return event(ts, LogSource("linux", service="sshd"), event__action="ssh_login",
                 event__outcome="failure", source__ip=ip, user__name="root")


def test_three_failures_before_a_restart_and_two_after_are_a_brute_force(
    tmp_path: Path
) -> None:
    checkpoint = AlertCheckpoint(tmp_path / "alert-state.json")
    before = _ssh_engine()
    assert not [a for i in range(3) for a in before.process(_failure(T0 + i))]
    checkpoint.save_engine(before)
    after = _ssh_engine()
    checkpoint.restore_engine(after)
    assert checkpoint.restored_groups == 1
    alerts = [a for i in range(3, 5) for a in after.process(_failure(T0 + i))]
    assert [a.rule.title for a in alerts] == ["SSH brute force from one source"]
    assert alerts[0].count == 5 and alerts[0].first_seen == T0
    # without the checkpoint the two later failures are two, not five
    fresh = _ssh_engine()
    assert not [a for i in range(3, 5) for a in fresh.process(_failure(T0 + i))]


RULE_ID = "6f1d6c1e-0000-4000-8000-000000000001"


def test_the_windows_of_a_changed_rule_are_not_restored(tmp_path: Path) -> None:
    engine = Engine(load(tmp_path / "a", syn_rule(), corr(
        "event_count", {"gte": 3}, ["syn"], ["source.ip"], id=RULE_ID,
    )).ruleset, None, OPTIONS)
    engine.process(event(T0, PACKET, **{"tcp.flags.syn": True, "source.ip": "198.18.0.1"}))
    checkpoint = AlertCheckpoint(tmp_path / "alert-state.json")
    checkpoint.save_engine(engine)
    changed = Engine(load(tmp_path / "b", syn_rule(), corr(
        "event_count", {"gte": 4}, ["syn"], ["source.ip"], id=RULE_ID,
    )).ruleset, None, OPTIONS)
    checkpoint.restore_engine(changed)
    assert checkpoint.restored_groups == 0 and all(not len(s) for s in changed.states.values())


def test_a_restart_keeps_a_cooldown_and_a_per_minute_cap(tmp_path: Path) -> None:
    ruleset = load(tmp_path / "r", syn_rule(vedette={"group_by": ["source.ip"], **FAST})).ruleset
    (syn,) = ruleset.detections

    def _engine(ruleset: Ruleset, reference: bool) -> Engine:  # no correlations here
        return Engine(ruleset, None, OPTIONS)

    engine = _engine(ruleset, False)
    for i in range(4):  # the cap: 4 alerts a minute
        engine.process(event(T0 + i * 0.1, PACKET, **{"tcp.flags.syn": True,
                                                      "source.ip": f"198.18.1.{i}"}))
    book = engine.books[syn.id]
    assert len(book.opened_at) == 4
    checkpoint = AlertCheckpoint(tmp_path / "alert-state.json")
    checkpoint.save_engine(engine)
    restarted = _engine(ruleset, False)
    checkpoint.restore_engine(restarted)
    fifth = event(T0 + 1, PACKET, **{"tcp.flags.syn": True, "source.ip": "198.18.1.9"})
    assert not [a for a in restarted.process(fifth) if a.rule.id == syn.id]
    assert restarted.books[syn.id].dropped == 1
    # a closed alert's cooldown: the group does not open again right after the restart
    engine = _engine(ruleset, False)
    engine.process(event(T0, PACKET, **{"tcp.flags.syn": True, "source.ip": "198.18.1.0"}))
    engine.advance(T0 + 10)  # quiet: closed, cooldown until T0 + 13
    checkpoint.save_engine(engine)
    restarted = _engine(ruleset, False)
    checkpoint.restore_engine(restarted)
    again = event(T0 + 11, PACKET, **{"tcp.flags.syn": True, "source.ip": "198.18.1.0"})
    assert not [a for a in restarted.process(again) if a.rule.id == syn.id]
    later = event(T0 + 14, PACKET, **{"tcp.flags.syn": True, "source.ip": "198.18.1.0"})
    assert [a.status for a in restarted.process(later) if a.rule.id == syn.id] == ["open"]


def test_the_checkpoint_is_bounded_most_recent_groups_first(tmp_path: Path) -> None:
    engine = Engine(load(tmp_path / "r", syn_rule(), corr(
        "value_count", {"gte": 5000, "field": "destination.port"}, ["syn"], ["source.ip"],
        timespan="1h", vedette={"max_groups": 100_000})).ruleset, None, OPTIONS)
    (state,) = engine.states.values()
    assert isinstance(state, CountingState)
    for i in range(200):  # 200 sources, each scanning 1,100 ports: 220,000 values
        source = f"198.18.0.{i}"
        for port in range(1100):
            engine.process(event(T0 + i + port / 2000, PACKET, **{
                "tcp.flags.syn": True, "destination.port": port, "source.ip": source}))
    path = tmp_path / "alert-state.json"
    checkpoint = AlertCheckpoint(path)
    checkpoint.save_engine(engine)
    body = json.loads(path.read_bytes().partition(b"\n")[2])
    groups = body["windows"][state.rule.id]["groups"]
    assert sum(codec.size(g) for g in groups) <= codec.ENTRIES_TOTAL
    assert all(len(g["s"]) <= codec.ENTRIES_PER_LIST for g in groups)
    assert 0 < len(groups) < 200
    assert groups[-1]["k"] == {"t": ["198.18.0.199"]}  # the most recently used is kept
    assert path.stat().st_size < 12 * 1024 * 1024
