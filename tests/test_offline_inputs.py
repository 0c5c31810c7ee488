"""One home for offline inputs: `vedette replay` and `vedette rules test` read the same kinds
through the same decoders (agent/offline/inputs.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import main
from agent.offline.inputs import INPUTS, fixture_decoders
from tests.detection.helpers import T0
from tests.detection.test_rules_cli import curl, curl_rule, fixture


def test_replay_and_rule_fixtures_share_one_registry() -> None:
    assert set(fixture_decoders()) == set(INPUTS)
    assert {"pcap", "pcapng", "jsonl", "auth", "sshd", "journal-json", "auditd", "nginx",
            "apache"} <= set(INPUTS)


def test_an_event_file_fixture_replays_to_the_same_alert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    rule = curl_rule(rules)
    events = [curl(T0), curl(T0 + 1, "/bin/ls"), curl(T0 + 2)]
    fixture(rule, [{"name": "curl twice", "input": "run.jsonl", "expect": [{"count": 2}]}],
            {"run.jsonl": events})
    assert main(["rules", "test", str(rules)]) == 0
    capsys.readouterr()
    recorded = rule.with_name("curl.tests") / "run.jsonl"
    assert main(["replay", str(recorded), "--log", "jsonl", "--rules", str(rules),
                 "--json"]) == 0
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["rule"]["name"] for d in docs] == ["curl use"]
    assert docs[0]["vedette"]["alert"]["count"] == 2


def test_a_malformed_event_line_is_one_located_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    curl_rule(rules)
    bad = tmp_path / "events.jsonl"
    bad.write_text(json.dumps(curl(T0).to_dict()) + "\n{not json\n")
    assert main(["replay", str(bad), "--log", "jsonl", "--rules", str(rules)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2: bad event" in err
