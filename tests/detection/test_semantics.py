"""The points the Sigma specification leaves open, as decided in docs/rules.md "Matching
semantics" — one test each, so a change of mind is a visible change."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.detection import Engine, EngineOptions
from tests.detection.helpers import (
    PACKET,
    T0,
    engine_for,
    event,
    load,
    predicate,
    rule_doc,
    run,
)
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


def _port_syn(ts: float, port: object) -> object:
    return event(ts, PACKET, **{"destination.ip": "198.18.0.1", "tcp.flags.syn": True,
                                "destination.port": port})


def test_value_count_counts_a_value_by_its_text(tmp_path: Path) -> None:
    """The text matching compares: 22, 22.0 and "22" are one value (Python's equality kept
    22 apart from "22" and merged True with 1); True is "true", a second value. The first
    event takes the full path, the next ones the per-event feeder: both count by text."""
    engine = engine_for(tmp_path, syn_rule(), corr(
        "value_count", {"gte": 2, "field": "destination.port"}, ["syn"], ["destination.ip"]))
    assert not run(engine, [_port_syn(T0, 1), _port_syn(T0 + 1, "1"),
                            _port_syn(T0 + 2, 1.0)], tick=False)
    assert run(engine, [_port_syn(T0 + 3, True)], tick=False)


def test_value_count_counts_a_list_as_one_value(tmp_path: Path) -> None:
    """A list-valued field is one value (its text), not one per element."""
    engine = engine_for(tmp_path, syn_rule(), corr(
        "value_count", {"gte": 3, "field": "destination.port"}, ["syn"], ["destination.ip"]))
    assert not run(engine, [_port_syn(T0, [1, 2]), _port_syn(T0 + 1, 3)], tick=False)
    assert run(engine, [_port_syn(T0 + 2, [2, 1])], tick=False)


def test_one_event_can_complete_a_temporal_correlation(tmp_path: Path) -> None:
    """temporal: an event matching every referenced rule counts for each (each rule matched
    within the timespan); temporal_ordered needs one event per step."""
    def rule(name: str, flag: str) -> dict[str, object]:
        return rule_doc({"sel": {flag: True}, "condition": "sel"},
                        {"product": "vedette", "category": "network_packet"}, name=name)
    both = event(T0, PACKET, **{"source.ip": "198.18.0.1", "tcp.flags.syn": True,
                                "tcp.flags.fin": True})
    temporal = engine_for(tmp_path / "t", rule("a", "tcp.flags.syn"), rule("b", "tcp.flags.fin"),
                          corr("temporal", None, ["a", "b"], ["source.ip"]))
    assert run(temporal, [both])
    ordered = engine_for(tmp_path / "o", rule("a", "tcp.flags.syn"), rule("b", "tcp.flags.fin"),
                         corr("temporal_ordered", None, ["a", "b"], ["source.ip"]))
    assert not run(ordered, [both])


def test_a_huge_integer_is_no_number_and_no_crash() -> None:
    """Like the text "1e999", an integer beyond float range is no number."""
    assert predicate(_sel("ProcessId|gt", 5))({"process.pid": 10**400}) is False


def test_an_infinite_float_is_no_number_like_its_text() -> None:
    gt = predicate(_sel("ProcessId|gt", 5))
    assert gt({"process.pid": "1e999"}) is False
    assert gt({"process.pid": float("inf")}) is False


def test_group_by_values_group_as_the_events_carry_them(tmp_path: Path) -> None:
    """Unlike value_count's values, group-by values are not reduced to text: 1 and "1" are
    two groups (docs/rules.md)."""
    engine = engine_for(tmp_path, syn_rule(), corr(
        "event_count", {"gte": 2}, ["syn"], ["destination.port"]))
    assert not run(engine, [_port_syn(T0, 1), _port_syn(T0 + 1, "1")], tick=False)
    assert run(engine, [_port_syn(T0 + 2, 1)], tick=False)
