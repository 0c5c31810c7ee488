"""The spool file deleted or replaced while the agent runs (an operator's ``rm``, a clean-up
job): the connection would go on writing to a deleted inode that no restart finds, losing
records whose source positions were already acknowledged. The next sync writes the live
database back to its path."""

from __future__ import annotations

import os
from pathlib import Path

from agent.spool.sqlite_spool import Spool

MB = 1024 * 1024


def _bodies(spool: Spool) -> list[bytes]:
    return [r.body for r in spool.read(0, 10_000, 64 * MB)]


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def test_a_deleted_spool_is_written_back_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool(path, 8 * MB, 3600)
    for i in range(50):
        spool.append("alert", 3, b"before %d" % i)
    spool.sync()
    _remove(path)
    for i in range(50):
        spool.append("alert", 3, b"after %d" % i)
    spool.sync()  # the tick's flush, before the sources' positions are acknowledged
    assert spool.reattached == 1 and path.exists()
    spool.append("alert", 3, b"later")
    spool.sync()
    spool.close()  # stands for kill -9 too: what was synced is in the file at the path
    again = Spool(path, 8 * MB, 3600)
    assert _bodies(again) == [b"before %d" % i for i in range(50)] + [
        b"after %d" % i for i in range(50)] + [b"later"]
    again.close()


def test_a_replaced_spool_is_moved_aside_and_ours_written_back(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool(path, 8 * MB, 3600)
    spool.append("alert", 3, b"ours")
    spool.sync()
    _remove(path)
    path.write_bytes(b"someone else's file")
    spool.sync()
    assert spool.reattached == 1
    (aside,) = [p for p in tmp_path.iterdir() if ".replaced-" in p.name]
    assert aside.read_bytes() == b"someone else's file"
    seqs = [r.seq for r in spool.read(0, 10, MB)]
    assert spool.ack(seqs) == 1  # the shipper's sequence numbers still hold
    spool.close()


def test_an_untouched_spool_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool(path, 8 * MB, 3600)
    spool.append("alert", 3, b"x")
    inode = os.stat(path).st_ino
    spool.sync()
    spool.sync()
    assert spool.reattached == 0 and os.stat(path).st_ino == inode
    spool.close()
