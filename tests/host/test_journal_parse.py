"""journalctl -o json entries → auth events; bad entries counted by reason."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.collectors.log_decoders import JournalDecoder, decode_journal_file

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "auth"


def test_journal_fixture() -> None:
    problems: list[tuple[str, str]] = []
    events = list(decode_journal_file(FIXTURES / "journal.jsonl",
                                      on_problem=lambda s, r: problems.append((s, r))))
    assert sorted(r for _, r in problems) == [
        "bad_json", "bad_json", "bad_message", "bad_timestamp", "invalid_utf8"]
    assert len(events) == 3
    first = events[0].fields
    assert (first["event.action"], first["event.outcome"], first["source.ip"]) == (
        "ssh_login", "failure", "203.0.113.30")
    assert events[0].timestamp == 1795255246.584136
    assert first["process.pid"] == 812 and first["log.syslog.facility.code"] == 4
    assert events[1].get("event.action") == "ssh_invalid_user"
    assert "\ufffd" in events[1].get("user.name")
    assert events[2].logsource.service == "sudo" and events[2].get("user.name") == "alice"


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["MESSAGE", "__REALTIME_TIMESTAMP", "_PID",
                                        "SYSLOG_IDENTIFIER", "_HOSTNAME", "_COMM"]),
                       st.one_of(st.text(max_size=20), st.integers(), st.none(),
                                 st.lists(st.integers(-5, 300), max_size=5))))
def test_fuzz_entries_never_crash(entry: dict) -> None:
    JournalDecoder().feed(json.dumps(entry).encode())
