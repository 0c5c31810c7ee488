"""Log files offline: ``vedette replay --log KIND`` line by line, and log fixtures of rule tests.

This is the one module of :mod:`agent.offline` that imports the collectors' line decoders
(``agent.collectors.parsers.decoders``): every log kind the agent tails live (``auth``, ``sshd``,
``journal-json``, ``auditd``, ``nginx``, ``apache``) is readable offline through the same code.

Like ``fail2ban-regex``, the point is to see what the parsers make of a real file: each line is
**parsed** (it became an event the parsers understood: fields beyond the envelope, such as
``event.action``, ``source.ip``, ``http.*``; for auditd a valid record of a group),
**unclassified** (a readable line no parser gives meaning to — a syslog line of an uninteresting
program, a blank line, a format variant; it still reaches keyword rules as ``message``) or
**malformed** (not a line of this kind at all). :class:`LineAccount` keeps the
counts and the first unparsed lines for ``--show-unparsed N``. A file that is not text at all
(NUL bytes, gzip, a packet capture) is refused with what it looks like instead of reporting
"0 events" (:func:`binary_reason`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from agent.collectors.parsers.decoders import DECODERS, GROUPING_KINDS, LINE_DECODERS, MALFORMED
from agent.events import Event

LOG_KINDS = frozenset(LINE_DECODERS)
"""The log kinds (``replay --log KIND`` gives them the line-by-line account)."""


def decode_log_file(kind: str, path: Path) -> Iterator[Event]:
    """The events of a log file of ``kind``, without the account (fixtures)."""
    return DECODERS[kind](path)

SNIFF_BYTES = 8192
ENVELOPE = frozenset({"message", "event.dataset", "host.name", "process.name", "process.pid",
                      "log.file.path", "log.syslog.hostname", "log.syslog.appname"})
"""Fields every decoded line carries: an event with nothing more was not understood."""
MAX_KEPT_LINE = 300

_MAGIC = (
    (b"\x1f\x8b", "gzip-compressed: decompress it first (zcat FILE > FILE.log)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed: decompress it first (zstdcat FILE > FILE.log)"),
    (b"BZh", "bzip2-compressed: decompress it first (bzcat FILE > FILE.log)"),
    (b"\xfd7zXZ\x00", "xz-compressed: decompress it first (xzcat FILE > FILE.log)"),
    (b"\xd4\xc3\xb2\xa1", "a pcap capture: replay it without --log"),
    (b"\xa1\xb2\xc3\xd4", "a pcap capture: replay it without --log"),
    (b"\x4d\x3c\xb2\xa1", "a pcap capture: replay it without --log"),
    (b"\x0a\x0d\x0d\x0a", "a pcapng capture: replay it without --log"),
    (b"LPKSHHRH", "a binary systemd journal file: export it first "
                  "(journalctl --file FILE -o json > FILE.json, then --log journal-json)"),
)


def binary_reason(path: Path) -> str | None:
    """What a non-text file looks like (None: it looks like text). Raises OSError."""
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return f"binary data, {what}"
    if b"\x00" in head and _control_share(head.replace(b"\x00", b"")) > MAX_CONTROL_SHARE:
        return "binary data (NUL bytes), not a text log"
    return None


MAX_CONTROL_SHARE = 0.10
"""Past this share of control bytes (besides NUL runs) a file is binary: a text log with the
NUL-filled blocks an unclean shutdown leaves is still a log (executables: 15-40 %)."""


def _control_share(data: bytes) -> float:
    if not data:
        return 1.0
    return sum(1 for b in data if (b < 0x20 and b not in b"\t\n\r") or b == 0x7F) / len(data)


@dataclass
class LineAccount:
    keep_unparsed: int = 0
    lines: int = 0
    parsed: int = 0
    unclassified: int = 0
    malformed: int = 0
    unparsed: list[tuple[int, str, str]] = field(default_factory=list)
    """(line number, ``unclassified`` or ``malformed``, text) of the first unparsed lines."""

    def summary(self) -> str:
        return (f"{self.lines:,} lines: {self.parsed:,} parsed, {self.unclassified:,} "
                f"unclassified, {self.malformed:,} malformed")

    def note_unparsed(self, number: int, verdict: str, raw: bytes) -> None:
        if len(self.unparsed) < self.keep_unparsed:
            text = raw[:MAX_KEPT_LINE * 4].decode("utf-8", "replace")
            self.unparsed.append((number, verdict, text))


def log_events(kind: str, path: Path, account: LineAccount) -> Iterator[Event]:
    """The events of ``path`` decoded as ``kind``, accounting for every line in ``account``."""
    problem = [False]

    def on_problem(source: str, reason: str) -> None:
        if reason == MALFORMED:
            problem[0] = True

    decoder = LINE_DECODERS[kind](path, on_problem)
    grouping = kind in GROUPING_KINDS
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            raw = line.rstrip(b"\n")
            account.lines += 1
            problem[0] = False
            events = decoder.feed(raw)
            if problem[0]:
                account.malformed += 1
                account.note_unparsed(number, "malformed", raw)
            elif (grouping and raw.strip()) or any(not ENVELOPE.issuperset(e.fields)
                                                   for e in events):
                account.parsed += 1
            else:
                account.unclassified += 1
                account.note_unparsed(number, "unclassified", raw)
            yield from events
    yield from decoder.flush()
