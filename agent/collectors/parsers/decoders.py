"""Line decoders shared by the log collectors, ``vedette replay --log`` and rule fixtures.

A decoder turns raw lines (bytes as read from a file or a pipe) into events with the
production parsers. Each line is sanitised first (:mod:`agent.collectors.parsers.line_clean`);
what the sanitiser found and lines that do not parse are reported through
``on_problem(source, reason)`` (wired to ``vedette_input_errors_total``), never raised.

:data:`DECODERS` maps a log kind (``auth``, ``sshd``, ``journal-json``, ``auditd``, ``nginx``,
``apache``) to a function ``(path) -> Iterator[Event]`` that decodes a whole file; year-less
syslog timestamps are resolved against the file's modification time (see
:mod:`agent.collectors.parsers.syslog`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol

from agent.collectors.parsers.audit import (
    AuditJoiner,
    AuditRecord,
    group_events,
    parse_record,
    without_trailing_fields,
)
from agent.collectors.parsers.auth import auth_event, build_auth_event
from agent.collectors.parsers.auth_context import AuthContext
from agent.collectors.parsers.journal import LOG_FORGERY, JournalError, journal_event
from agent.collectors.parsers.line_clean import TOO_LONG, clean_line, clean_lines
from agent.collectors.parsers.syslog import SyslogClock
from agent.collectors.parsers.web import web_event
from agent.events import Event

OnProblem = Callable[[str, str], None]
MALFORMED = "malformed"
FORGED = "forged"  # a journal entry whose writer is not the program it names


def _ignore(source: str, reason: str) -> None:
    return None


class LineDecoder(Protocol):
    source: str

    def feed(self, raw: bytes) -> list[Event]:
        """Events completed by this line (often one, sometimes none)."""

    def feed_lines(self, raws: list[bytes]) -> list[Event]:
        """Events completed by these lines, in order (what ``feed`` gives for each)."""

    def flush(self) -> list[Event]:
        """Events still held back (auditd groups waiting for more records)."""


class _OneLineOneEvent:
    """Decoders whose every line stands alone: clean it, count its problems, decode it."""

    source: str
    _on_problem: OnProblem

    def _decode(self, text: str) -> Event | None:
        raise NotImplementedError

    def feed(self, raw: bytes) -> list[Event]:
        text, problems = clean_line(raw)
        for reason in problems:
            self._on_problem(self.source, reason)
        event = self._decode(text)
        return [] if event is None else [event]

    def feed_lines(self, raws: list[bytes]) -> list[Event]:
        texts = clean_lines(raws)  # one decode for the batch when every line is clean
        if texts is None:
            return [event for raw in raws for event in self.feed(raw)]
        decode = self._decode
        return [event for event in map(decode, texts) if event is not None]

    def flush(self) -> list[Event]:
        return []


class AuthDecoder(_OneLineOneEvent):
    """Syslog auth lines (``/var/log/auth.log``, ``/var/log/secure``).

    With ``bare_program`` (``sshd``), lines without a syslog header are that program's bare
    messages, as ``sshd -E <file>`` writes them; they carry no time, so they are stamped with
    the clock's reference time (the wall clock when tailing, the file's mtime in replay).
    """

    def __init__(self, clock: SyslogClock | None = None, *, path: str | None = None,
                 on_problem: OnProblem = _ignore, source: str = "auth_log",
                 context: AuthContext | None = None, bare_program: str | None = None) -> None:
        self.source = source
        self._clock = clock or SyslogClock()
        self._path = path
        self._on_problem = on_problem
        self._context = context
        self._bare = bare_program

    def _decode(self, text: str) -> Event | None:
        if not text or text.isspace():
            return None
        event = auth_event(text, self._clock, path=self._path)
        if event is None and self._bare is not None:
            event = build_auth_event(self._clock.reference(), "", self._bare, None, text, text,
                                     path=self._path)
        if event is None:
            self._on_problem(self.source, MALFORMED)
            return None
        if self._context is not None:
            self._context.annotate(event)
        return event

class WebDecoder(_OneLineOneEvent):
    """nginx/Apache access logs, combined or common format."""

    def __init__(self, *, path: str | None = None, on_problem: OnProblem = _ignore,
                 source: str = "web_log") -> None:
        self.source = source
        self._path = path
        self._on_problem = on_problem

    def _decode(self, text: str, raw_bytes: int | None = None) -> Event | None:
        if not text or text.isspace():
            return None
        event = web_event(text, path=self._path, truncated=raw_bytes is not None,
                          line_bytes=raw_bytes)
        if event is None:
            self._on_problem(self.source, MALFORMED)
        return event

    def feed(self, raw: bytes) -> list[Event]:
        text, problems = clean_line(raw)
        for reason in problems:
            self._on_problem(self.source, reason)
        event = self._decode(text, len(raw) if TOO_LONG in problems else None)
        return [] if event is None else [event]


class AuditDecoder:
    """``/var/log/audit/audit.log``: records joined by serial, one event per record."""

    def __init__(self, *, on_problem: OnProblem = _ignore, source: str = "auditd",
                 max_pending: int = 64) -> None:
        self.source = source
        self._on_problem = on_problem
        self._joiner = AuditJoiner(max_pending=max_pending)

    def feed(self, raw: bytes) -> list[Event]:
        text, problems = clean_line(raw.replace(b"\x1d", b" "))
        for reason in problems:
            self._on_problem(self.source, reason)
        if not text or text.isspace():
            return []
        record = parse_record(text)
        if record is None:
            self._on_problem(self.source, MALFORMED)
            return []
        if TOO_LONG in problems:  # the real trailing fields were cut off
            record = without_trailing_fields(record)
        return self._events(self._joiner.feed(record))

    def feed_lines(self, raws: list[bytes]) -> list[Event]:
        return [event for raw in raws for event in self.feed(raw)]

    def flush(self) -> list[Event]:
        return self._events(self._joiner.flush())

    def _events(self, groups: list[list[AuditRecord]]) -> list[Event]:
        return [event for group in groups for event in group_events(group)]


class JournalDecoder:
    """``journalctl -o json`` output, one JSON object per line."""

    def __init__(self, *, on_problem: OnProblem = _ignore, source: str = "journal",
                 context: AuthContext | None = None) -> None:
        self.source = source
        self._on_problem = on_problem
        self._context = context

    def feed(self, raw: bytes) -> list[Event]:
        if not raw.strip():
            return []
        try:
            event, problems = journal_event(raw)
        except JournalError as exc:
            self._on_problem(self.source, exc.reason)
            return []
        for reason in problems:
            self._on_problem(self.source, reason)
        if event.logsource is LOG_FORGERY:
            self._on_problem(self.source, FORGED)
        elif self._context is not None:
            self._context.annotate(event)
        return [event]

    def feed_lines(self, raws: list[bytes]) -> list[Event]:
        return [event for raw in raws for event in self.feed(raw)]

    def flush(self) -> list[Event]:
        return []


def decode_lines(decoder: LineDecoder, lines: Iterable[bytes]) -> Iterator[Event]:
    for raw in lines:
        yield from decoder.feed(raw)
    yield from decoder.flush()


def _file_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        for line in handle:
            yield line.rstrip(b"\n")


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _auth_decoder(path: Path, on_problem: OnProblem = _ignore) -> LineDecoder:
    clock = SyslogClock(reference=_mtime(path) or None)
    return AuthDecoder(clock, path=str(path), on_problem=on_problem, context=AuthContext())


def _sshd_decoder(path: Path, on_problem: OnProblem = _ignore) -> LineDecoder:
    """``sshd -E`` output (bare messages) or syslog lines from sshd."""
    clock = SyslogClock(reference=_mtime(path) or None)
    return AuthDecoder(clock, path=str(path), on_problem=on_problem, context=AuthContext(),
                       bare_program="sshd")


def _web_decoder(path: Path, on_problem: OnProblem = _ignore) -> LineDecoder:
    return WebDecoder(path=str(path), on_problem=on_problem)


def _audit_decoder(path: Path, on_problem: OnProblem = _ignore) -> LineDecoder:
    return AuditDecoder(on_problem=on_problem)


def _journal_decoder(path: Path, on_problem: OnProblem = _ignore) -> LineDecoder:
    return JournalDecoder(on_problem=on_problem, context=AuthContext())


LINE_DECODERS: dict[str, Callable[[Path, OnProblem], LineDecoder]] = {
    "auth": _auth_decoder,
    "sshd": _sshd_decoder,
    "journal-json": _journal_decoder,
    "auditd": _audit_decoder,
    "nginx": _web_decoder,
    "apache": _web_decoder,
}
"""Log kind → the decoder for one file (``vedette replay --log`` drives it line by line)."""
GROUPING_KINDS = frozenset({"auditd"})
"""Kinds whose decoder holds records back until their group is complete (events != lines)."""


def decode_auth_file(path: Path, on_problem: OnProblem = _ignore) -> Iterator[Event]:
    yield from decode_lines(_auth_decoder(path, on_problem), _file_lines(path))


def decode_sshd_file(path: Path, on_problem: OnProblem = _ignore) -> Iterator[Event]:
    """``sshd -E`` output (bare messages) or syslog lines from sshd."""
    yield from decode_lines(_sshd_decoder(path, on_problem), _file_lines(path))


def decode_web_file(path: Path, on_problem: OnProblem = _ignore) -> Iterator[Event]:
    yield from decode_lines(_web_decoder(path, on_problem), _file_lines(path))


def decode_audit_file(path: Path, on_problem: OnProblem = _ignore) -> Iterator[Event]:
    yield from decode_lines(_audit_decoder(path, on_problem), _file_lines(path))


def decode_journal_file(path: Path, on_problem: OnProblem = _ignore) -> Iterator[Event]:
    yield from decode_lines(_journal_decoder(path, on_problem), _file_lines(path))


FileDecoder = Callable[..., Iterator[Event]]

DECODERS: dict[str, FileDecoder] = {
    "auth": decode_auth_file,
    "sshd": decode_sshd_file,
    "journal-json": decode_journal_file,
    "auditd": decode_audit_file,
    "nginx": decode_web_file,
    "apache": decode_web_file,
}
"""Log kind → ``decoder(path, on_problem=...) -> Iterator[Event]``."""
