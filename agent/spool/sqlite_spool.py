"""A bounded write-ahead spool in one SQLite database (WAL mode).

Why SQLite rather than hand-rolled segment files (see docs/elasticsearch.md): the spool must
delete records out of order — acknowledged items of a batch whose neighbours are still being
retried, older snapshots of an alert superseded by a newer one, and on overflow the oldest
*low-severity* records first. Segment files can only drop from the head. SQLite's WAL gives
atomic appends that survive ``kill -9`` as soon as the commit's ``write()`` returned, and an
fsync policy through ``PRAGMA synchronous``; every record also carries a CRC-32 of its body
that is verified when it is read back.

Records are opaque bodies (the sink stores ready-to-send ``_bulk`` lines) with a kind, a
severity (eviction priority), an optional coalescing key and a creation time. Acknowledged
records are deleted; whatever is still in the table after a crash is shipped again on start
(deterministic ``_id`` + ``create`` make that idempotent).

Disk bound: the payload kept is limited to ``PAYLOAD_RATIO`` of ``max_bytes`` and the WAL to
``WAL_RATIO`` of it (and to ``WAL_FS_RATIO`` of the file system), leaving room for SQLite's page
overhead, so that database + WAL + shared memory file stay under ``max_bytes``. When the file
system itself is down to its free-space floor — ``min_free_bytes``, but never more than
``FLOOR_FS_RATIO`` of the file system's size, so a small disk is not "full" from the start —
the spool stops growing beyond what it holds (or ``LOW_DISK_RESERVE``, so an empty spool keeps
taking records while they are shipped): new records evict old ones as when full. A write the
disk really cannot take (``SQLITE_FULL``) is retried once after the WAL is checkpointed and
truncated, then refused (``AppendResult.disk_full``) — counted by the caller, never raised.

Why one ~600-line module: every method keeps the same invariants inside one transaction (the
in-memory counters, ``meta.records``, the ``keys`` map, the disk budget) under one lock;
splitting it would hand those private counters across modules. The file layout lives in
:mod:`agent.spool.sqlite_file`, salvage of a damaged file in :mod:`agent.spool.salvage`.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Concatenate, Literal, NamedTuple, ParamSpec, TypeVar

from agent.spool.salvage import SalvageReport, salvage
from agent.spool.sqlite_file import connect

log = logging.getLogger(__name__)

FsyncPolicy = Literal["always", "batch", "never"]

PAYLOAD_RATIO = 0.35
WAL_RATIO = 0.1
WAL_FS_RATIO = 0.1
"""The WAL may take at most this share of the file system (before a checkpoint resets it)."""
FLOOR_FS_RATIO = 0.05
"""The free-space floor is at most this share of the file system's size."""
LOW_DISK_RESERVE = 256 * 1024
"""Payload bytes the spool may always hold, even below the floor (records shipped at once)."""
MIN_WAL_BYTES = 64 * 1024
KEYS_SLACK = 20_000
"""``keys`` entries of records that are gone, beyond twice the records, before a compaction."""

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _recovering(
    method: Callable[Concatenate[Spool, _P], _R],
) -> Callable[Concatenate[Spool, _P], _R]:
    """A database found corrupt while running ("database disk image is malformed") is moved
    aside and replaced by a new one holding every record salvage could read, then the call is
    retried once: the agent keeps spooling instead of failing every emit (what salvage could
    not read is counted lost)."""

    @wraps(method)
    def wrapper(self: Spool, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            if type(exc) is not sqlite3.DatabaseError:  # locked, closed, I/O: not corruption
                raise
            self._recover(exc)
            return method(self, *args, **kwargs)

    return wrapper


class SpoolRecord(NamedTuple):
    """One spooled record as read back (a named tuple: the shipper reads ~50,000 a second)."""

    seq: int
    kind: str
    key: str
    severity: int
    created: float
    body: bytes


@dataclass(slots=True)
class AppendResult:
    """What one append did: the new record's ``seq`` (0 when it was itself refused)."""

    seq: int
    evicted: list[tuple[str, int]] = field(default_factory=list)  # (kind, severity) dropped
    superseded: int = 0
    refused: bool = False
    disk_full: bool = False  # refused because the file system could not take the write


@dataclass(frozen=True, slots=True)
class SpoolStats:
    records: int
    payload_bytes: int
    oldest_created: float | None
    disk_bytes: int


class Spool:
    """Thread-safe; one connection guarded by a lock (appends are ~20 µs each)."""

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        max_age_seconds: float,
        fsync: FsyncPolicy = "batch",
        by_severity: bool = True,
        clock: Callable[[], float] = time.time,
        min_free_bytes: int = 0,
        free_bytes: Callable[[], int] | None = None,
        salvage_shell: str | None = "sqlite3",
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.payload_budget = int(max_bytes * PAYLOAD_RATIO)
        self.max_age_seconds = max_age_seconds
        self.fsync = fsync
        self.by_severity = by_severity
        self.min_free_bytes = min_free_bytes
        self._free_bytes = free_bytes or (lambda: shutil.disk_usage(path.parent).free)
        self._fs_floor: int | None = None
        self._full_logged = -60.0
        self._clock = clock
        self._lock = threading.Lock()
        self._unsynced = False
        self.corrupt = 0  # records lost to corruption since the last reset (shipper counts them)
        self.salvage_shell = salvage_shell  # the sqlite3 shell for ``.recover`` (None: scan)
        self._salvaged: list[SalvageReport] = []
        # Bumped whenever records go other than by ``ack`` (superseded, evicted, expired,
        # corrupt, another connection's change): readers holding records check ``present``.
        self.removals = 0
        self.reattached = 0  # the file deleted or replaced while running, written back
        self._identity: tuple[int, int] | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._open()
        self._records = self._bytes = self._data_version = self._keys = 0
        try:
            self._recount()  # reads every page of the table: damage shows up here
        except sqlite3.DatabaseError as exc:
            if type(exc) is not sqlite3.DatabaseError:
                raise
            self._recover(exc)

    # ------------------------------------------------------------------ opening

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            # An unreadable spool must not keep the agent down: keep it aside for forensics,
            # and carry over every record that can still be read.
            aside = self._move_aside(exc)
            db = self._connect()
            self._salvage_into(db, aside)
            return db

    def _move_aside(self, exc: Exception) -> Path:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(self._clock())}")
        n = 1
        while aside.exists():
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(self._clock())}.{n}")
            n += 1
        log.error("spool %s unreadable (%s); moved aside to %s", self.path, exc, aside)
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                src.replace(Path(f"{aside}{suffix}"))
        return aside

    def _recover(self, exc: Exception) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            aside = self._move_aside(exc)
            self._db = self._connect()
            self._salvage_into(self._db, aside)
            self._recount()

    def _salvage_into(self, db: sqlite3.Connection, aside: Path) -> None:
        """Copy every readable record of the damaged file ``aside`` into the new ``db``."""
        rows, report = salvage(aside, self.salvage_shell)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR IGNORE INTO records (seq, kind, key, severity, created,"
                           " crc, body) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            db.execute("INSERT OR REPLACE INTO keys (key, seq) SELECT key, max(seq)"
                       " FROM records WHERE key != '' GROUP BY key")
            db.execute("UPDATE meta SET value = (SELECT count(*) FROM records)"
                       " WHERE name = 'records'")
            db.execute("COMMIT")
        except sqlite3.Error as exc:  # e.g. no room left for the copy: the file stays aside
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            log.error("spool %s: salvaged records could not be stored (%s)", self.path, exc)
            report = SalvageReport(aside, 0, report.lost + report.recovered, report.method,
                                   report.exact)
        self.corrupt += report.lost
        self._salvaged.append(report)
        log.error("spool %s: salvaged %d records from the damaged file (%s), %d lost%s",
                  self.path, report.recovered, report.method, report.lost,
                  "" if report.exact else " (estimated)")

    def take_salvage_reports(self) -> list[SalvageReport]:
        """Salvages since the last call (the sink counts them and raises its alert)."""
        with self._lock:
            reports, self._salvaged = self._salvaged, []
        return reports

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction that also stores the record counter (``meta.records``);
        on failure it is rolled back and the in-memory counters read again."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._sync_foreign()
            yield
            self._db.execute("UPDATE meta SET value = ? WHERE name = 'records'",
                             (self._records,))
            self._db.execute("COMMIT")
        except BaseException:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # no transaction left (e.g. a corrupt file): the original error wins
            try:
                self._recount()
            except sqlite3.Error:
                pass
            raise

    def _connect(self) -> sqlite3.Connection:
        wal = int(self.max_bytes * WAL_RATIO)
        try:
            wal = min(wal, int(shutil.disk_usage(self.path.parent).total * WAL_FS_RATIO))
        except OSError:
            pass
        db = connect(self.path, self.fsync, max(MIN_WAL_BYTES, wal))
        self._identity = _identity(self.path)
        return db

    def _reattach(self) -> None:
        """The spool file deleted or replaced under the running agent (an operator's ``rm``,
        a clean-up job): the connection still writes to the old inode, which a restart would
        not find — the records in it, already acknowledged at their sources, would be lost.
        Copy the live database to the path (``VACUUM INTO``; a file put in its place is moved
        aside first) and continue on the copy. Called under the lock, before each sync."""
        now = _identity(self.path)
        if now == self._identity:
            return
        if now is not None:
            aside = self.path.with_name(f"{self.path.name}.replaced-{int(self._clock())}")
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
                except FileNotFoundError:
                    pass
        else:
            for suffix in ("-wal", "-shm"):  # left behind by the deletion of the main file
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        log.error("spool %s was %s while the agent ran; its %d records are written back to it",
                  self.path, "deleted" if now is None else "replaced (moved aside)",
                  self._records)
        self._db.execute("VACUUM INTO ?", (str(self.path),))
        self._db.close()
        self._db = self._connect()
        self._recount()
        self.reattached += 1

    def _recount(self) -> None:
        self.removals += 1
        row = self._db.execute("SELECT count(*), coalesce(sum(length(body)), 0) FROM records")
        self._records, self._bytes = row.fetchone()
        self._keys = self._db.execute("SELECT count(*) FROM keys").fetchone()[0]
        self._data_version = self._db.execute("PRAGMA data_version").fetchone()[0]

    def _sync_foreign(self) -> None:
        """Another connection (a second process, or the sink being rebuilt on reload) changed
        the file: ``PRAGMA data_version`` moves, and the counters are read again."""
        if self._db.execute("PRAGMA data_version").fetchone()[0] != self._data_version:
            self._recount()

    # ------------------------------------------------------------------ writing

    @_recovering
    def append(self, kind: str, severity: int, body: bytes, key: str = "") -> AppendResult:
        """Store one record; returns once it is committed (durable per the fsync policy).

        ``key`` coalesces: older unacknowledged records with the same key are superseded.
        Past the size limit, the lowest-severity, oldest records are evicted first; when
        everything spooled outranks the new record, the new record itself is refused.
        """
        size = len(body)
        with self._lock:
            result = AppendResult(seq=0)
            if size > self.payload_budget:
                result.refused = True
                return result
            try:
                return self._append(kind, severity, body, key, result)
            except sqlite3.OperationalError as exc:
                if not _disk_full(exc):
                    raise
            # The WAL may hold most of the used space: checkpoint and truncate it, try again.
            self._truncate_wal()
            result = AppendResult(seq=0)
            try:
                return self._append(kind, severity, body, key, result)
            except sqlite3.OperationalError as exc:
                if not _disk_full(exc):
                    raise
                return AppendResult(seq=0, refused=True, disk_full=True)

    def _truncate_wal(self) -> None:
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            self._db.execute("PRAGMA incremental_vacuum").fetchall()
        except sqlite3.OperationalError as exc:
            self._log_full(exc)

    def _log_full(self, exc: Exception) -> None:
        """One warning a minute at most while the disk stays full (refusals are counted)."""
        now = time.monotonic()
        if now - self._full_logged >= 60.0:
            self._full_logged = now
            log.warning("spool %s: the file system is full (%s)", self.path, exc)

    def _append(self, kind: str, severity: int, body: bytes, key: str,
                result: AppendResult) -> AppendResult:
        size = len(body)
        with self._write():
            if key:
                self._supersede(key, result)
            budget = self._budget(size)
            if self._bytes + size > budget and not self._evict(
                self._bytes + size - budget, severity, result
            ):
                result.refused = True
                return result
            cur = self._db.execute(
                "INSERT INTO records (kind, key, severity, created, crc, body)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (kind, key, severity, self._clock(), zlib.crc32(body), body),
            )
            if key:
                self._db.execute("INSERT OR REPLACE INTO keys (key, seq) VALUES (?, ?)",
                                 (key, cur.lastrowid))
            self._records += 1
            self._bytes += size
        self._unsynced = True
        result.seq = int(cur.lastrowid or 0)
        return result

    def _supersede(self, key: str, result: AppendResult) -> None:
        """Delete the record ``key`` last named, if it is still spooled (it was not sent)."""
        row = self._db.execute("SELECT seq FROM keys WHERE key = ?", (key,)).fetchone()
        if row is None:
            self._keys += 1
            return
        for (length,) in self._db.execute(
            "DELETE FROM records WHERE seq = ? RETURNING length(body)", row
        ).fetchall():
            self._forget(length)
            result.superseded += 1
            self.removals += 1

    def _compact_keys(self) -> None:
        """Drop the ``keys`` entries of records that are gone (acknowledged, evicted, expired):
        first those older than every spooled record (a scan of ``keys``), then the rest."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(
                "DELETE FROM keys WHERE seq < (SELECT coalesce(min(seq), 9e18) FROM records)")
            self._db.execute(
                "DELETE FROM keys WHERE NOT EXISTS (SELECT 1 FROM records WHERE seq = keys.seq)")
            self._keys = self._db.execute("SELECT count(*) FROM keys").fetchone()[0]
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _budget(self, size: int) -> int:
        """The payload limit for this append: the configured one, or — when the file system
        is down to ``min_free_bytes`` — what the spool holds now (it may not grow)."""
        if self.min_free_bytes <= 0:
            return self.payload_budget
        try:
            free, floor = self._free_bytes(), self._floor()
        except OSError:
            return self.payload_budget
        if free - size * 2 < floor:
            return min(self.payload_budget, max(self._bytes, LOW_DISK_RESERVE))
        return self.payload_budget

    def _floor(self) -> int:
        """``min_free_bytes``, at most ``FLOOR_FS_RATIO`` of the file system (read once)."""
        if self._fs_floor is None:
            total = shutil.disk_usage(self.path.parent).total
            self._fs_floor = min(self.min_free_bytes, int(total * FLOOR_FS_RATIO))
        return self._fs_floor

    def _evict(self, need: int, severity: int, result: AppendResult) -> bool:
        """Free ``need`` payload bytes: lowest severity (≤ ``severity``) and oldest first, or,
        without ``by_severity``, simply the oldest."""
        if self.by_severity:
            rows = self._db.execute(
                "SELECT seq, kind, severity, length(body) FROM records WHERE severity <= ?"
                " ORDER BY severity, seq",
                (severity,),
            )
        else:
            rows = self._db.execute(
                "SELECT seq, kind, severity, length(body) FROM records ORDER BY seq"
            )
        victims: list[tuple[int, str, int, int]] = []
        freed = 0
        for row in rows:
            victims.append(row)
            freed += row[3]
            if freed >= need:
                break
        if freed < need:
            return False
        self.removals += 1
        for seq, kind, sev, length in victims:
            self._db.execute("DELETE FROM records WHERE seq = ?", (seq,))
            self._forget(length)
            result.evicted.append((kind, sev))
        return True

    def _forget(self, length: int) -> None:
        self._records -= 1
        self._bytes -= length

    # ------------------------------------------------------------------ reading and acking

    @_recovering
    def read(self, after_seq: int, max_records: int, max_bytes: int) -> list[SpoolRecord]:
        """Records with ``seq > after_seq`` in order, at least one if any, within the limits."""
        out: list[SpoolRecord] = []
        total = 0
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, kind, key, severity, created, crc, body FROM records"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, max_records),
            ).fetchall()
            bad: list[int] = []
            for seq, kind, key, severity, created, crc, body in rows:
                if zlib.crc32(body) != crc:
                    bad.append(seq)
                    continue
                if out and total + len(body) > max_bytes:
                    break
                out.append(SpoolRecord(seq, kind, key, severity, created, bytes(body)))
                total += len(body)
            if bad:
                log.error("spool %s: %d records failed their checksum; dropped", self.path,
                          len(bad))
                self.corrupt += len(bad)
                self.removals += 1
                with self._write():
                    self._delete(bad)
        return out

    @_recovering
    def present(self, seqs: Iterable[int]) -> set[int]:
        """Which of ``seqs`` are still spooled (not evicted, superseded or expired since read)."""
        wanted = list(seqs)
        found: set[int] = set()
        with self._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(seq for (seq,) in self._db.execute(
                    f"SELECT seq FROM records WHERE seq IN ({marks})", chunk  # noqa: S608
                ))
        return found

    @_recovering
    def ack(self, seqs: Iterable[int]) -> int:
        """Delete delivered records; returns how many were still present."""
        with self._lock, self._write():
            return self._delete(list(seqs))

    def _delete(self, seqs: list[int]) -> int:
        """Delete ``seqs``: each run of consecutive numbers (a delivered batch is mostly one)
        as one range, what is left in ``IN`` lists — a range walks the table once, where an
        ``IN`` list looks every row up (a third of the cost of an acknowledgement)."""
        removed = 0
        singles: list[int] = []
        for first, last in _runs(seqs):
            if last - first < 8:
                singles.extend(range(first, last + 1))
                continue
            for (length,) in self._db.execute(
                "DELETE FROM records WHERE seq BETWEEN ? AND ? RETURNING length(body)",
                (first, last),
            ).fetchall():
                self._forget(length)
                removed += 1
        for start in range(0, len(singles), 500):
            chunk = singles[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for (length,) in self._db.execute(
                f"DELETE FROM records WHERE seq IN ({marks}) RETURNING length(body)",  # noqa: S608
                chunk,
            ).fetchall():
                self._forget(length)
                removed += 1
        return removed

    @_recovering
    def expire(self) -> list[tuple[str, int]]:
        """Drop records older than the age limit; returns their (kind, severity)."""
        cutoff = self._clock() - self.max_age_seconds
        with self._lock:
            oldest = self._db.execute(
                "SELECT created FROM records ORDER BY seq LIMIT 1"
            ).fetchone()
            if oldest is None or oldest[0] >= cutoff:
                return []
            with self._write():
                rows = self._db.execute(
                    "DELETE FROM records WHERE created < ? RETURNING kind, severity,"
                    " length(body)", (cutoff,),
                ).fetchall()
                for _, _, length in rows:
                    self._forget(length)
            self.removals += 1
            return [(kind, severity) for kind, severity, _ in rows]

    # ------------------------------------------------------------------ durability and stats

    @_recovering
    def sync(self) -> None:
        """For the ``batch`` policy: checkpoint the WAL, which fsyncs it, then release pages."""
        with self._lock:
            try:
                self._reattach()
            except (OSError, sqlite3.Error) as exc:
                log.error("spool %s: cannot write the spool back to its path (%s)",
                          self.path, exc)
            if self._keys > 2 * self._records + KEYS_SLACK:
                self._compact_keys()
            if not self._unsynced and self.fsync != "never":
                return
            try:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self._db.execute("PRAGMA incremental_vacuum").fetchall()
            except sqlite3.OperationalError as exc:
                if not _disk_full(exc):
                    raise
                # a full disk: the WAL stays (committed records are in it) and the checkpoint is
                # tried again next sync; appends that cannot be written are counted as refused.
                # The WAL itself is fsynced here, which needs no free space, so what callers
                # acknowledge after sync() (source positions) survives a power loss.
                self._log_full(exc)
                if self._fsync_wal():
                    self._unsynced = False
                return
            self._unsynced = False

    def _fsync_wal(self) -> bool:
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDONLY)
        except FileNotFoundError:
            return True  # no WAL: every commit is already in the main file
        except OSError:
            return False
        try:
            os.fsync(fd)
            return True
        except OSError:
            return False
        finally:
            os.close(fd)

    @_recovering
    def stats(self) -> SpoolStats:
        with self._lock:
            self._sync_foreign()
            row = self._db.execute("SELECT created FROM records ORDER BY seq LIMIT 1").fetchone()
            return SpoolStats(
                self._records, self._bytes, None if row is None else float(row[0]),
                self.disk_bytes(),
            )

    def __len__(self) -> int:
        return self._records

    def disk_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += os.stat(f"{self.path}{suffix}").st_size
            except FileNotFoundError:
                pass
        return total

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.Error as exc:  # pragma: no cover - best effort on shutdown
                log.warning("spool %s: final checkpoint failed: %s", self.path, exc)
            self._db.close()


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _disk_full(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(exc)


def _runs(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Distinct ``seqs`` as ``(first, last)`` runs of consecutive integers, in order."""
    runs: list[tuple[int, int]] = []
    first = last = None
    for seq in sorted(set(seqs)):
        if last is not None and seq == last + 1:
            last = seq
            continue
        if first is not None and last is not None:
            runs.append((first, last))
        first = last = seq
    if first is not None and last is not None:
        runs.append((first, last))
    return runs
