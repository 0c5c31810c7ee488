"""The points the Sigma specification leaves open, as decided in docs/rules.md "Matching
semantics" — one test each, so a change of mind is a visible change."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.detection import Engine, EngineOptions
from tests.detection.helpers import PACKET, T0, engine_for, event, load, predicate, run
from tests.detection.test_correlations import corr, syn_rule


def _sel(field: str, value: object) -> dict[str, object]:
    return {"sel": {field: value}, "condition": "sel"}


@pytest.mark.parametrize(("text", "is_number"), [
    ("5", True), ("-5", True), ("+5.5", True), ("1e3", True), (".5", True), ("5.", True),
    ("863_93", False), (" 5 ", False), ("5 ", False), ("-inf", False), ("nan", False),
    ("inf", False), ("0x10", False), ("\u0665", False), ("", False), ("1e999", False),
])
def test_numeric_strings_are_plain_decimal_numbers(text: str, is_number: bool) -> None:
    gte = predicate(_sel("ProcessId|gte", -10**9))
    assert gte({"process.pid": text}) is is_number


def test_numbers_compare_as_numbers_and_match_their_text() -> None:
    assert predicate(_sel("ProcessId|gt", 9))({"process.pid": "10"})  # not text order
    assert predicate(_sel("ProcessId", 22))({"process.pid": "22"})
    assert not predicate(_sel("ProcessId", 22))({"process.pid": "22.0"})  # text equality
    assert not predicate(_sel("ProcessId|gt", 0))({"process.pid": True})  # never booleans


def test_case_folding_is_unicode_lower_on_both_sides() -> None:
    eq = predicate(_sel("User", "ÉLODIE"))
    assert eq({"user.name": "élodie"})  # Unicode, not only ASCII (SQLite folds ASCII only)
    assert predicate(_sel("User", "straße"))({"user.name": "STRASSE"}) is False  # no casefold
    # the Kelvin sign lowers to k: str.lower() says so
    assert predicate(_sel("User", "kelvin"))({"user.name": "\u212aelvin"})


def test_single_wildcard_matches_one_character_of_the_lowered_text() -> None:
    """'İ' (U+0130) lowers to two code points ('i' + combining dot): '?' does not match it
    alone, '??' does — the pattern is matched against the lowered value."""
    one, two = predicate(_sel("User", "a?b")), predicate(_sel("User", "a??b"))
    assert one({"user.name": "aXb"}) and not one({"user.name": "a\u0130b"})
    assert two({"user.name": "a\u0130b"})


def test_regex_dollar_is_end_of_text_only() -> None:
    """RE2 without (?m): '$' matches at the very end, not before a final newline (Python's
    re would)."""
    check = predicate(_sel("CommandLine|re", "id$"))
    assert check({"process.command_line": "sudo id"})
    assert not check({"process.command_line": "sudo id\n"})
    multi = predicate(_sel("CommandLine|re|m", "id$"))
    assert multi({"process.command_line": "sudo id\nls"})


def test_regex_ignore_case_uses_re2_folding() -> None:
    check = predicate(_sel("CommandLine|re|i", "union\\s+select"))
    assert check({"process.command_line": "UNION \u017fELECT"})  # long s folds to s in RE2


def test_window_is_open_at_its_start_and_closed_at_its_end(tmp_path: Path) -> None:
    """(t - timespan, t]: an event exactly timespan before the newest is out."""
    engine = engine_for(tmp_path, syn_rule(),
                        corr("event_count", {"gte": 2}, ["syn"], ["destination.ip"],
                             timespan="10s"))

    def syn(ts: float) -> object:
        return event(ts, PACKET, **{"destination.ip": "198.18.0.1", "tcp.flags.syn": True})
    assert not run(engine, [syn(T0), syn(T0 + 10)], tick=False)
    assert run(engine, [syn(T0 + 19.5)], tick=False)


def test_value_count_counts_values_case_sensitively(tmp_path: Path) -> None:
    """Distinct values are distinct as the events carry them: 'Admin' and 'admin' are two
    (user names and paths are case-sensitive on Linux)."""
    report = load(tmp_path, syn_rule(), corr(
        "value_count", {"gte": 2, "field": "user.name"}, ["syn"], ["destination.ip"]))
    engine = Engine(report.ruleset, None, EngineOptions())

    def syn(ts: float, user: str) -> object:
        return event(ts, PACKET, **{"destination.ip": "198.18.0.1", "tcp.flags.syn": True,
                                    "user.name": user})
    assert run(engine, [syn(T0, "admin"), syn(T0 + 1, "Admin")], tick=False)
