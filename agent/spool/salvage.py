"""Salvage the records of a damaged spool file: a damaged page costs the records on it, no more.

Two readers:

1. The SQLite shell's ``.recover`` (``sqlite3`` ≥ 3.29, Debian package ``sqlite3``): it walks
   every page it can parse — also leaf pages whose parent interior page is gone — and writes
   what it finds as SQL into a fresh database file, which is then read normally. Python's
   ``sqlite3`` module cannot do this itself: the recovery extension and the ``sqlite_dbpage``
   table it needs are compiled into the shell, not into the library. (The shell of SQLite
   3.40 — Debian 12 — fails with "SQL logic error" on this file's layout, incremental
   auto-vacuum and a ``WITHOUT ROWID`` table; then the scan below does the work.)
2. Rowid range scans of the damaged file itself (always; the result is the union of both). A
   range whose b-tree path crosses a damaged page fails as a whole; it is split in halves until
   the failing ranges are single rows, so the rows of intact leaf pages are all read.

Every row's CRC-32 is checked against its body; a row that fails it is lost. How many were lost
comes from the spool's own record counter (``meta.records``, written in the same transaction as
every change); when that page is the damaged one, the gaps in the recovered ``seq`` range are
the estimate (an upper bound when records had been acknowledged out of order).
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import subprocess
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

Row = tuple[int, str, str, int, float, int, bytes]
"""``(seq, kind, key, severity, created, crc, body)`` — one ``records`` row."""

_COLUMNS = "seq, kind, key, severity, created, crc, body"
_CHUNK = 2_000
_SHELL_TIMEOUT = 600.0
_UNKNOWN_TOP = 1 << 40
_QUERY_BUDGET = 50_000
"""Failed range reads before the scan gives up (a file damaged everywhere, or one whose
highest ``seq`` is unreadable, would otherwise cost a query per possible ``seq``)."""


@dataclass(frozen=True, slots=True)
class SalvageReport:
    aside: Path
    recovered: int
    lost: int
    method: str  # "recover" (the sqlite3 shell's and the scan's rows) or "scan" (rowid ranges)
    exact: bool  # ``lost`` from the spool's counter (else estimated from seq gaps)


def salvage(damaged: Path, shell: str | None = "sqlite3") -> tuple[list[Row], SalvageReport]:
    """Every readable, CRC-valid row of the spool file ``damaged`` (with its ``-wal``, if any):
    the union of what the scan and — when the shell is there and succeeds — ``.recover`` read."""
    method = "scan"
    try:
        rows, expected = _read_all(damaged, tolerant=True)
    except sqlite3.DatabaseError as exc:
        log.error("spool salvage: %s cannot be scanned (%s)", damaged, exc)
        rows, expected = {}, None
    exe = shutil.which(shell) if shell else None
    recovered = _recover_with_shell(exe, damaged) if exe is not None else None
    if recovered is not None:
        try:
            extra, counter = _read_all(recovered, tolerant=False)
            method = "recover"
            for seq, row in extra.items():
                rows.setdefault(seq, row)
            expected = expected if expected is not None else counter
        except sqlite3.DatabaseError as exc:
            log.warning("spool salvage: the recovered copy is unreadable (%s)", exc)
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{recovered}{suffix}").unlink(missing_ok=True)
    good = [row for row in sorted(rows.values()) if _valid(row)]
    exact = expected is not None
    if expected is None:
        seqs = [row[0] for row in rows.values()]
        expected = (max(seqs) - min(seqs) + 1) if seqs else 0
    lost = max(0, expected - len(good))
    return good, SalvageReport(damaged, len(good), lost, method, exact)


def _valid(row: Row) -> bool:
    seq, kind, key, severity, created, crc, body = row
    return (isinstance(seq, int) and isinstance(kind, str) and isinstance(key, str)
            and isinstance(severity, int) and isinstance(created, (int, float))
            and isinstance(body, bytes) and zlib.crc32(body) == crc)


def _recover_with_shell(exe: str, damaged: Path) -> Path | None:
    """``sqlite3 DAMAGED .recover | sqlite3 DAMAGED.recovered``; the new file, or None."""
    target = damaged.with_name(damaged.name + ".recovered")
    target.unlink(missing_ok=True)
    try:
        with subprocess.Popen([exe, "-readonly", str(damaged), ".recover"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              stdin=subprocess.DEVNULL) as dump:
            load = subprocess.run([exe, str(target)], stdin=dump.stdout, check=False,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  timeout=_SHELL_TIMEOUT)
            dumped = dump.wait(_SHELL_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("spool salvage: sqlite3 .recover failed (%s)", exc)
        return None
    if dumped != 0 or load.returncode != 0 or not target.exists():
        log.warning("spool salvage: sqlite3 .recover failed (exit %s/%s); the scan alone "
                    "counts", dumped, load.returncode)
        target.unlink(missing_ok=True)
        return None
    return target


def _read_all(path: Path, tolerant: bool) -> tuple[dict[int, Row], int | None]:
    """Rows of ``records`` (and of ``lost_and_found``, where ``.recover`` puts rows it could
    not place) and the record counter, if readable."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        # not a database, or its schema page is gone: nothing to scan (raises DatabaseError)
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'records'").fetchone() is None:
            return {}, None
        rows: dict[int, Row] = {}
        top = _top_seq(db)
        for row in _scan(db, 1, top, tolerant):
            rows[row[0]] = row
        for row in _lost_and_found(db):
            rows.setdefault(row[0], row)
        return rows, _counter(db)
    finally:
        db.close()


def _scan(db: sqlite3.Connection, low: int, high: int, tolerant: bool) -> Iterator[Row]:
    """Rows with ``low <= seq <= high`` in chunks; failing ranges bisected to single rows."""
    known_top = high != _UNKNOWN_TOP
    failures = 0
    start = low
    while start <= high and failures < _QUERY_BUDGET:
        end = min(high, start + _CHUNK - 1) if known_top else high
        pending = [(start, end)]
        while pending and failures < _QUERY_BUDGET:
            a, b = pending.pop()
            try:
                # one row by ``=``: a range scan steps on to the next row to see the range end,
                # which may be the damaged page (the last row before it would be lost too)
                found = db.execute(
                    f"SELECT {_COLUMNS} FROM records WHERE seq = ?", (a,)  # noqa: S608
                ).fetchall() if a == b else db.execute(
                    f"SELECT {_COLUMNS} FROM records WHERE seq BETWEEN ? AND ? ORDER BY seq",  # noqa: S608
                    (a, b)).fetchall()
            except sqlite3.DatabaseError:
                if not tolerant:
                    raise
                failures += 1
                if a < b:
                    mid = (a + b) // 2
                    pending += [(mid + 1, b), (a, mid)]
                continue
            yield from found
        start = end + 1
    if failures >= _QUERY_BUDGET:
        log.error("spool salvage: damaged beyond %d unreadable ranges; the scan stopped at"
                  " seq %d", _QUERY_BUDGET, start)


def _top_seq(db: sqlite3.Connection) -> int:
    for query in ("SELECT seq FROM sqlite_sequence WHERE name = 'records'",
                  "SELECT max(seq) FROM records", "SELECT max(seq) FROM keys"):
        try:
            row = db.execute(query).fetchone()
        except sqlite3.DatabaseError:
            continue
        if row and isinstance(row[0], int):
            return row[0]
    return _UNKNOWN_TOP


def _lost_and_found(db: sqlite3.Connection) -> list[Row]:
    try:
        return [tuple(r) for r in db.execute(
            "SELECT id, c1, c2, c3, c4, c5, c6 FROM lost_and_found WHERE nfield = 7"
            " AND id IS NOT NULL")]
    except sqlite3.DatabaseError:
        return []


def _counter(db: sqlite3.Connection) -> int | None:
    try:
        row = db.execute("SELECT value FROM meta WHERE name = 'records'").fetchone()
    except sqlite3.DatabaseError:
        return None
    return int(row[0]) if row and isinstance(row[0], int) else None
