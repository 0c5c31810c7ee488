"""The syslog line header, in the two styles rsyslog writes to ``/var/log/auth.log``.

* traditional (RFC 3164-like): ``Nov 21 10:00:46 host sshd[812]: message``
* high precision (RFC 3339, the rsyslog default since Debian 12):
  ``2026-11-21T10:00:46.584136+00:00 host sshd[812]: message``

The ``[pid]`` part is optional in both. The program name ends at the first ``[`` or ``:`` so a
message that contains ``sshd[1]:`` text cannot change the program a line is attributed to.

**Year inference.** Traditional timestamps carry no year or zone. They are read in the host's
local time zone, in the year of the reference clock; a date more than one day after the
reference belongs to the previous year (a December line read in January). The reference is the
wall clock for live tailing and the file's modification time in ``vedette replay``.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from functools import lru_cache
from typing import NamedTuple

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}

_TRADITIONAL = re.compile(
    r"(?P<stamp>[A-Z][a-z]{2} {1,2}\d{1,2} \d\d:\d\d:\d\d)(?:\.\d+)?"
    r" (?P<host>\S+) (?P<prog>[^\s\[:]+)(?:\[(?P<pid>\d{1,10})\])?: ?(?P<msg>.*)",
    re.DOTALL,
)
_RFC3339 = re.compile(
    r"(?P<ts>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d)(?:\.(?P<frac>\d{1,9}))?"
    r"(?P<zone>Z|[+-]\d\d:?\d\d)?"
    r" (?P<host>\S+) (?P<prog>[^\s\[:]+)(?:\[(?P<pid>\d{1,10})\])?: ?(?P<msg>.*)",
    re.DOTALL,
)


class SyslogLine(NamedTuple):
    timestamp: float
    hostname: str
    program: str
    pid: int | None
    message: str


class SyslogClock:
    """Resolves year-less timestamps against a reference time (see the module docstring)."""

    def __init__(self, reference: float | None = None) -> None:
        self._fixed = reference
        self._hour_cache: dict[tuple[int, int, int, int], float] = {}
        self._year_of: tuple[float, int] = (-1.0, 0)  # (reference second, its local year)
        # "Nov 21 10:00:46" -> (epoch in the reference year, in the year before); lines repeat
        # their second, so each distinct stamp is resolved once per reference year
        self._stamps: dict[str, tuple[float | None, float | None]] = {}
        self._stamps_year = 0

    def reference(self) -> float:
        return self._fixed if self._fixed is not None else time.time()

    def _year(self, ref: float) -> int:
        second = float(int(ref))
        if self._year_of[0] != second:
            self._year_of = (second, time.localtime(ref).tm_year)
        return self._year_of[1]

    def resolve(self, month: int, day: int, hour: int, minute: int, second: int) -> float | None:
        ref = self.reference()
        year = self._year(ref)
        ts = self._epoch(year, month, day, hour)
        if ts is None:
            return None
        ts += minute * 60 + second
        if ts > ref + 86400:
            prev = self._epoch(year - 1, month, day, hour)
            if prev is None:
                return None
            ts = prev + minute * 60 + second
        return ts

    def resolve_stamp(self, stamp: str) -> float | None:
        """``resolve`` for the traditional stamp text (``Nov 21 10:00:46``), cached."""
        ref = self.reference()
        year = self._year(ref)
        if year != self._stamps_year:
            self._stamps.clear()
            self._stamps_year = year
        pair = self._stamps.get(stamp)
        if pair is None:
            pair = self._stamp_epochs(stamp, year)
            if len(self._stamps) >= 4096:
                self._stamps.clear()
            self._stamps[stamp] = pair
        this_year, year_before = pair
        if this_year is not None and this_year > ref + 86400:
            return year_before
        return this_year

    def _stamp_epochs(self, stamp: str, year: int) -> tuple[float | None, float | None]:
        mon, day, clock_time = stamp.split()
        hour, minute, second = clock_time.split(":")
        month = _MONTHS.get(mon)
        if month is None or minute > "59" or second > "60":
            return None, None
        offset = int(minute) * 60 + int(second)
        this_year = self._epoch(year, month, int(day), int(hour))
        if this_year is None:
            return None, None
        before = self._epoch(year - 1, month, int(day), int(hour))
        return this_year + offset, None if before is None else before + offset

    def _epoch(self, year: int, month: int, day: int, hour: int) -> float | None:
        key = (year, month, day, hour)
        cached = self._hour_cache.get(key)
        if cached is None:
            if not (1 <= day <= 31 and hour <= 23):
                return None
            try:
                datetime(year, month, day)  # rejects Feb 30
            except ValueError:
                return None
            cached = time.mktime((year, month, day, hour, 0, 0, 0, 0, -1))
            if len(self._hour_cache) > 4096:
                self._hour_cache.clear()
            self._hour_cache[key] = cached
        return cached


Header = tuple[float, str, str, int | None, str]


def parse_syslog(text: str, clock: SyslogClock) -> SyslogLine | None:
    """The header of one (already sanitised) line, or ``None`` when it is not a syslog line."""
    header = parse_header(text, clock)
    return None if header is None else SyslogLine(*header)


def parse_header(text: str, clock: SyslogClock) -> Header | None:
    """:func:`parse_syslog` as a plain tuple (the per-line fast path: no named tuple)."""
    if not text:
        return None
    first = text[0]
    if "0" <= first <= "9":
        m = _RFC3339.match(text)
        if m is None:
            return None
        stamp, frac, zone, host, prog, pid, msg = m.groups()
        base = _whole_second(stamp, zone or "")
        ts = None if base is None else base + (int(frac) / 10 ** len(frac) if frac else 0.0)
    else:
        m = _TRADITIONAL.match(text)
        if m is None:
            return None
        stamp, host, prog, pid, msg = m.groups()
        ts = clock.resolve_stamp(stamp)
    if ts is None:
        return None
    return ts, host, prog, int(pid) if pid else None, msg


@lru_cache(maxsize=4096)
def _whole_second(whole: str, zone: str) -> float | None:
    if zone in ("Z", "z"):
        zone = "+00:00"
    try:
        parsed = datetime.fromisoformat(whole + zone)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return time.mktime(parsed.timetuple())
    return parsed.timestamp()
