"""Sigma 2.1 filters: loading, errors with file:line, semantics in the engine, fixtures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.alerts import Status
from agent.cli import main
from agent.detection import Engine, load_rules
from agent.events import Event, LogSource
from tests.detection.helpers import NET, PROC, T0, rule_doc, run, write_rules

REPO = Path(__file__).resolve().parents[2]
SSHD = LogSource("linux", None, "sshd")
FILTER_ID = "4b0c1f5e-6a2d-4e8f-9c3b-2d1e0f9a8b7c"
CURL_ID = "5d0c9d4e-6f1c-4b8e-9d55-0000000000f1"


def curl_rule(folder: Path) -> Path:
    doc = rule_doc({"sel": {"Image|endswith": "/curl"}, "condition": "sel"},
                   id=CURL_ID, name="curl_use", title="curl use")
    return write_rules(folder, doc, name="curl.yml")


def filter_doc(rules: Any = ("curl_use",), **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "title": "Backups may use curl",
        "id": FILTER_ID,
        "logsource": {"product": "linux", "category": "process_creation"},
        "filter": {"rules": list(rules) if not isinstance(rules, str) else rules,
                   "backup": {"User": "backup"}, "condition": "not backup"},
    }
    doc.update(extra)
    return doc


def curl(ts: float, user: str) -> Event:
    return Event(ts, PROC, {"process.executable": "/usr/bin/curl", "user.name": user})


def failure(ts: float, ip: str) -> Event:
    return Event(ts, SSHD, {"event.action": "ssh_login", "event.outcome": "failure",
                            "source.ip": ip, "user.name": "root"})


def opened(alerts: list[Any]) -> list[Any]:
    return [a for a in alerts if a.status is Status.OPEN]


# ---------------------------------------------------------------------------- semantics


def test_filter_silences_matching_events_of_the_rules_it_names(tmp_path: Path) -> None:
    curl_rule(tmp_path)
    write_rules(tmp_path, filter_doc(), name="filters.yml")
    report = load_rules([tmp_path])
    assert not report.errors, [str(e) for e in report.errors]
    assert report.summary_line() == "1 rule: 1 compiled, 0 rejected, 0 errors; 1 filter"
    engine = Engine(report.ruleset)
    assert not run(engine, [curl(T0, "backup")])       # the filter's selection: silenced
    alerts = opened(run(engine, [curl(T0 + 1, "alice")]))  # everyone else: alerts
    assert [a.rule.id for a in alerts] == [CURL_ID]
    assert report.ruleset.tuning is not None
    assert report.ruleset.tuning.silenced == {(CURL_ID, "filter"): 1}


def test_filter_by_id_and_any_and_sigma_names(tmp_path: Path) -> None:
    curl_rule(tmp_path)
    # by id; a Sigma field name (User) mapped like the rule's; a second selection
    doc = filter_doc([CURL_ID])
    doc["filter"] = {"rules": [CURL_ID], "backup": {"User": "backup"},
                     "cron": {"ParentImage|endswith": "/cron"}, "condition": "not (backup or cron)"}
    write_rules(tmp_path, doc, name="filters.yml")
    engine = Engine(load_rules([tmp_path]).ruleset)
    cron = Event(T0, PROC, {"process.executable": "/usr/bin/curl", "user.name": "x",
                            "process.parent.executable": "/usr/sbin/cron"})
    assert not run(engine, [cron, curl(T0, "backup")])
    assert opened(run(engine, [curl(T0 + 1, "alice")]))
    # `rules: any` applies to every rule of the filter's logsource
    write_rules(tmp_path, filter_doc("any"), name="filters.yml")
    engine = Engine(load_rules([tmp_path]).ruleset)
    assert not run(engine, [curl(T0, "backup")])
    assert opened(run(engine, [curl(T0 + 1, "alice")]))


def test_filter_on_a_correlation_applies_to_its_base_events(tmp_path: Path) -> None:
    report = load_rules([REPO / "rules" / "auth" / "ssh_bruteforce.yml"])
    write_rules(tmp_path, {
        "title": "Our scanner", "id": FILTER_ID,
        "logsource": {"product": "linux", "service": "sshd"},
        "filter": {"rules": ["ssh_bruteforce"], "scanner": {"source.ip|cidr": "198.51.100.0/24"},
                   "condition": "not scanner"},
    }, name="scanner.yml")
    report = load_rules([REPO / "rules" / "auth" / "ssh_bruteforce.yml", tmp_path])
    assert not report.errors, [str(e) for e in report.errors]
    engine = Engine(report.ruleset)
    events = [failure(T0 + i, ip) for i in range(8) for ip in ("198.51.100.7", "203.0.113.5")]
    alerts = opened(run(engine, events))
    assert [a.group for a in alerts] == [{"source.ip": "203.0.113.5"}]
    base = report.ruleset.by_id["46a857c9-db04-4b90-b89d-bd4c940f3350"]
    assert report.ruleset.tuning is not None
    assert report.ruleset.tuning.silenced == {(base.id, "filter"): 8}


def test_filter_note_when_a_correlation_base_rule_feeds_others(tmp_path: Path) -> None:
    rules = REPO / "rules" / "network"
    write_rules(tmp_path, {
        "title": "Our scanner", "id": FILTER_ID,
        "logsource": {"product": "vedette", "category": "network_packet"},
        "filter": {"rules": ["port_scan_vertical"], "scanner": {"source.ip": "198.51.100.9"},
                   "condition": "not scanner"},
    }, name="scanner.yml")
    report = load_rules([rules / "port_scan_vertical.yml", rules / "port_scan_horizontal.yml",
                         tmp_path])
    assert not report.errors, [str(e) for e in report.errors]
    assert any("port scan" in n.lower() and "also feed" in n for n in report.filters.notes)


# ---------------------------------------------------------------------------- errors


def errors_of(tmp_path: Path, doc: dict[str, Any] | str) -> list[str]:
    curl_rule(tmp_path)
    write_rules(tmp_path, doc, name="filters.yml")
    report = load_rules([tmp_path])
    return [e.location_text() for e in report.errors]


def test_unknown_rule_reference_is_an_error_at_its_line(tmp_path: Path) -> None:
    doc = """\
        title: Backups may use curl
        id: 4b0c1f5e-6a2d-4e8f-9c3b-2d1e0f9a8b7c
        logsource: {product: linux, category: process_creation}
        filter:
          rules:
            - curl_use
            - curl_usage
          backup: {User: backup}
          condition: not backup
        """
    errors = errors_of(tmp_path, doc)
    assert errors == [f"{tmp_path / 'filters.yml'}:7: filter rules: unknown rule 'curl_usage' "
                      "(not an id or name of a loaded rule)"]


@pytest.mark.parametrize(("change", "expected"), [
    ({"filter": {"rules": ["curl_use"], "backup": {"User": "backup"}}}, "condition"),
    ({"filter": {"backup": {"User": "backup"}, "condition": "not backup"}}, "'rules' field"),
    ({"filter": {"rules": ["curl_use"], "condition": "not backup"}}, "detections"),
    ({"filter": {"rules": ["curl_use"], "b": {"User": "x"}, "condition": "not nope"}}, "nope"),
    ({"filter": {"rules": ["curl_use"], "b": {"Usr": "x"}, "condition": "not b"}}, "Usr"),
    ({"filter": {"rules": ["curl_use"], "b": {"User|nosuch": "x"}, "condition": "not b"}},
     "nosuch"),
    ({"filter": "curl_use"}, "filter"),
    ({"logsource": {"product": "linux", "category": "network_connection"}}, "does not cover"),
    ({"id": None}, "no id"),
    ({"id": CURL_ID}, "duplicate id"),
])
def test_filter_errors_are_located(tmp_path: Path, change: dict[str, Any], expected: str) -> None:
    doc = filter_doc()
    doc.update(change)
    if doc["id"] is None:
        del doc["id"]
    errors = errors_of(tmp_path, doc)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{tmp_path / 'filters.yml'}:"), errors
    assert expected in errors[0], errors
    assert "object has no attribute" not in errors[0]


def test_filter_field_error_points_at_the_field(tmp_path: Path) -> None:
    doc = """\
        title: Backups may use curl
        id: 4b0c1f5e-6a2d-4e8f-9c3b-2d1e0f9a8b7c
        logsource: {product: linux, category: process_creation}
        filter:
          rules: [curl_use]
          backup:
            source.ip: 10.0.0.1
          condition: not backup
        """
    errors = errors_of(tmp_path, doc)
    assert len(errors) == 1 and errors[0].startswith(f"{tmp_path / 'filters.yml'}:7: "), errors
    assert "source.ip" in errors[0] and "linux/process_creation" in errors[0]


def test_filter_of_a_rejected_rule_is_a_note_not_an_error(tmp_path: Path) -> None:
    rid = "5d0c9d4e-6f1c-4b8e-9d55-0000000000f2"
    write_rules(tmp_path, rule_doc({"sel": {"LogonId": 1}, "condition": "sel"}, id=rid),
                name="rej.yml")
    write_rules(tmp_path, filter_doc([rid]), name="filters.yml")
    report = load_rules([tmp_path])
    assert not report.errors and len(report.rejections) == 1
    assert any("was rejected" in n for n in report.filters.notes)


def test_validate_and_list_know_filters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    curl_rule(tmp_path)
    write_rules(tmp_path, filter_doc(), name="filters.yml")
    assert main(["rules", "validate", "--no-lint", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("; 1 filter")
    assert main(["rules", "list", str(tmp_path)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if FILTER_ID in line)
    assert "filter: Backups may use curl" in row and "curl use" in row
    write_rules(tmp_path, filter_doc(["nope"]), name="filters.yml")
    assert main(["rules", "validate", "--no-lint", str(tmp_path)]) == 1
    assert "unknown rule 'nope'" in capsys.readouterr().out


def test_random_filter_documents_never_raise(tmp_path: Path) -> None:
    curl_rule(tmp_path)
    odd: list[Any] = [None, 1, "x", [], {}, {"rules": None}, {"rules": 5, "condition": []},
                      {"rules": [[]], "a": {"User": "x"}, "condition": "not a"},
                      {"rules": ["curl_use"], "a": [1, 2], "condition": "not a"},
                      {"rules": ["curl_use"], "a": {"User": "x"}, "condition": 3}]
    for body in odd:
        write_rules(tmp_path, {"title": "f", "id": FILTER_ID, "logsource": {"product": "linux"},
                               "filter": body}, name="filters.yml")
        report = load_rules([tmp_path])
        assert report.errors or report.filters.filters, body
        for err in report.errors:
            assert err.path and err.line, str(err)


# ---------------------------------------------------------------------------- fixtures


def write_fixture(filter_file: Path, cases: list[dict[str, Any]],
                  files: dict[str, list[Event]]) -> None:
    folder = filter_file.with_name(filter_file.stem + ".tests")
    folder.mkdir(exist_ok=True)
    for name, events in files.items():
        (folder / name).write_text("".join(json.dumps(e.to_dict()) + "\n" for e in events))
    (folder / "expect.yml").write_text(yaml.safe_dump({"cases": cases}))


def test_rules_test_runs_filter_fixtures_with_and_without_the_filter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    curl_rule(tmp_path)
    path = write_rules(tmp_path, filter_doc(), name="filters.yml")
    files = {"backup.jsonl": [curl(T0, "backup")], "alice.jsonl": [curl(T0, "alice")]}
    silenced = {"name": "backup is silenced", "input": "backup.jsonl", "expect": []}
    through = {"name": "alice still alerts", "input": "alice.jsonl",
               "expect": [{"rule": "curl_use"}]}
    write_fixture(path, [silenced, through], files)
    assert main(["rules", "test", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 cases: 2 passed, 0 failed" in out and "filter: " not in out  # filter: tested
    # a filter case whose events the rule alone would not fire on proves nothing: strict fails
    write_fixture(path, [through], files)
    assert main(["rules", "test", "--strict", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "filter: Backups may use curl" in out and "no positive" in out
    # a wrong expectation fails the case
    write_fixture(path, [{**silenced, "expect": [{"rule": "curl_use"}]}, through], files)
    assert main(["rules", "test", str(tmp_path)]) == 1


def test_rule_fixtures_run_without_local_filters(tmp_path: Path) -> None:
    rule = curl_rule(tmp_path)
    write_rules(tmp_path, filter_doc(), name="filters.yml")
    folder = rule.with_name("curl.tests")
    folder.mkdir()
    (folder / "b.jsonl").write_text(json.dumps(curl(T0, "backup").to_dict()) + "\n")
    (folder / "expect.yml").write_text(yaml.safe_dump(
        {"cases": [{"name": "fires", "input": "b.jsonl", "expect": [{"rule": "curl_use"}]}]}))
    assert main(["rules", "test", str(tmp_path)]) == 0


def test_unused_net_logsource_is_not_targeted_by_any(tmp_path: Path) -> None:
    curl_rule(tmp_path)
    net = rule_doc({"sel": {"DestinationPort": 4444}, "condition": "sel"},
                   {"product": "linux", "category": "network_connection"})
    write_rules(tmp_path, net, name="net.yml")
    write_rules(tmp_path, filter_doc("any"), name="filters.yml")
    report = load_rules([tmp_path])
    assert not report.errors
    assert set(report.filters.filters[0].targets) == {CURL_ID}
    engine = Engine(report.ruleset)
    assert opened(run(engine, [Event(T0, NET, {"destination.port": 4444,
                                               "user.name": "backup"})]))


def test_filter_that_applies_to_nothing_is_a_note(tmp_path: Path) -> None:
    curl_rule(tmp_path)
    doc = filter_doc("any")
    doc["filter"] = {"rules": "any", "s": {"dns.question.name": "x"}, "condition": "not s"}
    write_rules(tmp_path, doc, name="filters.yml")
    report = load_rules([tmp_path])
    assert not report.errors
    assert any("applies to no loaded rule" in n for n in report.filters.notes)
