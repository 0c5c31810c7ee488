"""``journalctl -o json`` entries → the same auth events as syslog lines.

An entry is one JSON object per line. ``MESSAGE`` is a string, or an array of byte values when
the message was not valid UTF-8 (or ``null`` when too large); ``__REALTIME_TIMESTAMP`` is
microseconds since the epoch as a decimal string. The program is ``SYSLOG_IDENTIFIER`` (falling
back to ``_COMM``) and the pid ``SYSLOG_PID``/``_PID``. Every text goes through
:func:`~agent.collectors.line_clean.clean_line`, so journal input is as safe as file input.
"""

from __future__ import annotations

import json
from typing import Any

from agent.collectors.auth_parse import build_auth_event
from agent.collectors.line_clean import clean_line
from agent.events import Event

MAX_ENTRY_BYTES = 256 * 1024


class JournalError(ValueError):
    """The entry is not a usable journal record; ``reason`` is a bounded label value."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _text(value: Any) -> tuple[str, frozenset[str]]:
    if isinstance(value, str):
        return clean_line(value)
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return clean_line(bytes(value))
    raise JournalError("bad_message")


def journal_event(raw: bytes | str) -> tuple[Event, frozenset[str]]:
    """(event, sanitiser problems) of one entry; raises :class:`JournalError` when unusable."""
    if len(raw) > MAX_ENTRY_BYTES:
        raise JournalError("too_long")
    try:
        entry = json.loads(raw)
    except (ValueError, RecursionError):
        raise JournalError("bad_json") from None
    if not isinstance(entry, dict):
        raise JournalError("bad_json")
    message, problems = _text(entry.get("MESSAGE"))
    try:
        ts = int(entry["__REALTIME_TIMESTAMP"]) / 1e6
    except (KeyError, TypeError, ValueError):
        raise JournalError("bad_timestamp") from None
    program_raw = entry.get("SYSLOG_IDENTIFIER") or entry.get("_COMM") or "unknown"
    program, _ = _text(program_raw) if isinstance(program_raw, str | list) else ("unknown", None)
    program = program.split()[0][:64] if program.strip() else "unknown"
    pid: int | None = None
    for key in ("SYSLOG_PID", "_PID"):
        value = entry.get(key)
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
            pid = int(value)
            break
    host_raw = entry.get("_HOSTNAME")
    host = clean_line(host_raw).text[:255] if isinstance(host_raw, str) else ""
    line = f"{host} {program}[{pid}]: {message}" if pid is not None else \
        f"{host} {program}: {message}"
    event = build_auth_event(ts, host, program, pid, message, line)
    event.fields["event.dataset"] = "linux.auth"
    event.fields["log.syslog.facility.code"] = _int(entry.get("SYSLOG_FACILITY"))
    if event.fields["log.syslog.facility.code"] is None:
        del event.fields["log.syslog.facility.code"]
    return event, problems


def _int(value: Any) -> int | None:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 4:
        return int(value)
    return None
