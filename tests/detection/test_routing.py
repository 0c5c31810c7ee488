"""Logsource routing and the discriminator index never change what matches."""

from __future__ import annotations

import random
from pathlib import Path

import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.detection import Engine, load_rules
from agent.detection.matcher import Lowered
from agent.detection.ruleset import discriminator, regex_literals
from agent.events import Event, LogSource
from tests.detection.helpers import NET, PROC, T0, engine_for, event, rule_doc, write_rules


def test_rule_only_sees_its_logsource(tmp_path: Path) -> None:
    engine = engine_for(
        tmp_path, rule_doc({"sel": {"Image|endswith": "/curl"}, "condition": "sel"})
    )
    assert not engine.process(event(T0, NET, **{"process.executable": "/usr/bin/curl"}))
    assert not engine.process(
        event(
            T0, LogSource("vedette", "process_creation"), **{"process.executable": "/usr/bin/curl"}
        )
    )
    assert engine.process(event(T0, PROC, **{"process.executable": "/usr/bin/curl"}))


def test_product_only_rule_sees_every_category_and_service(tmp_path: Path) -> None:
    doc = rule_doc(
        {"keywords": ["segfault"], "condition": "keywords"},
        {"product": "linux"},
        vedette={"update_interval": 0},
    )
    engine = engine_for(tmp_path, doc)
    assert engine.process(event(T0, LogSource("linux", None, "syslog"), message="x segfault"))
    assert engine.process(event(T0, LogSource("linux"), message="segfault at 0"))
    assert not engine.process(event(T0, LogSource("vedette", None, "syslog"), message="segfault"))


IMAGES = [
    "/usr/bin/curl",
    "/bin/sh",
    "/usr/bin/wget",
    "/tmp/x",
    "/usr/bin/python3",
    "/usr/sbin/sshd",
    "/usr/bin/CURL",
    "curl",
    "/a/b/nc",
    "/usr/bin/id",
]
USERS = ["root", "www-data", "alice", None]
CMDS = ["curl -o /tmp/x http://x", "sh -c id", "python3 -c 'import pty'", "nc -e /bin/sh x", ""]


def test_indexed_routing_agrees_with_evaluating_every_rule(tmp_path: Path) -> None:
    docs = [
        rule_doc({"sel": {"Image|endswith": ["/curl", "/wget"]}, "condition": "sel"}),
        rule_doc({"sel": {"Image": "/bin/sh", "User": "root"}, "condition": "sel"}),
        rule_doc({"sel": {"User": ["alice", "bob"]}, "condition": "sel"}),
        rule_doc(
            {
                "a": {"Image|endswith": "/nc"},
                "b": {"CommandLine|contains": "-e"},
                "condition": "a and b",
            }
        ),
        rule_doc({"a": {"Image|endswith": "/id"}, "b": {"User": "root"}, "condition": "a or b"}),
        rule_doc(
            {
                "a": {"Image|endswith": "/id"},
                "b": {"Image|endswith": "python3"},
                "condition": "a or b",
            }
        ),
        rule_doc({"a": {"Image|endswith": "/sshd"}, "condition": "not a"}),
        rule_doc({"sel": {"CommandLine|contains": "pty"}, "condition": "sel"}),
        rule_doc({"sel": {"CommandLine|re": "-[eE]\\s"}, "condition": "sel"}),
        rule_doc({"sel": {"CommandLine|re": "(?i)PY(t|T)y"}, "condition": "sel"}),
    ]
    for d in docs:
        d["vedette"] = {"update_interval": 0}
    write_rules(tmp_path, *docs)
    report = load_rules([tmp_path])
    assert not report.errors and len(report.ruleset.detections) == len(docs)
    assert sum(discriminator(r.tree) is not None for r in report.ruleset.detections) >= 4
    engine = Engine(report.ruleset)
    rnd = random.Random(1)
    for i in range(400):
        fields = {
            "process.executable": rnd.choice(IMAGES),
            "process.command_line": rnd.choice(CMDS),
        }
        user = rnd.choice(USERS)
        if user is not None:
            fields["user.name"] = user
        ev = Event(T0 + i, PROC, fields)
        low = Lowered(ev.fields)
        expected = {r.id for r in report.ruleset.detections if r.predicate(ev.fields, low)}
        got = {a.rule.id for a in engine.process(ev)}
        assert got == expected, fields


pieces = st.sampled_from(["a", "b", "-", "(a|b)", "[ab]", "\\s", "x?", ".", "(ab|ba)", "\\d+",
                          "(?:-|_)", "a{2}", "[^a]", "B"])


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(pieces, min_size=1, max_size=6),
       text=st.text(st.sampled_from("abAB-_ x1"), max_size=12))
def test_regex_literals_are_really_required(parts: list[str], text: str) -> None:
    pattern = "".join(parts)
    literals = regex_literals(pattern)
    if literals is not None and re2.search(pattern, text):
        assert any(lit in text.lower() for lit in literals), (pattern, text, literals)


def test_regex_rules_are_indexed_by_a_required_literal(tmp_path: Path) -> None:
    doc = rule_doc({"sel": {"CommandLine|re": "\\s-O\\s"}, "condition": "sel"})
    report = load_rules([write_rules(tmp_path, doc).parent])
    route = report.ruleset.route(PROC)
    assert not route.always and route.substrings
    engine = Engine(report.ruleset)
    assert engine.process(event(T0, PROC, **{"process.command_line": "wget -O x"}))
    assert not engine.process(event(T0, PROC, **{"process.command_line": "wget -o x"}))


def test_memoised_matches_never_confuse_equal_values_of_other_types(tmp_path: Path) -> None:
    doc = rule_doc({"sel": {"ProcessId": 1}, "condition": "sel"}, vedette={"update_interval": 0})
    engine = engine_for(tmp_path, doc)
    assert not engine.process(event(T0, PROC, **{"process.pid": True}))
    assert engine.process(event(T0 + 1, PROC, **{"process.pid": 1}))
    assert engine.process(event(T0 + 2, PROC, **{"process.pid": 1.0}))
    assert not engine.process(event(T0 + 3, PROC, **{"process.pid": True}))
    assert engine.process(event(T0 + 4, PROC, **{"process.pid": [1, 2]}))  # uncacheable


def test_match_cache_turns_itself_off_for_unique_streams(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, rule_doc({"sel": {"CommandLine|contains": "zz"},
                                            "condition": "sel"}))
    for i in range(5000):
        engine.process(event(T0 + i, PROC, **{"process.command_line": f"job {i}"}))
    state = engine._routes[PROC]
    assert not state.caching and not state.cache
    skipped = state.skipped
    for _ in range(3):
        engine.process(event(T0, PROC, **{"process.command_line": "same"}))
    assert state.skipped == skipped + 3
