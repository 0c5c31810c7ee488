"""Alert lifecycle: open → rate-limited updates → close; cooldown, caps, meta-alert, ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.alerts import Status, alert_id
from agent.detection import SUPPRESSION_RULE, EngineOptions
from tests.detection.helpers import T0, engine_for, proc, rule_doc


def curl_rule(**vedette: Any) -> dict[str, Any]:
    return rule_doc(
        {"sel": {"Image|endswith": "/curl"}, "condition": "sel"},
        id="5d0c9d4e-6f1c-4b8e-9d55-0000000000c1",
        title="curl",
        author="Ann, Bob",
        tags=["attack.t1105", "attack.command-and-control"],
        references=["https://example.org/curl"],
        description="curl ran",
        **({"vedette": vedette} if vedette else {}),
    )


def curl(ts: float, user: str = "u", n: int = 0) -> Any:
    return proc(
        ts,
        process__executable="/usr/bin/curl",
        user__name=user,
        process__command_line=f"curl http://198.18.0.{n % 250}/",
    )


def test_one_ongoing_attack_is_one_alert_updated(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, curl_rule(update_interval=60, quiet_period=120))
    sent = []
    for i in range(3000):  # one event every 0.1 s for 5 minutes
        ts = T0 + i * 0.1
        sent += engine.advance(ts)
        sent += engine.process(curl(ts, n=i))
    sent += engine.advance(T0 + 300 + 121)
    statuses = [a.status for a in sent]
    assert statuses[0] is Status.OPEN and statuses[-1] is Status.CLOSED
    assert statuses.count(Status.OPEN) == 1
    assert 4 <= statuses.count(Status.UPDATED) <= 6  # about one per update_interval
    assert len({a.id for a in sent}) == 1
    final = sent[-1]
    assert final.count == 3000 and len(final.evidence) == 10
    assert [a.revision for a in sent] == list(range(len(sent)))
    assert final.first_seen == T0 and final.last_seen == T0 + 299.9


def test_alert_carries_rule_metadata_matched_fields_and_deterministic_id(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, curl_rule())
    alert = engine.process(curl(T0))[0]
    assert alert.rule.author == "Ann, Bob" and alert.rule.level == "medium"
    assert alert.rule.tags == ("attack.t1105", "attack.command-and-control")
    assert alert.rule.references == ("https://example.org/curl",)
    assert alert.matched == {"process.executable": "/usr/bin/curl"}
    assert alert.id == alert_id("5d0c9d4e-6f1c-4b8e-9d55-0000000000c1", {}, T0)
    assert alert.evidence[0]["process.command_line"] == "curl http://198.18.0.0/"
    again = engine_for(tmp_path / "other", curl_rule()).process(curl(T0))[0]
    assert again.id == alert.id


def test_group_by_separates_alerts(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, curl_rule(group_by=["User"]))
    alerts = engine.process(curl(T0, "alice")) + engine.process(curl(T0 + 1, "bob"))
    assert [a.group for a in alerts] == [{"user.name": "alice"}, {"user.name": "bob"}]
    assert alerts[0].id != alerts[1].id


def test_cooldown_drops_new_alerts_after_close(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, curl_rule(quiet_period=10, cooldown=100))
    assert engine.process(curl(T0))
    assert [a.status for a in engine.advance(T0 + 11)] == [Status.CLOSED]
    assert not engine.process(curl(T0 + 20))  # inside the cooldown
    assert engine.books["5d0c9d4e-6f1c-4b8e-9d55-0000000000c1"].dropped == 1
    assert engine.process(curl(T0 + 120))[0].status is Status.OPEN


def test_pending_update_is_sent_when_its_interval_passes(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, curl_rule(update_interval=30, quiet_period=600))
    engine.process(curl(T0))
    assert not engine.process(curl(T0 + 5))
    assert not engine.advance(T0 + 20)
    update = engine.advance(T0 + 31)
    assert [(a.status, a.count) for a in update] == [(Status.UPDATED, 2)]
    assert not engine.advance(T0 + 100)  # nothing new: no re-send


def test_flood_of_groups_is_capped_and_raises_one_meta_alert(tmp_path: Path) -> None:
    engine = engine_for(
        tmp_path,
        curl_rule(group_by=["User"], max_alerts_per_minute=20),
        options=EngineOptions(meta_alert_threshold=100),
    )
    opened = []
    for i in range(2000):
        opened += engine.process(curl(T0 + i * 0.01, user=f"u{i}"))
    assert len(opened) == 20
    meta = engine.advance(T0 + 21)
    meta = [a for a in meta if a.rule.id == SUPPRESSION_RULE.id]
    assert len(meta) == 1 and meta[0].count == 1980
    assert meta[0].group == {"rule.id": "5d0c9d4e-6f1c-4b8e-9d55-0000000000c1"}
    for i in range(2000):
        engine.process(curl(T0 + 30 + i * 0.01, user=f"v{i}"))
    more = [a for a in engine.advance(T0 + 60) if a.rule.id == SUPPRESSION_RULE.id]
    assert all(a.status is not Status.OPEN for a in more)  # the same meta-alert is updated


def test_open_alerts_are_bounded_by_max_groups(tmp_path: Path) -> None:
    engine = engine_for(
        tmp_path, curl_rule(group_by=["User"], max_groups=5, max_alerts_per_minute=1000)
    )
    sent = []
    for i in range(8):
        sent += engine.process(curl(T0 + i, user=f"u{i}"))
    assert sum(a.status is Status.CLOSED for a in sent) == 3
    assert len(engine.books["5d0c9d4e-6f1c-4b8e-9d55-0000000000c1"]) == 5


def test_engine_metrics(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry  # noqa: PLC0415

    from agent.metrics import AgentMetrics  # noqa: PLC0415

    registry = CollectorRegistry()
    engine = engine_for(tmp_path, curl_rule(cooldown=100, quiet_period=5),
                        metrics=AgentMetrics(registry))
    rid = "5d0c9d4e-6f1c-4b8e-9d55-0000000000c1"
    assert registry.get_sample_value("vedette_rules_loaded", {"kind": "detection"}) == 1
    engine.process(curl(T0))
    engine.process(curl(T0 + 1))  # coalesced into the open alert
    engine.advance(T0 + 10)  # closed; cooldown starts
    engine.process(curl(T0 + 11))  # dropped by the cooldown
    engine.advance(T0 + 12)
    value = registry.get_sample_value
    assert value("vedette_rule_evaluations_total") == 1  # same executable: memoised after one
    assert value("vedette_alerts_suppressed_total", {"rule": rid, "reason": "coalesced"}) == 1
    assert value("vedette_alerts_suppressed_total", {"rule": rid, "reason": "dropped"}) == 1


def test_critical_rule_is_never_silenced_by_cooldown_or_cap(tmp_path: Path) -> None:
    rule = curl_rule(quiet_period=10, cooldown=300, group_by=["User"], max_alerts_per_minute=3)
    rule["level"] = "critical"
    engine = engine_for(tmp_path, rule)
    book_id = "5d0c9d4e-6f1c-4b8e-9d55-0000000000c1"
    first = engine.process(curl(T0))
    assert [a.status for a in engine.advance(T0 + 11)] == [Status.CLOSED]
    again = engine.process(curl(T0 + 20))  # inside the cooldown: a new alert, not a drop
    assert [a.status for a in again] == [Status.OPEN] and again[0].id != first[0].id
    assert engine.process(curl(T0 + 21, user="bob"))  # third alert this minute
    # past the cap: folded into the most recent open alert, never dropped
    assert not engine.process(curl(T0 + 22, user="carol"))
    book = engine.books[book_id]
    assert book.dropped == 0 and book.folded == 1
    closed = [a for a in engine.advance(T0 + 40) if a.status is Status.CLOSED]
    assert sum(a.count for a in closed) == 3  # every trigger is counted in an alert
