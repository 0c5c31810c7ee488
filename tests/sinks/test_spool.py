"""The SQLite write-ahead spool: order, acks, coalescing, eviction policy, bounds, integrity."""

from __future__ import annotations

import random
import shutil
import sqlite3
import zlib
from pathlib import Path

import pytest

from agent.spool import Spool, sqlite_spool
from agent.spool.sqlite_spool import LOW_DISK_RESERVE

MB = 1 << 20


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _spool(tmp_path: Path, max_bytes: int = 8 * MB, **kw: object) -> Spool:
    return Spool(tmp_path / "s.db", max_bytes, 3600, **kw)  # type: ignore[arg-type]


def test_append_read_ack_in_order_and_survives_reopen(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    seqs = [spool.append("alert", 3, f"body-{i}\n".encode()).seq for i in range(5)]
    assert seqs == sorted(seqs)
    records = spool.read(0, 3, MB)
    assert [r.body for r in records] == [b"body-0\n", b"body-1\n", b"body-2\n"]
    assert [r.body for r in spool.read(records[-1].seq, 10, MB)] == [b"body-3\n", b"body-4\n"]
    assert spool.ack([seqs[0], seqs[2]]) == 2
    assert spool.ack([seqs[0]]) == 0  # already gone (idempotent)
    spool.close()
    reopened = _spool(tmp_path)
    assert [r.body for r in reopened.read(0, 10, MB)] == [b"body-1\n", b"body-3\n", b"body-4\n"]
    assert reopened.stats().records == 3 and reopened.stats().payload_bytes == 21


@pytest.mark.parametrize("seed", range(5))
def test_ack_deletes_exactly_the_acknowledged_records(tmp_path: Path, seed: int) -> None:
    """Runs of consecutive records go as ranges, the rest one by one: neither may touch a
    record that was not acknowledged, and already-gone records count as not removed."""
    rng = random.Random(seed)
    spool = _spool(tmp_path)
    seqs = [spool.append("alert", 3, f"body-{i}\n".encode()).seq for i in range(400)]
    alive = set(seqs)
    for _ in range(6):
        first = rng.randrange(len(seqs))
        wanted = seqs[first:first + rng.randrange(1, 60)]  # a run ...
        wanted += rng.sample(seqs, 10)  # ... and scattered ones, some already acknowledged
        rng.shuffle(wanted)
        expected = len(alive & set(wanted))
        assert spool.ack(wanted) == expected
        alive -= set(wanted)
        assert {r.seq for r in spool.read(0, 1000, MB)} == alive
        assert spool.stats().records == len(alive)


def test_read_respects_byte_limit_but_returns_at_least_one(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    for _ in range(3):
        spool.append("alert", 3, b"x" * 1000)
    assert len(spool.read(0, 10, 1500)) == 1
    assert len(spool.read(0, 10, 2000)) == 2
    assert len(spool.read(0, 10, 10)) == 1


def test_same_key_supersedes_older_unsent_record(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    spool.append("alert", 3, b"rev0", key="a")
    spool.append("alert", 3, b"other", key="b")
    result = spool.append("alert", 3, b"rev1", key="a")
    assert result.superseded == 1
    assert [r.body for r in spool.read(0, 10, MB)] == [b"other", b"rev1"]


def test_supersede_survives_reopen_and_keys_of_gone_records_are_compacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_spool, "KEYS_SLACK", 10)
    spool = _spool(tmp_path)
    seqs = [spool.append("alert", 3, b"rev0", key=f"alert-{i}").seq for i in range(50)]
    spool.ack(seqs[:45])  # acknowledged: their keys entries are stale now
    spool.close()
    spool = _spool(tmp_path)
    assert spool.append("alert", 3, b"rev1", key="alert-49").superseded == 1
    assert spool.append("alert", 3, b"rev1", key="alert-0").superseded == 0  # acked: gone
    spool.sync()  # 51 keys > 2 * 6 records + 10: compacted to the spooled records' keys
    keys = spool._db.execute("SELECT key FROM keys ORDER BY key").fetchall()
    assert [k for (k,) in keys] == sorted(["alert-0", *(f"alert-{i}" for i in range(45, 50))])
    assert spool.append("alert", 3, b"rev2", key="alert-0").superseded == 1
    assert sorted(r.body for r in spool.read(0, 100, MB)) == [b"rev0"] * 4 + [b"rev1", b"rev2"]


def test_a_spool_with_the_old_key_index_is_migrated(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "s.db")
    db.executescript(
        "CREATE TABLE records (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,"
        " key TEXT NOT NULL, severity INTEGER NOT NULL, created REAL NOT NULL,"
        " crc INTEGER NOT NULL, body BLOB NOT NULL);"
        "CREATE INDEX records_key ON records(key) WHERE key != '';"
    )
    for key, body in (("a", b"old-a"), ("b", b"old-b"), ("", b"plain")):
        db.execute("INSERT INTO records (kind, key, severity, created, crc, body)"
                   " VALUES ('alert', ?, 3, 1000, ?, ?)", (key, zlib.crc32(body), body))
    db.commit()
    db.close()
    spool = _spool(tmp_path)
    indexes = {n for (n,) in spool._db.execute("SELECT name FROM sqlite_master"
                                                " WHERE type = 'index'")}
    assert "records_key" not in indexes
    assert spool.append("alert", 3, b"new-a", key="a").superseded == 1
    assert [r.body for r in spool.read(0, 10, MB)] == [b"old-b", b"plain", b"new-a"]


def test_overflow_drops_lowest_severity_oldest_first(tmp_path: Path) -> None:
    spool = _spool(tmp_path, max_bytes=MB)
    size = 10_000
    per = spool.payload_budget // size  # records that fit
    # Fill with a mix: severities 1, 4, 2 repeating.
    sevs = [(1, 4, 2)[i % 3] for i in range(per)]
    seqs = [spool.append("alert", s, bytes([65 + i % 26]) * size).seq for i, s in enumerate(sevs)]
    assert len(spool) == per
    result = spool.append("alert", 3, b"n" * size)
    assert result.evicted == [("alert", 1)]
    remaining = {r.seq for r in spool.read(0, 10_000, 100 * MB)}
    first_sev1 = seqs[sevs.index(1)]
    assert first_sev1 not in remaining  # the oldest severity-1 record went first
    # Everything of severity 1 then 2 goes before any severity 4 record.
    for _ in range(per):
        spool.append("alert", 3, b"m" * size)
    left = spool.read(0, 10_000, 100 * MB)
    assert {r.severity for r in left} == {3, 4}
    assert len([r for r in left if r.severity == 4]) == sevs.count(4)


def test_overflow_refuses_a_record_outranked_by_everything(tmp_path: Path) -> None:
    spool = _spool(tmp_path, max_bytes=MB)
    while spool.stats().payload_bytes + 10_000 <= spool.payload_budget:
        spool.append("alert", 5, b"c" * 10_000)
    result = spool.append("event", 0, b"e" * 10_000)
    assert result.refused and result.seq == 0 and not result.evicted


def test_drop_oldest_policy_ignores_severity(tmp_path: Path) -> None:
    spool = _spool(tmp_path, max_bytes=MB, by_severity=False)
    first = spool.append("alert", 5, b"c" * 10_000).seq
    while spool.stats().payload_bytes + 10_000 <= spool.payload_budget:
        spool.append("alert", 5, b"c" * 10_000)
    result = spool.append("event", 0, b"e" * 10_000)
    assert result.evicted == [("alert", 5)]
    assert spool.read(0, 1, MB)[0].seq == first + 1


@pytest.mark.parametrize("size", [300, 1500, 6000])
def test_disk_never_exceeds_the_limit(tmp_path: Path, size: int) -> None:
    limit = MB
    spool = _spool(tmp_path, max_bytes=limit)
    worst = 0
    for i in range(2 * limit // size):
        spool.append("alert", 1 + i % 5, bytes([97 + i % 26]) * size, key=f"k{i % 700}")
        if i % 50 == 49:
            spool.ack([r.seq for r in spool.read(0, 20, MB)])
        if i % 200 == 0:
            spool.sync()
        worst = max(worst, spool.disk_bytes())
    assert worst <= limit
    assert spool.stats().payload_bytes <= spool.payload_budget


def test_expire_drops_records_past_max_age(tmp_path: Path) -> None:
    clock = Clock()
    spool = Spool(tmp_path / "s.db", 8 * MB, 60, clock=clock)
    spool.append("alert", 3, b"old")
    clock.now += 30
    spool.append("alert", 3, b"new")
    clock.now += 40
    assert spool.expire() == [("alert", 3)]
    assert [r.body for r in spool.read(0, 10, MB)] == [b"new"]
    assert spool.expire() == []


def test_checksum_mismatch_is_dropped_and_counted(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    spool.append("alert", 3, b"good-1")
    bad = spool.append("alert", 3, b"will-rot").seq
    spool.append("alert", 3, b"good-2")
    spool.close()
    db = sqlite3.connect(tmp_path / "s.db")
    db.execute("UPDATE records SET body = ? WHERE seq = ?", (b"will-ROT", bad))
    db.commit()
    db.close()
    spool = _spool(tmp_path)
    assert [r.body for r in spool.read(0, 10, MB)] == [b"good-1", b"good-2"]
    assert spool.corrupt == 1 and len(spool) == 2


def test_unreadable_spool_is_moved_aside(tmp_path: Path) -> None:
    (tmp_path / "s.db").write_bytes(b"this is not a database" * 100)
    spool = _spool(tmp_path)
    spool.append("alert", 3, b"fresh")
    assert [r.body for r in spool.read(0, 10, MB)] == [b"fresh"]
    assert list(tmp_path.glob("s.db.corrupt-*"))


def test_counters_follow_changes_by_another_connection(tmp_path: Path) -> None:
    one = _spool(tmp_path)
    two = _spool(tmp_path)
    seq = one.append("alert", 3, b"abc").seq
    assert two.stats().records == 1
    two.ack([seq])
    assert one.stats().records == 0 and one.stats().payload_bytes == 0


def test_stops_growing_when_the_file_system_is_nearly_full(tmp_path: Path) -> None:
    free = [10 * MB]
    spool = Spool(tmp_path / "s.db", 64 * MB, 3600, min_free_bytes=5 * MB,
                  free_bytes=lambda: free[0])
    for _ in range(10):
        assert spool.append("alert", 3, b"a" * 100_000).evicted == []
    free[0] = 5 * MB  # now at the floor: new records replace old ones
    result = spool.append("alert", 3, b"b" * 100_000)
    assert result.evicted == [("alert", 3)] and len(spool) == 10
    assert spool.append("alert", 5, b"c" * 100_000).evicted == [("alert", 3)]


def test_an_empty_spool_below_the_floor_still_takes_records(tmp_path: Path) -> None:
    """Below the floor the spool keeps a small reserve: while Elasticsearch takes what it is
    given, a nearly full disk costs nothing (the old rule refused every record)."""
    empty = Spool(tmp_path / "e.db", 64 * MB, 3600, min_free_bytes=5 * MB,
                  free_bytes=lambda: 1 * MB)
    for _ in range(20):
        result = empty.append("alert", 5, b"x" * 10_000)
        assert not result.refused and not result.evicted
    assert empty.append("alert", 1, b"y" * (LOW_DISK_RESERVE - 100_000)).refused


def test_the_floor_is_at_most_a_share_of_the_file_system(tmp_path: Path) -> None:
    total = shutil.disk_usage(tmp_path).total
    huge = Spool(tmp_path / "h.db", 64 * MB, 3600, min_free_bytes=total,  # floor > the disk
                 free_bytes=lambda: total // 2)
    assert not huge.append("alert", 3, b"z" * 400_000).refused
    assert huge.append("alert", 3, b"z" * 400_000).evicted == []


def test_corruption_found_while_running_starts_a_fresh_spool(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    for i in range(300):
        spool.append("alert", 3, bytes([97 + i % 26]) * 3000, key=f"k{i}")
    spool.close()
    path = tmp_path / "s.db"
    data = bytearray(path.read_bytes())
    for page in range(2, len(data) // 4096):  # scribble over every b-tree page header
        data[page * 4096:page * 4096 + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    spool = _spool(tmp_path)  # the header is intact: the damage shows when the table is read
    assert spool.read(0, 10, MB) == [] and len(spool) == 0
    assert list(tmp_path.glob("s.db.corrupt-*"))
    seq = spool.append("alert", 3, b"after").seq
    assert [r.body for r in spool.read(0, 10, MB)] == [b"after"] and seq > 0
