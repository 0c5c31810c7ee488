"""Blocklist files → one :class:`~agent.threatintel.prefixes.PrefixTable` of bad networks.

Formats, detected per line so one loader reads them all:

* plain lists: one IP address or CIDR per line;
* FireHOL ``.netset``/``.ipset``: the same, with ``#`` comment headers;
* Spamhaus DROP/EDROP text: ``1.10.16.0/20 ; SBL256894`` (``;`` starts a comment);
* Spamhaus DROP JSON lines (``drop_v4.json``): ``{"cidr": "1.10.16.0/20", "sblid": …}``.

A line that is none of these is skipped and reported (file, line, reason); the rest of the file
still loads. :class:`IntelSet` is immutable once built; the reloader swaps in a new one.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from agent.threatintel.prefixes import PrefixTable

log = logging.getLogger(__name__)

MAX_FEED_BYTES = 64 * 1024 * 1024
MAX_REPORTED_ERRORS = 5


@dataclass(frozen=True)
class LineError:
    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class IntelSet:
    """Networks from every feed; :meth:`match` names the feed of the longest match."""

    table: PrefixTable[str] = field(default_factory=PrefixTable)
    feeds: dict[str, int] = field(default_factory=dict)
    errors: list[LineError] = field(default_factory=list)
    error_count: int = 0

    def match(self, address: bytes) -> str | None:
        hit = self.table.lookup_bytes(address)
        return hit[1] if hit is not None else None

    def __len__(self) -> int:
        return len(self.table)


def parse_line(text: str) -> str | None:
    """The network written on one feed line, ``None`` for blank/comment lines.

    Raises ``ValueError`` with a reason when the line holds something else.
    """
    line = text.strip()
    if not line or line[0] in "#;":
        return None
    if line[0] == "{":
        try:
            doc = json.loads(line)
        except ValueError:
            raise ValueError("invalid JSON line") from None
        if not isinstance(doc, dict):
            raise ValueError("JSON line is not an object")
        if "cidr" not in doc:
            return None  # Spamhaus trailer: {"type":"metadata",…}
        line = str(doc["cidr"])
    else:
        line = line.split(";", 1)[0].split("#", 1)[0].split()[0]
    try:
        return str(ipaddress.ip_network(line, strict=False))
    except ValueError:
        raise ValueError(f"not an IP address or network: {line[:60]!r}") from None


def load_feeds(paths: list[Path]) -> IntelSet:
    """Read every file (a missing or unreadable one is an error entry, not an exception)."""
    intel = IntelSet()
    for path in paths:
        name = path.stem
        count = 0
        try:
            if path.stat().st_size > MAX_FEED_BYTES:
                raise OSError(f"larger than {MAX_FEED_BYTES} bytes")
            raw = path.read_bytes()
        except OSError as exc:
            intel.errors.append(LineError(str(path), 0, f"cannot read: {exc}"))
            intel.error_count += 1
            continue
        text = raw.decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            try:
                network = parse_line(line)
            except ValueError as exc:
                intel.error_count += 1
                if len(intel.errors) < MAX_REPORTED_ERRORS:
                    intel.errors.append(LineError(str(path), number, str(exc)))
                continue
            if network is not None:
                intel.table.add(ipaddress.ip_network(network), name)
                count += 1
        intel.feeds[name] = count
    for err in intel.errors:
        log.warning("threat-intel feed line skipped: %s", err)
    return intel
