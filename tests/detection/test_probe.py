"""Candidate selection (per-field index probes and their memos) never loses a match."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.detection import Ruleset
from agent.detection.matcher import Lowered
from agent.detection.probe import MEMO_ENTRIES, MEMO_VALUE_CHARS, _Field, prober
from agent.detection.ruleset import Substrings
from tests.detection.helpers import PROC, load, rule_doc

DETECTIONS: list[dict[str, Any]] = [
    {"sel": {"Image|endswith": ["/curl", "/wget"]}, "condition": "sel"},
    {"sel": {"Image": "/bin/sh", "User": "root"}, "condition": "sel"},
    {"sel": {"User": ["alice", "Bob"]}, "condition": "sel"},
    {"a": {"Image|endswith": "/nc"}, "b": {"CommandLine|contains": "-e"}, "condition": "a and b"},
    {"a": {"Image|endswith": "/id"}, "b": {"User": "root"}, "condition": "a or b"},
    {"a": {"Image|endswith": "/id"}, "b": {"CommandLine|contains": "pty"},
     "condition": "a or b"},
    {"a": {"Image|endswith": "/sshd"}, "condition": "not a"},
    {"sel": {"CommandLine|contains|all": ["curl", "|"]}, "condition": "sel"},
    {"sel": {"CommandLine|re": "-[eE]\\s"}, "condition": "sel"},
    {"sel": {"CommandLine|re": "(?i)PY(t|T)y"}, "condition": "sel"},
    {"sel": {"CommandLine|startswith": "sh -"}, "condition": "sel"},
    {"sel": {"CommandLine|contains|cased": "Pty"}, "condition": "sel"},
    {"sel": {"ProcessId": 1}, "condition": "sel"},
    {"sel": {"Image|contains": "/tmp/"}, "condition": "sel"},
    *({"sel": {"CommandLine|contains": f"word{i}"}, "condition": "sel"} for i in range(20)),
]


@pytest.fixture(scope="module")
def ruleset(tmp_path_factory: pytest.TempPathFactory) -> Ruleset:
    report = load(tmp_path_factory.mktemp("probe"), *(rule_doc(d) for d in DETECTIONS))
    assert not report.errors and len(report.ruleset.detections) == len(DETECTIONS)
    route = report.ruleset.route(PROC)
    assert route.exact and route.substrings and any(
        len(index.literals) > index.SMALL for _, index in route.substrings)  # RE2 set too
    return report.ruleset


IMAGES = st.sampled_from(["/usr/bin/curl", "/bin/sh", "/usr/bin/WGET", "/tmp/x", "/a/b/nc",
                          "/usr/bin/id", "/usr/sbin/sshd", "curl", "", 7, ["/bin/sh", "/x/id"]])
USERS = st.sampled_from(["root", "ROOT", "alice", "bob", None, True, ["alice", "x"]])
WORDS = st.sampled_from(["curl", "|", "-e ", "-E\t", "pty", "PTY", "Pty", "sh -", "word3",
                         "WORD17", "x", " ", "/tmp/"])
PIDS = st.sampled_from([1, True, 1.0, "1", 2, None])


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    fields = {
        "process.executable": draw(st.one_of(st.none(), IMAGES)),
        "user.name": draw(USERS),
        "process.command_line": "".join(draw(st.lists(WORDS, max_size=5))),
        "process.pid": draw(PIDS),
    }
    return {k: v for k, v in fields.items() if v is not None}


@settings(max_examples=300, deadline=None)
@given(batch=st.lists(events(), min_size=1, max_size=8))
def test_candidates_hold_every_match_once(ruleset: Ruleset, batch: list[dict[str, Any]]) -> None:
    route = ruleset.route(PROC)
    candidates = prober(route)
    rules = ruleset.detections
    for fields in batch * 2:  # the second round meets the memos
        found = candidates(Lowered(fields))
        assert len(found) == len(set(found))
        matching = {r.id for r in rules if r.predicate(fields, Lowered(fields))}
        assert matching <= {r.id for r in found}, fields


def test_memos_are_bounded(ruleset: Ruleset) -> None:
    field = _Field("process.command_line")
    for i in range(MEMO_ENTRIES + 10):
        field.remember(f"job {i}", ())
        assert len(field.memo) <= MEMO_ENTRIES
    field.remember("x" * (MEMO_VALUE_CHARS + 1), ())
    assert "x" * (MEMO_VALUE_CHARS + 1) not in field.memo


LITERALS = st.sampled_from(["ab", "b", "abc", "bc", "é", "é/", "\u017f", "\udcff", "x\udcffy", "/"])
TEXTS = st.text(alphabet=st.sampled_from(["a", "b", "c", "é", "\u017f", "/", "x", "y", "\udcff"]),
                max_size=12)


@settings(max_examples=300, deadline=None)
@given(literals=st.sets(LITERALS, min_size=1), text=TEXTS, big=st.booleans())
def test_substrings_report_every_literal_in_the_text(
    literals: set[str], text: str, big: bool
) -> None:
    """Overlapping and nested literals, non-ASCII and lone surrogates, in both kinds of index
    (stdlib alternation, RE2 set): every literal that occurs (``in``) is reported, once, and no
    other."""
    ordered = sorted(literals)
    if big:  # past Substrings.SMALL: the RE2 set
        ordered += [f"pad{i}" for i in range(Substrings.SMALL)]
    rules: dict[str, list[Any]] = {lit: [lit] for lit in ordered}
    index = Substrings(rules)  # type: ignore[arg-type]  # any object stands for a rule here
    found = [r[0] for r in index.hits(text)]
    assert sorted(found) == sorted(lit for lit in ordered if lit in text), (ordered, text)
