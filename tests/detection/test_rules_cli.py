"""`vedette rules validate|list|test` on small rule folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.cli import main
from agent.events import Event
from agent.offline.inputs import INPUTS, register_input
from tests.detection.helpers import PROC, T0, rule_doc, write_rules

REPO = Path(__file__).resolve().parents[2]


def curl_rule(folder: Path) -> Path:
    doc = rule_doc(
        {"sel": {"Image|endswith": "/curl"}, "condition": "sel"},
        id="5d0c9d4e-6f1c-4b8e-9d55-0000000000e1",
        name="curl_use",
        title="curl use",
    )
    return write_rules(folder, doc, name="curl.yml")


def fixture(rule: Path, cases: list[dict[str, Any]], files: dict[str, list[Event]]) -> None:
    folder = rule.with_name(rule.stem + ".tests")
    folder.mkdir(exist_ok=True)
    for name, events in files.items():
        (folder / name).write_text("".join(json.dumps(e.to_dict()) + "\n" for e in events))
    (folder / "expect.yml").write_text(yaml.safe_dump({"cases": cases}))


def curl(ts: float, exe: str = "/usr/bin/curl") -> Event:
    return Event(ts, PROC, {"process.executable": exe})


def test_validate_prints_located_errors_rejections_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    curl_rule(tmp_path)
    write_rules(tmp_path, rule_doc({"sel": {"LogonId": 1}, "condition": "sel"}), name="rej.yml")
    (tmp_path / "bad.yml").write_text("title: x\nid: [\n")
    assert main(["rules", "validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "3 rules: 1 compiled, 1 rejected, 1 error"
    assert any(line.startswith(f"{tmp_path / 'bad.yml'}:") for line in out)
    assert any("rejected" in line and "LogonId" in line for line in out)
    (tmp_path / "bad.yml").unlink()
    assert main(["rules", "validate", str(tmp_path)]) == 0
    assert main(["rules", "validate", "--strict", str(tmp_path)]) == 1


def test_test_command_passes_fails_and_reports_coverage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rule = curl_rule(tmp_path)
    assert main(["rules", "test", str(tmp_path)]) == 0
    assert main(["rules", "test", "--strict", str(tmp_path)]) == 1
    assert "no fixtures" in capsys.readouterr().out
    fixture(
        rule,
        [
            {
                "name": "fires",
                "input": "pos.jsonl",
                "expect": [{"rule": "curl_use", "count": 2, "at": "2026-01-01T00:00:00Z"}],
            },
            {"name": "silent", "input": "neg.jsonl", "expect": []},
        ],
        {"pos.jsonl": [curl(T0), curl(T0 + 1)], "neg.jsonl": [curl(T0, "/usr/bin/wget")]},
    )
    junit = tmp_path / "junit.xml"
    assert main(["rules", "test", "--strict", "-v", "--junit", str(junit), str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 cases: 2 passed, 0 failed" in out and "pass" in out
    assert 'tests="2"' in junit.read_text() and 'failures="0"' in junit.read_text()
    # a wrong expectation fails with a readable reason
    fixture(
        rule,
        [
            {"name": "wrong count", "input": "pos.jsonl", "expect": [{"count": 3}]},
            {"name": "must not fire", "input": "pos.jsonl", "expect": []},
        ],
        {"pos.jsonl": [curl(T0), curl(T0 + 1)]},
    )
    assert main(["rules", "test", "--junit", str(junit), str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "count 2, expected 3" in out and "unexpected alert" in out
    assert 'failures="2"' in junit.read_text()


def test_rule_filter_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    curl_rule(tmp_path)
    write_rules(tmp_path, rule_doc({"sel": {"Image": "/x"}, "condition": "sel"}), name="x.yml")
    assert main(["rules", "test", "--strict", "--rule", "nonexistent", str(tmp_path)]) == 0
    assert main(["rules", "list", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "5d0c9d4e-6f1c-4b8e-9d55-0000000000e1" in out and "linux/process_creation" in out
    assert "untested" in out


def test_decoder_registry_is_one_line_and_unknown_kinds_are_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rule = curl_rule(tmp_path)

    def decode_names(path: Path) -> Any:  # one executable path per line
        for i, line in enumerate(path.read_text().split()):
            yield curl(T0 + i, line)

    register_input("names", decode_names)
    try:
        folder = rule.with_name("curl.tests")
        folder.mkdir()
        (folder / "run.names").write_text("/usr/bin/curl\n/bin/ls\n")
        (folder / "expect.yml").write_text(
            yaml.safe_dump(
                {
                    "cases": [
                        {"name": "custom decoder", "input": "run.names", "expect": [{"count": 1}]},
                        {
                            "name": "bad kind",
                            "input": "run.names",
                            "kind": "nosuchkind",
                            "expect": [],
                        },
                    ]
                }
            )
        )
        assert main(["rules", "test", str(tmp_path)]) == 1
        assert "unknown input kind 'nosuchkind'" in capsys.readouterr().out
        (folder / "expect.yml").write_text(
            yaml.safe_dump(
                {
                    "cases": [
                        {"name": "custom decoder", "input": "run.names", "expect": [{"count": 1}]}
                    ]
                }
            )
        )
        assert main(["rules", "test", str(tmp_path)]) == 0
        # a decoder that refuses its input fails that case with the reason, not the run
        (folder / "expect.yml").write_text(
            yaml.safe_dump(
                {
                    "cases": [
                        {
                            "name": "broken input",
                            "input": "run.names",
                            "kind": "jsonl",
                            "expect": [],
                        }
                    ]
                }
            )
        )
        assert main(["rules", "test", str(tmp_path)]) == 1
        assert "bad event" in capsys.readouterr().out
    finally:
        INPUTS.pop("names")


def test_default_paths_come_from_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "r"
    curl_rule(rules)
    config = tmp_path / "vedette.yaml"
    config.write_text(yaml.safe_dump({"detection": {"shipped_rules": False,
                                                   "rule_paths": [str(rules)]}}))
    assert main(["rules", "validate", "--config", str(config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "1 rule: 1 compiled, 0 rejected, 0 errors"


def test_junit_lists_fixture_gaps_in_strict_mode(tmp_path: Path) -> None:
    curl_rule(tmp_path)
    junit = tmp_path / "junit.xml"
    assert main(["rules", "test", "--strict", "--junit", str(junit), str(tmp_path)]) == 1
    text = junit.read_text()
    assert 'failures="1"' in text and "untested" in text


def test_validate_prints_pysigma_lint_warnings_without_failing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = rule_doc({"sel": {"ProcessId": "42"}, "unused": {"Image": "x"}, "condition": "sel"})
    write_rules(tmp_path, doc, name="process_lint_example.yml")
    assert main(["rules", "validate", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "warning" in out and "DanglingDetectionIssue" in out and "NumberAsStringIssue" in out
    assert main(["rules", "validate", "--no-lint", str(tmp_path)]) == 0
    assert "warning" not in capsys.readouterr().out


def test_a_local_override_of_a_shipped_rule_id_is_no_lint_collision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The documented override (a local rule with a shipped rule's id) is not linted as a
    duplicate: lint runs per rule folder; a collision inside one folder still warns."""
    shipped, local = tmp_path / "shipped", tmp_path / "local"
    curl_rule(shipped)
    curl_rule(local)
    config = tmp_path / "vedette.yaml"
    config.write_text(yaml.safe_dump({"detection": {"shipped_rules": False,
                                                   "rule_paths": [str(shipped), str(local)]}}))
    assert main(["rules", "validate", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "IdentifierCollisionIssue" not in out and "DuplicateTitleIssue" not in out
    write_rules(local, rule_doc({"sel": {"Image|endswith": "/curl"}, "condition": "sel"},
                                id="5d0c9d4e-6f1c-4b8e-9d55-0000000000e1", name="curl_two",
                                title="curl use"), name="curl2.yml")
    main(["rules", "validate", "--config", str(config)])
    assert "DuplicateTitleIssue" in capsys.readouterr().out


def test_a_rejected_rule_with_fixtures_fails_the_test_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An edit that makes a tested rule unsupported (an unknown field) must not read as "all
    passed": the rule is rejected, its fixtures cannot run, the run fails. A rejected rule
    without fixtures (a third-party folder) stays a warning."""
    rule = curl_rule(tmp_path)
    fixture(rule, [{"name": "fires", "input": "e.jsonl", "expect": [{"rule": "curl_use"}]}],
            {"e.jsonl": [curl(T0)]})
    write_rules(tmp_path, rule_doc({"sel": {"LogonId": 1}, "condition": "sel"},
                                   id="5d0c9d4e-6f1c-4b8e-9d55-0000000000e2"), name="other.yml")
    assert main(["rules", "test", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "warning:" in out and "LogonId" in out
    rule.write_text(rule.read_text().replace("Image|endswith", "NoSuchField|endswith"))
    assert main(["rules", "test", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL: {rule}:" in out and "with fixtures rejected" in out
