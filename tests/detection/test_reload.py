"""Hot reload: swap keeps the state of unchanged rules, resets changed ones, closes removed ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.alerts import Status
from agent.detection import Engine, load_rules
from tests.detection.helpers import PACKET, T0, event, rule_doc, write_rules

BASE = rule_doc(
    {"sel": {"tcp.flags.syn": True}, "condition": "sel"},
    {"product": "vedette", "category": "network_packet"},
    name="syn",
    id="5d0c9d4e-6f1c-4b8e-9d55-0000000000d1",
)


def flood(threshold: int) -> dict[str, Any]:
    return {
        "title": "flood",
        "id": "5d0c9d4e-6f1c-4b8e-9d55-0000000000d2",
        "correlation": {
            "type": "event_count",
            "rules": ["syn"],
            "group-by": ["destination.ip"],
            "timespan": "60s",
            "condition": {"gte": threshold},
        },
    }


def other() -> dict[str, Any]:
    return rule_doc(
        {"sel": {"Image|endswith": "/curl"}, "condition": "sel"},
        id="5d0c9d4e-6f1c-4b8e-9d55-0000000000d3",
    )


def syn(ts: float) -> Any:
    return event(ts, PACKET, **{"tcp.flags.syn": True, "destination.ip": "198.18.0.1"})


def test_unchanged_rules_keep_their_windows(tmp_path: Path) -> None:
    write_rules(tmp_path, BASE, flood(10), other())
    engine = Engine(load_rules([tmp_path]).ruleset)
    for i in range(6):
        assert not engine.process(syn(T0 + i))
    write_rules(tmp_path, BASE, flood(10))  # another rule removed: flood unchanged
    engine.swap(load_rules([tmp_path]).ruleset)
    alerts = [a for i in range(6, 10) for a in engine.process(syn(T0 + i))]
    assert [a.status for a in alerts] == [Status.OPEN] and alerts[0].count == 10


def test_changed_rule_starts_fresh_and_its_open_alert_is_closed(tmp_path: Path) -> None:
    write_rules(tmp_path, BASE, flood(3))
    engine = Engine(load_rules([tmp_path]).ruleset)
    opened = [a for i in range(5) for a in engine.process(syn(T0 + i))]
    assert [a.status for a in opened] == [Status.OPEN]
    write_rules(tmp_path, BASE, flood(8))
    report = load_rules([tmp_path])
    engine.swap(report.ruleset)
    closed = engine.advance(T0 + 6)
    assert [(a.id, a.status) for a in closed] == [(opened[0].id, Status.CLOSED)]
    assert not [a for i in range(6, 13) for a in engine.process(syn(T0 + i))]  # 7 < 8
    assert [a.status for a in engine.process(syn(T0 + 13))] == [Status.OPEN]


def test_broken_file_keeps_the_old_rule_set(tmp_path: Path) -> None:
    write_rules(tmp_path, BASE, flood(3))
    good = load_rules([tmp_path])
    engine = Engine(good.ruleset)
    (tmp_path / "broken.yml").write_text("title: [oops\n")
    report = load_rules([tmp_path])
    assert report.errors and report.errors[0].path.endswith("broken.yml")
    assert report.errors[0].line in (1, 2)  # libyaml reports the unclosed flow at its end
    # the daemon swaps only error-free reports; the engine keeps working on the old set
    assert engine.ruleset is good.ruleset
    assert [a.status for i in range(3) for a in engine.process(syn(T0 + i))] == [Status.OPEN]
