"""The acknowledgement guarantee attacked as a faulty disk would: ENOSPC (a real full tmpfs) and
EIO on the checkpoint write and on the position write, a torn or truncated checkpoint, a flipped
byte, a foreign file, a checkpoint of an older and of a newer version. Each is a clear error and
a counter; positions never move past state that is not on disk; the agent runs on."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from foundation_helpers import RecordingSink, fresh_metrics, make_alert, value, wait_until

from agent import durable
from agent.alerts import Alert, RuleRef
from agent.detection import Engine, EngineOptions, load_rules
from agent.detection.checkpoint import AlertCheckpoint
from agent.detection.lifecycle import AlertBook
from agent.detection.rule import RuleOptions
from agent.durable import write_durably
from agent.events import HOST_METRICS, Event, LogSource
from agent.metrics import AgentMetrics
from agent.pipeline import Pipeline
from agent.sinks.router import AlertRouter

ROOT = os.geteuid() == 0
RULES = Path(__file__).resolve().parents[1] / "rules" / "auth" / "ssh_bruteforce.yml"
T0 = 1_767_225_600.0


class Detector:
    def process(self, ev: Event) -> list[Alert]:
        return [make_alert(rule_id="r", first_seen=ev.timestamp)]

    def advance(self, now: float) -> list[Alert]:
        return []


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, unmounted at teardown."""
    if not ROOT:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount)],
                   check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte (ENOSPC from then on)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (65536, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def _book(n: int) -> dict[str, AlertBook]:
    book = AlertBook(RuleRef(id="r1", title="t"), RuleOptions())
    for i in range(n):
        book.trigger((f"198.18.0.{i}",), {"source.ip": f"198.18.0.{i}"}, T0 + i, T0 + i, 1,
                     {}, {"message": "x" * 200})
    return {"r1": book}


def _pipeline(metrics: AgentMetrics, checkpoint: object) -> Pipeline:
    return Pipeline(Detector(), AlertRouter([RecordingSink()], fresh_metrics()), metrics,
                    tick_seconds=0.05, checkpoint=checkpoint)  # type: ignore[arg-type]


def test_a_full_disk_under_the_checkpoint_holds_the_positions_until_it_has_room(
    small_fs: Path
) -> None:
    metrics = fresh_metrics()
    checkpoint = AlertCheckpoint(small_fs / "alert-state.json", metrics)
    books = _book(1)
    checkpoint.save(books)  # the previous run's checkpoint, written while there was room
    filler = _fill(small_fs)
    books = _book(50)  # 50 open alerts now: the new checkpoint does not fit
    acked: list[int] = []
    pipeline = _pipeline(metrics, lambda: checkpoint.save(books))
    pipeline.start()
    try:
        assert pipeline.publish_acked([Event(T0, HOST_METRICS, {})], "t",
                                      lambda: acked.append(1), None, threading.Event())
        assert wait_until(lambda: value(metrics, "vedette_state_write_failures_total",
                                        state="checkpoint") >= 3, 10)
        assert acked == []  # the position waits for the checkpoint
        assert not (small_fs / "alert-state.json.tmp").exists()  # no partial copy left
        fresh = _book(0)
        assert AlertCheckpoint(small_fs / "alert-state.json").restore(fresh) == 1  # intact
        filler.unlink()  # room again
        assert wait_until(lambda: acked == [1], 10)
    finally:
        pipeline.stop()
    assert AlertCheckpoint(small_fs / "alert-state.json").restore(_book(0)) == 50


def test_eio_on_the_checkpoint_is_counted_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics = fresh_metrics()
    checkpoint = AlertCheckpoint(tmp_path / "alert-state.json", metrics)
    failures = [3]
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        if failures[0] > 0:
            failures[0] -= 1
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(durable.os, "fsync", failing_fsync)
    acked: list[int] = []
    pipeline = _pipeline(metrics, lambda: checkpoint.save(_book(2)))
    pipeline.start()
    try:
        assert pipeline.publish_acked([Event(T0, HOST_METRICS, {})], "t",
                                      lambda: acked.append(1), None, threading.Event())
        assert wait_until(lambda: acked == [1], 10)
    finally:
        pipeline.stop()
    assert value(metrics, "vedette_state_write_failures_total", state="checkpoint") == 3
    assert not (tmp_path / "alert-state.json.tmp").exists()
    assert AlertCheckpoint(tmp_path / "alert-state.json").restore(_book(0)) == 2


def test_a_position_write_on_a_full_disk_is_retried_until_it_lands(
    small_fs: Path, tmp_path: Path
) -> None:
    metrics = fresh_metrics()
    positions = small_fs / "offsets.json"
    write_durably(positions, json.dumps({"auth.log": 0}))
    acknowledged = {"auth.log": 0}
    filler = _fill(small_fs)

    def commit() -> None:
        write_durably(positions, json.dumps(acknowledged) + " " * 4096)

    checkpoint = AlertCheckpoint(tmp_path / "alert-state.json", metrics)
    pipeline = _pipeline(metrics, lambda: checkpoint.save({}))
    pipeline.start()
    try:
        def ack() -> None:
            acknowledged["auth.log"] = 4096

        assert pipeline.publish_acked([Event(T0, HOST_METRICS, {})], "t", ack, commit,
                                      threading.Event())
        assert wait_until(lambda: value(metrics, "vedette_state_write_failures_total",
                                        state="positions") >= 3, 10)
        # the old position is still on disk: a restart now re-reads (at least once)
        assert json.loads(positions.read_text()) == {"auth.log": 0}
        filler.unlink()
        # no new block arrives: the failed save is retried on its own
        assert wait_until(lambda: json.loads(positions.read_text()) == {"auth.log": 4096}, 10)
    finally:
        pipeline.stop()


# ---------------------------------------------------------------------- damaged files


def _engine() -> Engine:
    report = load_rules([RULES])
    assert not report.errors
    return Engine(report.ruleset, None, EngineOptions())


def _failure(ts: float) -> Event:
    return Event(ts, LogSource("linux", service="sshd"), {
        "event.action": "ssh_login", "event.outcome": "failure", "source.ip": "198.18.0.7"})


def _written(path: Path) -> bytes:
    engine = _engine()
    for i in range(3):
        engine.process(_failure(T0 + i))
    AlertCheckpoint(path).save_engine(engine)
    return path.read_bytes()


def _refused(path: Path, reason: str) -> None:
    metrics = fresh_metrics()
    checkpoint = AlertCheckpoint(path, metrics)
    engine = _engine()
    assert checkpoint.restore_engine(engine) == 0 and checkpoint.restored_groups == 0
    assert all(not len(s) for s in engine.states.values())
    assert value(metrics, "vedette_checkpoint_problems_total", reason=reason) == 1
    assert not path.exists() and path.with_name(path.name + ".refused").exists()
    checkpoint.save_engine(engine)  # the agent runs on: the next checkpoint is written
    assert AlertCheckpoint(path).restore_engine(_engine()) == 0


def test_a_torn_or_truncated_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "alert-state.json"
    data = _written(path)
    for cut in sorted({1, 10, len(data) // 3, len(data) // 2, len(data) - 1}):
        path.write_bytes(data[:cut])
        _refused(path, "damaged")
    # a torn write: the new header over the tail of an older, longer file
    path.write_bytes(data + b'{"rules":{}}')
    _refused(path, "damaged")


def test_a_flipped_byte_in_the_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "alert-state.json"
    data = bytearray(_written(path))
    where = data.index(b'"q":[') + 6  # a digit of a window's timestamp: still valid JSON
    data[where] = ord("9") if data[where] != ord("9") else ord("8")
    path.write_bytes(bytes(data))
    _refused(path, "damaged")


def test_a_foreign_file_or_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "alert-state.json"
    path.write_bytes(b"\x7fELF\x02\x01\x01\0")
    _refused(path, "foreign")
    path.write_text('{"something": "else"}\n{}')
    _refused(path, "foreign")
    data = _written(path)
    header, _, body = data.partition(b"\n")
    newer = json.loads(header) | {"version": 3}
    path.write_bytes(json.dumps(newer).encode() + b"\n" + body)
    _refused(path, "version")


def test_an_unreadable_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "alert-state.json"
    path.mkdir()  # reading it fails (EISDIR), as a failing disk's EIO does
    metrics = fresh_metrics()
    assert AlertCheckpoint(path, metrics).restore_engine(_engine()) == 0
    assert value(metrics, "vedette_checkpoint_problems_total", reason="unreadable") == 1


def test_a_version_1_checkpoint_still_restores_its_open_alerts(tmp_path: Path) -> None:
    path = tmp_path / "alert-state.json"
    books = _book(2)
    (entry,) = [e for e in books["r1"].export_open()][:1]
    key, alert, last_emit, dirty = entry
    legacy = {"version": 1, "rules": {"r1": [{
        "key": {"t": list(key)},
        "alert": {"id": alert.id, "group": alert.group, "first_seen": alert.first_seen,
                  "last_seen": alert.last_seen, "count": alert.count, "status": "open",
                  "revision": 0, "matched": {}, "evidence": [], "message": "m",
                  "categories": []},
        "last_emit": last_emit, "dirty": dirty}]}}
    path.write_text(json.dumps(legacy))
    metrics = fresh_metrics()
    fresh = _book(0)
    assert AlertCheckpoint(path, metrics).restore(fresh) == 1
    assert fresh["r1"].open[key].alert.id == alert.id
    assert value(metrics, "vedette_checkpoint_problems_total", reason="old_version") == 1
