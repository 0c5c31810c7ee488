"""``journalctl -o json`` entries → the same auth events as syslog lines.

An entry is one JSON object per line. ``MESSAGE`` is a string, or an array of byte values when
the message was not valid UTF-8 (or ``null`` when too large); ``__REALTIME_TIMESTAMP`` is
microseconds since the epoch as a decimal string. The program is ``SYSLOG_IDENTIFIER`` (falling
back to ``_COMM``); the pid is journald's trusted ``_PID`` (``SYSLOG_PID`` only when journald
recorded none). Every text goes through :func:`~agent.collectors.parsers.line_clean.clean_line`, so
journal input is as safe as file input.

``SYSLOG_IDENTIFIER`` is chosen by whoever writes the entry: before an entry counts as the
program it names, :func:`agent.collectors.parsers.journal_trust.verify` checks it against the fields
journald itself recorded (``_UID``, ``_EXE``, ``_COMM``, ``_SYSTEMD_UNIT``). An entry that fails
becomes a ``vedette``/``log_forgery`` event (``event.action: forged_entry``) that names the
real writer, and never a login: the address and user in its message are not attributed.
"""

from __future__ import annotations

import json
from typing import Any

from agent.collectors.parsers.auth import build_auth_event
from agent.collectors.parsers.journal_trust import verify
from agent.collectors.parsers.line_clean import clean_line
from agent.events import Event, LogSource

LOG_FORGERY = LogSource("vedette", "log_forgery")

MAX_ENTRY_BYTES = 256 * 1024
MAX_TIMESTAMP = float(1 << 33)  # the year 2242


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
    if not 0 <= ts < MAX_TIMESTAMP:  # journald's receive time: only a corrupt file has these
        raise JournalError("bad_timestamp")
    program_raw = entry.get("SYSLOG_IDENTIFIER") or entry.get("_COMM") or "unknown"
    program, _ = _text(program_raw) if isinstance(program_raw, str | list) else ("unknown", None)
    program = program.split()[0][:64] if program.strip() else "unknown"
    trusted_pid = _pid(entry.get("_PID"))
    pid = trusted_pid if trusted_pid is not None else _pid(entry.get("SYSLOG_PID"))
    host_raw = entry.get("_HOSTNAME")
    host = clean_line(host_raw).text[:255] if isinstance(host_raw, str) else ""
    line = f"{host} {program}[{pid}]: {message}" if pid is not None else \
        f"{host} {program}: {message}"
    event = build_auth_event(ts, host, program, pid, message, line)
    verdict = verify(entry, program, "event.action" in event.fields)
    if not verdict.trusted:
        return forgery_event(entry, ts, host, program, line, event.fields.get("event.action"),
                             verdict.reason), problems
    event.fields["event.dataset"] = "linux.auth"
    facility = _int(entry.get("SYSLOG_FACILITY"))
    if facility is not None:
        event.fields["log.syslog.facility.code"] = facility
    return event, problems


def forgery_event(entry: dict[str, Any], ts: float, host: str, claimed: str, line: str,
                  claimed_action: object, reason: str) -> Event:
    """The ``log_forgery`` event of an entry whose writer is not the program it names.

    Only journald's own fields describe the writer; nothing from the message is attributed.
    """
    fields: dict[str, Any] = {
        "event.kind": "event", "event.category": "process", "event.action": "forged_entry",
        "event.dataset": "vedette.log_forgery", "event.reason": reason,
        "vedette.log.claimed_program": claimed, "message": line,
        "log.syslog.hostname": host,
    }
    if isinstance(claimed_action, str):
        fields["vedette.log.claimed_action"] = claimed_action
    pid = _pid(entry.get("_PID"))
    if pid is not None:
        fields["process.pid"] = pid
    for key, ecs in (("_UID", "user.id"), ("_EXE", "process.executable"),
                     ("_COMM", "process.name"), ("_SYSTEMD_UNIT", "vedette.log.unit")):
        value = entry.get(key)
        if isinstance(value, str) and value:
            fields[ecs] = clean_line(value, 4096).text
    return Event(ts, LOG_FORGERY, fields)


def _pid(value: Any) -> int | None:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
        return int(value)
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 4:
        return int(value)
    return None
