"""Alert → ECS document (elasticsearch.md §5): kind, severity, rule, threat, nesting, identity."""

from __future__ import annotations

import json
from typing import Any

import pytest
from foundation_helpers import IDENTITY
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.alerts import DATASET, ECS_VERSION, Alert, RuleRef, Status, alert_id, nest, to_ecs
from agent.attack import threat_fields
from agent.identity import Identity

RULE = RuleRef(
    id="vedette.ssh_bruteforce",
    title="SSH brute force",
    level="high",
    description="Many failed SSH logins from one address",
    author="Alice Martin, Bob Li , ",
    references=("https://attack.mitre.org/techniques/T1110/001/",),
    tags=("attack.t1110.001", "attack.credential_access", "vedette.auth"),
    ruleset="vedette",
    version="3",
    license="DRL-1.1",
)
T0 = 1_700_000_000.0


def brute_force_alert(**overrides: Any) -> Alert:
    group = {"source.ip": "203.0.113.5"}
    values: dict[str, Any] = {
        "id": alert_id(RULE.id, group, T0),
        "rule": RULE,
        "group": group,
        "first_seen": T0,
        "last_seen": T0 + 42.5,
        "count": 25,
        "status": Status.UPDATED,
        "revision": 2,
        "matched": {
            "user.name": "root",
            "destination.ip": "192.0.2.10",
            "destination.port": 22,
            "process.executable": "/usr/sbin/sshd",
            "host.name": "spoofed-by-the-event",
            "custom.thing": "not ECS",
            "event.outcome": "failure",
            "dns.question.name": "evil.example",
        },
        "evidence": [{"message": "Failed password for root"}],
        "message": "25 failed SSH logins for root from 203.0.113.5",
    }
    values.update(overrides)
    return Alert(**values)


def test_event_block() -> None:
    doc = to_ecs(brute_force_alert(), IDENTITY)
    assert doc["@timestamp"] == "2023-11-14T22:13:20.000000Z"
    assert doc["ecs"] == {"version": ECS_VERSION}
    assert doc["message"] == "25 failed SSH logins for root from 203.0.113.5"
    assert doc["event"] == {
        "kind": "alert",
        "category": ["intrusion_detection"],
        "type": ["info"],
        "severity": 4,
        "risk_score": 73.0,
        "risk_score_norm": 73.0,
        "id": alert_id(RULE.id, {"source.ip": "203.0.113.5"}, T0),
        "dataset": DATASET,
        "module": "vedette",
        "start": "2023-11-14T22:13:20.000000Z",
        "end": "2023-11-14T22:14:02.500000Z",
        "created": "2023-11-14T22:13:20.000000Z",
    }


@pytest.mark.parametrize(
    ("level", "severity", "risk"),
    [
        ("informational", 1, 0.0),
        ("low", 2, 21.0),
        ("medium", 3, 47.0),
        ("high", 4, 73.0),
        ("critical", 5, 99.0),
        ("bogus", 3, 47.0),  # unknown levels render as medium
    ],
)
def test_severity_and_risk_by_level(level: str, severity: int, risk: float) -> None:
    rule = RuleRef(id="r", title="t", level=level)
    doc = to_ecs(brute_force_alert(rule=rule), IDENTITY)
    assert doc["event"]["severity"] == severity
    assert doc["event"]["risk_score"] == risk


def test_rule_block_with_author_list() -> None:
    doc = to_ecs(brute_force_alert(), IDENTITY)
    assert doc["rule"] == {
        "id": "vedette.ssh_bruteforce",
        "name": "SSH brute force",
        "description": "Many failed SSH logins from one address",
        "reference": ["https://attack.mitre.org/techniques/T1110/001/"],
        "ruleset": "vedette",
        "version": "3",
        "author": ["Alice Martin", "Bob Li"],
        "license": "DRL-1.1",
    }
    assert doc["tags"] == sorted(RULE.tags)


def test_threat_from_attack_tags() -> None:
    doc = to_ecs(brute_force_alert(), IDENTITY)
    assert doc["threat"] == {
        "framework": "MITRE ATT&CK",
        "tactic": {
            "id": ["TA0006"],
            "name": ["Credential Access"],
            "reference": ["https://attack.mitre.org/tactics/TA0006/"],
        },
        "technique": {
            "id": ["T1110"],
            "name": ["Brute Force"],
            "reference": ["https://attack.mitre.org/techniques/T1110/"],
            "subtechnique": {
                "id": ["T1110.001"],
                "name": ["Password Guessing"],
                "reference": ["https://attack.mitre.org/techniques/T1110/001/"],
            },
        },
    }


def test_no_threat_without_attack_tags() -> None:
    rule = RuleRef(id="r", title="t", tags=("vedette.host", "cve.2021-44228"))
    assert "threat" not in to_ecs(brute_force_alert(rule=rule), IDENTITY)


def test_threat_fields_dedupe_case_ids_and_unknown_techniques() -> None:
    threat = threat_fields(
        ["ATTACK.T1046", "attack.t1046", "attack.ta0007", "attack.discovery", "attack.t9999",
         "attack.t1059.004", "attack.g0032", "attack.s0001", "attack."]
    )
    assert threat["tactic"]["id"] == ["TA0007"]
    assert threat["tactic"]["name"] == ["Discovery"]
    assert threat["technique"]["id"] == ["T1046", "T9999", "T1059"]
    assert threat["technique"]["name"] == [
        "Network Service Discovery", "T9999", "Command and Scripting Interpreter"
    ]
    assert threat["technique"]["subtechnique"]["id"] == ["T1059.004"]
    assert threat_fields([]) == {}
    assert threat_fields(["attack.g0032"]) == {}


def test_ecs_fields_nested_from_matched_and_group() -> None:
    doc = to_ecs(brute_force_alert(), IDENTITY)
    assert doc["source"] == {"ip": "203.0.113.5"}
    assert doc["destination"] == {"ip": "192.0.2.10", "port": 22}
    assert doc["user"] == {"name": "root"}
    assert doc["process"] == {"executable": "/usr/sbin/sshd"}
    assert doc["dns"] == {"question": {"name": "evil.example"}}
    assert "custom" not in doc
    # host/event come from the agent, never from the matched event
    assert doc["host"]["name"] == "web-1"
    assert doc["event"]["kind"] == "alert"
    assert doc["vedette"]["matched"]["host.name"] == "spoofed-by-the-event"
    assert doc["vedette"]["matched"]["custom.thing"] == "not ECS"


def test_group_wins_over_matched_for_the_same_field() -> None:
    alert = brute_force_alert(matched={"source.ip": "198.51.100.1"})
    assert to_ecs(alert, IDENTITY)["source"]["ip"] == "203.0.113.5"


def test_related_identity_data_stream_labels() -> None:
    doc = to_ecs(brute_force_alert(), IDENTITY, namespace="prod")
    assert doc["related"] == {
        "ip": ["192.0.2.10", "203.0.113.5"],
        "user": ["root"],
        "hosts": ["evil.example", "web-1"],
    }
    assert doc["data_stream"] == {"type": "logs", "dataset": DATASET, "namespace": "prod"}
    assert doc["labels"] == {"env": "test", "team": "blue"}
    assert doc["host"] == {
        "name": "web-1",
        "hostname": "web-1",
        "id": IDENTITY.host_id,
        "ip": ["192.0.2.10", "2001:db8::10"],
        "os": {"type": "linux", "name": "Linux", "kernel": "6.1.0-test"},
    }
    assert doc["agent"] == {
        "id": IDENTITY.agent_id,
        "name": "web-1-agent",
        "type": "vedette",
        "version": "0.1.0",
        "ephemeral_id": IDENTITY.ephemeral_id,
    }
    assert doc["observer"]["type"] == "ids"


def test_related_hosts_has_no_duplicate_of_the_agent_host() -> None:
    alert = brute_force_alert(matched={"destination.domain": "web-1"})
    assert to_ecs(alert, IDENTITY)["related"]["hosts"] == ["web-1"]


def test_no_labels_and_no_related_when_empty() -> None:
    bare = Identity(host_name="", host_id="", agent_id="a", agent_name="a", ephemeral_id="e")
    doc = to_ecs(brute_force_alert(group={}, matched={}), bare)
    assert "labels" not in doc
    assert "related" not in doc


def test_vedette_block_and_json_serialisable() -> None:
    alert = brute_force_alert(group={"source.ip": "203.0.113.5", "obj": {"nested": 1}})
    doc = to_ecs(alert, IDENTITY)
    assert doc["vedette"]["alert"] == {
        "status": "updated",
        "count": 25,
        "revision": 2,
        "first_seen": "2023-11-14T22:13:20.000000Z",
        "last_seen": "2023-11-14T22:14:02.500000Z",
    }
    assert doc["vedette"]["group"] == {"source.ip": "203.0.113.5", "obj": "{'nested': 1}"}
    assert doc["vedette"]["evidence"] == [{"message": "Failed password for root"}]
    json.dumps(doc, allow_nan=False)


def test_message_defaults_to_rule_title() -> None:
    assert to_ecs(brute_force_alert(message=""), IDENTITY)["message"] == "SSH brute force"


def test_alert_id_is_deterministic() -> None:
    a = alert_id("r1", {"source.ip": "1.2.3.4", "user.name": "x"}, 100.0)
    assert a == alert_id("r1", {"user.name": "x", "source.ip": "1.2.3.4"}, 100.0)
    assert a == alert_id("r1", {"user.name": "x", "source.ip": "1.2.3.4"}, 100.0000001)
    assert len(a) == 32
    int(a, 16)
    assert a != alert_id("r2", {"source.ip": "1.2.3.4", "user.name": "x"}, 100.0)
    assert a != alert_id("r1", {"source.ip": "1.2.3.5", "user.name": "x"}, 100.0)
    assert a != alert_id("r1", {"source.ip": "1.2.3.4", "user.name": "x"}, 101.0)
    # pinned: the id must not change between releases (sinks deduplicate on it); it is the
    # sha256 of the compact JSON [rule, sorted (key, str(value)) pairs, window start]
    assert alert_id("vedette.ssh_bruteforce", {"source.ip": "203.0.113.5"}, T0) == (
        "980d7e71cb371da5fb95eb477033d733"
    )
    assert alert_id("r1", {"k": 1}, 0.0) == alert_id("r1", {"k": "1"}, 0.0)


def test_snapshot_is_independent_of_the_live_alert() -> None:
    alert = brute_force_alert()
    snap = alert.snapshot()
    alert.group["source.ip"] = "changed"
    alert.matched["user.name"] = "changed"
    alert.evidence[0]["message"] = "changed"
    alert.count = 99
    assert snap.group["source.ip"] == "203.0.113.5"
    assert snap.matched["user.name"] == "root"
    assert snap.evidence[0]["message"] == "Failed password for root"
    assert snap.count == 25


def test_nest() -> None:
    assert nest({"a.b": 1, "a.c": 2, "d": 3}) == {"a": {"b": 1, "c": 2}, "d": 3}
    # collisions: the first writer wins, the conflicting key is skipped
    assert nest({"a": 1, "a.b": 2}) == {"a": 1}
    assert nest({"a.b": 2, "a": 1}) == {"a": {"b": 2}}


def test_nest_and_to_ecs_never_mutate_the_alert() -> None:
    parent = {"pid": 1}
    flat = {"process.parent": parent, "process.parent.name": "bash"}
    assert nest(flat) == {"process": {"parent": {"pid": 1, "name": "bash"}}}
    assert parent == {"pid": 1}
    alert = brute_force_alert(matched=dict(flat))
    to_ecs(alert, IDENTITY)
    assert alert.matched["process.parent"] == {"pid": 1}


_KEYS = st.lists(st.sampled_from(["a", "b", "", "c.d"]), min_size=1, max_size=4).map(".".join)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_KEYS, st.one_of(st.integers(), st.text(max_size=3), st.none()),
                       max_size=8))
def test_nest_never_raises_and_keeps_every_non_conflicting_leaf(flat: dict[str, Any]) -> None:
    out = nest(flat)
    for key, val in flat.items():
        node: Any = out
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                node = None
                break
            node = node[part]
        # either the value landed at its path, or the path was taken by another key
        if node is not val and node != val:
            assert any(k != key for k in flat)
