"""The six correlation types on sliding event-time windows, timers, late events, bounds."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from agent.alerts import Status
from agent.detection import EngineOptions
from agent.metrics import AgentMetrics
from tests.detection.helpers import PACKET, PROC, T0, engine_for, event, rule_doc, run


def syn_rule(**extra: Any) -> dict[str, Any]:
    return rule_doc(
        {"sel": {"tcp.flags.syn": True}, "condition": "sel"},
        {"product": "vedette", "category": "network_packet"},
        name="syn",
        **extra,
    )


def corr(
    ctype: str,
    condition: dict[str, Any] | None,
    rules: list[str],
    group_by: list[str],
    timespan: str = "10s",
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": ctype,
        "rules": rules,
        "group-by": group_by,
        "timespan": timespan,
    }
    if condition is not None:
        body["condition"] = condition
    if "generate" in extra:
        body["generate"] = extra.pop("generate")
    doc = {
        "title": f"{ctype} test",
        "id": extra.pop("id", None) or _uuid(),
        "level": "high",
        "correlation": body,
    }
    doc.update(extra)
    return doc


def _uuid() -> str:
    return str(uuid.uuid4())


def syn(ts: float, src: str = "198.18.0.5", dst: str = "198.18.0.1", port: int = 80) -> Any:
    return event(
        ts,
        PACKET,
        **{
            "source.ip": src,
            "destination.ip": dst,
            "destination.port": port,
            "tcp.flags.syn": True,
        },
    )


def opened(alerts: list[Any]) -> list[Any]:
    return [a for a in alerts if a.status is Status.OPEN]


def test_event_count_fires_once_and_rearms(tmp_path: Path) -> None:
    engine = engine_for(
        tmp_path,
        syn_rule(),
        corr("event_count", {"gte": 5}, ["syn"], ["destination.ip"], vedette={"quiet_period": 5}),
    )
    burst = [syn(T0 + i * 0.1) for i in range(20)]
    alerts = run(engine, burst)
    first = opened(alerts)
    assert len(first) == 1
    assert first[0].count == 5 and first[0].group == {"destination.ip": "198.18.0.1"}
    assert first[0].first_seen == T0 and first[0].last_seen == T0 + 0.4
    # the base rule stays silent (referenced without generate)
    assert all(a.rule.title == "event_count test" for a in alerts)
    # the window turns false, the alert closes after the quiet period, a new burst re-fires
    closed = engine.advance(T0 + 30)
    assert [a.status for a in closed] == [Status.CLOSED] and closed[0].count == 20
    again = opened(run(engine, [syn(T0 + 100 + i * 0.1) for i in range(6)]))
    assert len(again) == 1 and again[0].id != first[0].id


def test_sliding_window_sees_a_burst_across_a_bucket_boundary(tmp_path: Path) -> None:
    engine = engine_for(
        tmp_path,
        syn_rule(),
        corr("event_count", {"gte": 10}, ["syn"], ["destination.ip"], timespan="10s"),
    )
    events = [syn(T0 + 5 + i) for i in range(10)]  # 5..14 s: no fixed 10 s bucket holds 10
    assert len(opened(run(engine, events))) == 1


def test_event_count_window_excludes_old_events(tmp_path: Path) -> None:
    engine = engine_for(
        tmp_path,
        syn_rule(),
        corr("event_count", {"gte": 3}, ["syn"], ["destination.ip"], timespan="10s"),
    )
    assert not run(engine, [syn(T0), syn(T0 + 6), syn(T0 + 12), syn(T0 + 18)])


def test_value_count_counts_distinct_values_per_group(tmp_path: Path) -> None:
    engine = engine_for(
        tmp_path,
        syn_rule(),
        corr(
            "value_count",
            {"gte": 5, "field": "destination.port"},
            ["syn"],
            ["source.ip", "destination.ip"],
            timespan="30s",
        ),
    )
    same_port = [syn(T0 + i, port=22) for i in range(20)]
    assert not run(engine, same_port)
    scan = [syn(T0 + 20 + i * 0.1, src="198.18.0.9", port=1000 + i) for i in range(8)]
    alerts = opened(run(engine, scan))
    assert len(alerts) == 1
    assert alerts[0].group == {"source.ip": "198.18.0.9", "destination.ip": "198.18.0.1"}
    assert "value_count 5" in alerts[0].message


def test_value_sum_and_value_avg(tmp_path: Path) -> None:
    base = rule_doc(
        {"sel": {"http.response.body.bytes|gte": 0}, "condition": "sel"},
        {"product": "vedette", "category": "web_access"},
        name="resp",
    )
    total = corr(
        "value_sum",
        {"gte": 1000, "field": "http.response.body.bytes"},
        ["resp"],
        ["source.ip"],
        timespan="60s",
        generate=True,
    )
    mean = corr(
        "value_avg",
        {"gt": 400, "field": "http.response.body.bytes"},
        ["resp"],
        ["source.ip"],
        timespan="60s",
        generate=True,
    )
    engine = engine_for(tmp_path, base, total, mean)
    web = PACKET._replace(category="web_access")
    sizes = [300, 300, 300, 300]
    alerts = run(
        engine,
        [
            event(T0 + i, web, **{"source.ip": "a", "http.response.body.bytes": s})
            for i, s in enumerate(sizes)
        ],
    )
    titles = {a.rule.title for a in opened(alerts)}
    assert titles == {"value_sum test", "test rule"}  # sum reached 1200; generate keeps base
    alerts = run(
        engine,
        [
            event(T0 + 10, web, **{"source.ip": "b", "http.response.body.bytes": 900}),
            event(T0 + 11, web, **{"source.ip": "b", "http.response.body.bytes": 10}),
        ],
    )
    # the base rule's alert is still open (one per rule), so only the average opens a new one
    assert {a.rule.title for a in opened(alerts)} == {"value_avg test"}


def _proc_rule(name: str, image: str) -> dict[str, Any]:
    return rule_doc({"sel": {"Image|endswith": image}, "condition": "sel"}, name=name)


def test_temporal_needs_every_rule_within_the_window_in_any_order(tmp_path: Path) -> None:
    engine = engine_for(
        tmp_path,
        _proc_rule("a", "/whoami"),
        _proc_rule("b", "/uname"),
        corr("temporal", None, ["a", "b"], ["User"], timespan="60s"),
    )
    p = PROC
    alerts = run(
        engine,
        [
            event(T0, p, **{"process.executable": "/usr/bin/uname", "user.name": "x"}),
            event(T0 + 70, p, **{"process.executable": "/usr/bin/whoami", "user.name": "x"}),
            event(T0 + 71, p, **{"process.executable": "/usr/bin/whoami", "user.name": "y"}),
        ],
    )
    assert not alerts
    alerts = run(
        engine, [event(T0 + 80, p, **{"process.executable": "/bin/uname", "user.name": "x"})]
    )
    assert len(opened(alerts)) == 1 and opened(alerts)[0].group == {"user.name": "x"}


def test_temporal_extended_condition(tmp_path: Path) -> None:
    doc = corr("temporal", None, ["a", "b"], ["User"], timespan="60s")
    doc["correlation"]["condition"] = "a and not b"
    del doc["correlation"]["rules"]
    engine = engine_for(tmp_path, _proc_rule("a", "/whoami"), _proc_rule("b", "/uname"), doc)
    alerts = run(engine, [event(T0, PROC, **{"process.executable": "/whoami", "user.name": "x"})])
    assert len(opened(alerts)) == 1


def test_temporal_ordered_requires_the_order(tmp_path: Path) -> None:
    engine = engine_for(
        tmp_path,
        _proc_rule("a", "/curl"),
        _proc_rule("b", "/run"),
        corr("temporal_ordered", None, ["a", "b"], ["User"], timespan="60s"),
    )

    def e(ts: float, exe: str, user: str) -> Any:
        return event(ts, PROC, **{"process.executable": exe, "user.name": user})

    assert not run(engine, [e(T0, "/tmp/run", "u"), e(T0 + 1, "/bin/curl", "u")])
    assert not run(engine, [e(T0 + 100, "/bin/curl", "v"), e(T0 + 200, "/tmp/run", "v")])
    alerts = run(engine, [e(T0 + 300, "/bin/curl", "w"), e(T0 + 310, "/tmp/run", "w")])
    assert len(opened(alerts)) == 1 and opened(alerts)[0].first_seen == T0 + 300


def test_lt_condition_fires_on_the_timer_without_events(tmp_path: Path) -> None:
    engine = engine_for(
        tmp_path,
        syn_rule(),
        corr("event_count", {"lt": 2}, ["syn"], ["destination.ip"], timespan="30s"),
    )
    assert not run(engine, [syn(T0 + i * 5) for i in range(10)])  # steady: 6 per window
    assert not engine.advance(T0 + 60)
    fired = opened(engine.advance(T0 + 76))  # last events at 40 and 45: < 2 after 45+30
    assert len(fired) == 1 and fired[0].group == {"destination.ip": "198.18.0.1"}
    assert not opened(engine.advance(T0 + 200))  # fires once, then the idle group expires


def test_late_events_inside_the_allowance_count_and_older_ones_do_not(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    engine = engine_for(
        tmp_path,
        syn_rule(),
        corr("event_count", {"gte": 3}, ["syn"], ["destination.ip"], timespan="10s"),
        options=EngineOptions(late_allowance_seconds=5),
        metrics=metrics,
    )
    assert not run(engine, [syn(T0 + 20), syn(T0 + 2)], tick=False)  # 18 s late: ignored
    alerts = run(engine, [syn(T0 + 17), syn(T0 + 21)], tick=False)  # 3 s late: accepted
    assert len(opened(alerts)) == 1 and opened(alerts)[0].first_seen == T0 + 17
    engine.advance(T0 + 22)
    assert registry.get_sample_value("vedette_detection_late_events_total") == 1


def test_group_state_is_bounded_and_evictions_counted(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    doc = corr(
        "value_count",
        {"gte": 50, "field": "destination.port"},
        ["syn"],
        ["source.ip"],
        timespan="30s",
        vedette={"max_groups": 100},
    )
    engine = engine_for(tmp_path, syn_rule(), doc, metrics=metrics)
    for i in range(5000):  # 5000 spoofed sources, one SYN each
        engine.process(syn(T0 + i * 0.001, src=f"198.19.{i // 256}.{i % 256}", port=i))
    state = engine.states[doc["id"]]
    assert len(state) == 100
    engine.advance(T0 + 5)
    assert (
        registry.get_sample_value("vedette_correlation_group_evictions_total", {"rule": doc["id"]})
        == 4900
    )
    assert registry.get_sample_value("vedette_correlation_groups", {"rule": doc["id"]}) == 100
    engine.advance(T0 + 100)  # no newer event: nothing is idle in event time yet
    assert len(state) == 100
    engine.process(syn(T0 + 100, src="198.18.200.1"))
    engine.advance(T0 + 100)  # idle in event time: expired
    assert len(state) == 1


def test_events_without_group_by_fields_are_ignored(tmp_path: Path) -> None:
    engine = engine_for(
        tmp_path, syn_rule(), corr("event_count", {"gte": 2}, ["syn"], ["destination.ip"])
    )
    bare = [event(T0 + i, PACKET, **{"tcp.flags.syn": True}) for i in range(5)]
    assert not run(engine, bare)


def test_aliases_map_group_by_per_rule(tmp_path: Path) -> None:
    a = _proc_rule("a", "/curl")
    b = rule_doc(
        {"sel": {"DestinationPort": 4444}, "condition": "sel"},
        {"product": "linux", "category": "network_connection"},
        name="b",
    )
    doc = corr("temporal", None, ["a", "b"], ["actor"], timespan="60s")
    doc["correlation"]["aliases"] = {"actor": {"a": "User", "b": "User"}}
    engine = engine_for(tmp_path, a, b, doc)
    net = PROC._replace(category="network_connection")
    alerts = run(
        engine,
        [
            event(T0, PROC, **{"process.executable": "/curl", "user.name": "x"}),
            event(T0 + 1, net, **{"destination.port": 4444, "user.name": "x"}),
        ],
    )
    # the alert names the group by the alias: the field the correlation defines
    assert len(opened(alerts)) == 1 and opened(alerts)[0].group == {"actor": "x"}


def test_an_alias_can_turn_the_direction_around(tmp_path: Path) -> None:
    """A rule counting answers (resets sent by the target) names the party that acted: with
    aliases ``source.ip`` is the peer the answers went to (the scanner)."""
    doc = corr("event_count", {"gte": 2}, ["syn"], ["source.ip", "destination.ip"],
               timespan="60s")
    doc["correlation"]["aliases"] = {"source.ip": {"syn": "destination.ip"},
                                     "destination.ip": {"syn": "source.ip"}}
    engine = engine_for(tmp_path, syn_rule(), doc)
    alerts = run(engine, [syn(T0), syn(T0 + 1)])
    (alert,) = opened(alerts)
    first = syn(T0).fields
    assert alert.group == {"source.ip": first["destination.ip"],
                           "destination.ip": first["source.ip"]}
    assert alert.matched["source.ip"] == first["destination.ip"]


def test_backlog_of_old_events_keeps_its_windows_under_wall_clock_ticks(tmp_path: Path) -> None:
    """A log backlog read after a restart: events an hour old, timers ticking with wall time."""
    engine = engine_for(tmp_path, syn_rule(), corr("event_count", {"gte": 5}, ["syn"],
                                                  ["destination.ip"], timespan="60s"))
    wall = T0 + 3600
    alerts = []
    for i in range(6):
        alerts += engine.process(syn(T0 + i * 10))
        alerts += engine.advance(wall + i)  # the daemon's one-second tick
    assert len(opened(alerts)) == 1


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.one_of(st.none(), st.integers(), st.text(max_size=4),
                                 st.lists(st.integers(), max_size=2),
                                 st.dictionaries(st.text(max_size=2), st.integers(), max_size=1)),
                       min_size=1, max_size=20))
def test_hostile_group_and_value_fields(tmp_path_factory: Any, values: list[Any]) -> None:
    folder = tmp_path_factory.mktemp("hostile")
    engine = engine_for(folder, syn_rule(), corr(
        "value_count", {"gte": 2, "field": "destination.port"}, ["syn"], ["source.ip"]),
        corr("value_sum", {"gte": 2, "field": "destination.port"}, ["syn"], ["source.ip"]))
    for i, value in enumerate(values):
        engine.process(event(T0 + i, PACKET, **{"tcp.flags.syn": True, "source.ip": value,
                                               "destination.port": values[-1 - i]}))
    engine.advance(T0 + 1000)
