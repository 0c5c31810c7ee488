"""Reproducers of the defects an independent differential test found (issue 14), one each.

Each asserts the behaviour the Sigma specification (or docs/rules.md) gives; all failed before
the fixes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.collectors.parsers.auth import build_auth_event
from agent.detection import Engine, load_rules
from agent.events import LogSource
from tests.detection.helpers import PROC, T0, engine_for, event, predicate, rule_doc

SIGMAHQ = Path(__file__).resolve().parents[2] / ".." / "shared" / "sigmahq"
AUDITD = LogSource("linux", None, "auditd")
needs_sigmahq = pytest.mark.skipif(not SIGMAHQ.is_dir(), reason="SigmaHQ corpus not present")


def _sel(field: str, value: object) -> dict[str, object]:
    return {"sel": {field: value}, "condition": "sel"}


# 1. numeric keywords are substrings of the message


def test_a_numeric_keyword_is_a_substring_of_the_message() -> None:
    check = predicate({"keywords": [6], "condition": "keywords"},
                      {"product": "linux", "service": "auditd"})
    assert check({"message": 'type=EXECVE argc=2 a0="telinit" a1="6"'})
    assert not check({"message": 'type=EXECVE argc=2 a0="telinit" a1="5"'})
    booleans = predicate({"keywords": [True], "condition": "keywords"},
                         {"product": "linux", "service": "auditd"})
    assert booleans({"message": "x=true"})


@needs_sigmahq
def test_sigmahq_system_shutdown_reboot_fires() -> None:
    report = load_rules([], [SIGMAHQ])
    engine = Engine(report.ruleset)
    ev = event(T0, AUDITD, message='type=EXECVE msg=audit(1.0:2): argc=2 a0="telinit" a1="6"',
               type="EXECVE", a0="telinit", a1="6")
    ids = {a.rule.id for a in engine.process(ev)}
    assert any(i.startswith("4cb57c2f") for i in ids), ids


# 2. |fieldref|contains


def test_fieldref_contains_finds_the_field_anywhere() -> None:
    check = predicate(_sel("CommandLine|fieldref|contains", "Image"))
    fields = {"process.executable": "/usr/bin/curl", "process.command_line": "sudo /usr/bin/curl x"}
    assert check(fields)
    assert not check({**fields, "process.command_line": "sudo /usr/bin/wget x"})
    starts = predicate(_sel("CommandLine|fieldref|startswith", "Image"))
    assert not starts(fields)
    assert starts({**fields, "process.command_line": "/usr/bin/curl x"})
    ends = predicate(_sel("CommandLine|fieldref|endswith", "Image"))
    assert ends({**fields, "process.command_line": "sudo /usr/bin/curl"})
    assert not ends(fields)


# 3. the candidate index is a superset of what the predicate matches


@pytest.mark.parametrize(("pattern", "text"), [
    ("[[:digit:]]abc", "7abc"),
    ("(?i)union\\s+select", "union \u017felect"),
    ("union\\s+select", "x union  select"),
    ("(?i)KEY", "\u212aey"),
])
def test_regex_rules_are_candidates_of_every_event_they_match(
    tmp_path: Path, pattern: str, text: str
) -> None:
    engine = engine_for(tmp_path, rule_doc(_sel("CommandLine|re", pattern)))
    assert engine.process(event(T0, PROC, **{"process.command_line": text}))


def test_regex_ignore_case_modifier_is_a_candidate_of_long_s(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, rule_doc(_sel("CommandLine|re|i", "union\\s+select")))
    assert engine.process(event(T0, PROC, **{"process.command_line": "UNION \u017fELECT"}))


# 4. list-valued fields: any element matches


@pytest.mark.parametrize(("field", "value", "fields", "expected"), [
    ("ProcessId|gt", 100, {"process.pid": [5, 500]}, True),
    ("ProcessId|gt", 100, {"process.pid": [5, 50]}, False),
    ("ProcessId|lte", 5, {"process.pid": ["9", "5"]}, True),
    ("ProcessId|gte", 10, {"process.pid": [None, "x", 11]}, True),
    ("ProcessId|lt", 0, {"process.pid": []}, False),
])
def test_comparisons_on_lists(field: str, value: int, fields: dict[str, object],
                              expected: bool) -> None:
    assert predicate(_sel(field, value))(fields) is expected


def test_cidr_on_lists() -> None:
    check = predicate(_sel("DestinationIp|cidr", "198.18.0.0/15"),
                      {"product": "linux", "category": "network_connection"})
    assert check({"destination.ip": ["10.0.0.1", "198.19.1.1"]})
    assert not check({"destination.ip": ["10.0.0.1", 7, None]})


def test_fieldref_on_lists() -> None:
    check = predicate(_sel("CommandLine|fieldref", "Image"))
    assert check({"process.executable": ["/bin/a", "/bin/B"], "process.command_line": "/bin/b"})
    assert check({"process.executable": "/bin/b", "process.command_line": ["x", "/bin/b"]})
    assert not check({"process.executable": ["/bin/a"], "process.command_line": ["/bin/b"]})


# 5. USER on linux/sudo


def test_sudo_user_field_is_the_target_user(tmp_path: Path) -> None:
    doc = rule_doc(_sel("USER", ["#-*", "#*4294967295"]),
                   {"product": "linux", "service": "sudo"})
    engine = engine_for(tmp_path, doc)
    line = "alice : TTY=pts/0 ; PWD=/home/alice ; USER=#-1 ; COMMAND=/usr/bin/id"
    ev = build_auth_event(T0, "h", "sudo", 1, line, line)
    assert ev.fields.get("user.target.name") == "#-1"
    assert engine.process(ev)
    benign = build_auth_event(T0 + 1, "h", "sudo", 1, line.replace("#-1", "root"), line)
    assert not engine.process(benign)


@needs_sigmahq
def test_sigmahq_cve_2019_14287_sudo_rule_loads_and_fires() -> None:
    report = load_rules([], [SIGMAHQ])
    rid = "7fcc54cb-f27d-4684-84b7-436af096f858"
    assert rid not in {r.rule_id for r in report.rejections}, [
        r.reason for r in report.rejections if r.rule_id == rid]
    engine = Engine(report.ruleset)
    line = "bob : TTY=pts/1 ; PWD=/tmp ; USER=#-1 ; COMMAND=/bin/bash"
    ev = build_auth_event(T0, "h", "sudo", 1, line, line)
    assert rid in {a.rule.id for a in engine.process(ev)}
