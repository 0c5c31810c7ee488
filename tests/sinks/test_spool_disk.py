"""The spool on a small, real file system: a 2 MiB tmpfs (mounted by the test; root only).

A free-space floor must never make an empty spool refuse alerts while Elasticsearch takes them;
a refusal (a disk that really is full) is counted and raises the internal alert; ``replay
--ship`` says how many alerts were not delivered and exits non-zero, without a traceback.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from agent.alerts import Alert
from tests.conftest import REPO
from tests.es_server import FakeElasticsearch
from tests.es_server.helpers import (
    fresh_metrics,
    make_alert,
    make_config,
    open_sink,
    sample,
    wait_until,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, unmounted at teardown."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount)],
                   check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _latest_ids(server: FakeElasticsearch) -> set[str]:
    return {d.source["event"]["id"] for d in server.cluster.docs("vedette-alerts-latest-default")}


def test_two_mib_spool_with_healthy_elasticsearch_delivers_everything(
    small_fs: Path, server: FakeElasticsearch, tmp_path: Path
) -> None:
    config = make_config(tmp_path, [server.url], spool_dir=str(small_fs))  # default floor
    metrics = fresh_metrics()
    sink = open_sink(config, metrics)
    alerts = [make_alert(i) for i in range(3000)]  # ~10 MiB of bulk lines through 2 MiB
    try:
        for alert in alerts:
            sink.emit(alert)
            if alert.group["n"] % 200 == 0:
                sink.flush()
        sink.flush()
        assert wait_until(sink.idle, 60), "spool did not drain"
    finally:
        sink.close()
    assert sample(metrics, "vedette_es_spool_dropped_total", reason="overflow") == 0
    assert sample(metrics, "vedette_es_spool_dropped_total", reason="disk_full") == 0
    assert _latest_ids(server) == {a.id for a in alerts}


def _fill(directory: Path) -> Path:
    """Fill the file system to the last byte; returns the ballast file."""
    ballast = directory / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError:
                    break
    finally:
        os.close(fd)
    return ballast


def test_full_disk_refusals_are_counted_and_alerted(
    small_fs: Path, tmp_path: Path
) -> None:
    """ES is down and the disk fills up: appends that do not fit are refused — counted under
    ``disk_full`` and raised as the internal overflow alert — never an exception in ``emit``."""
    config = make_config(tmp_path, ["http://127.0.0.1:9"], spool_dir=str(small_fs),
                         spool_min_free_bytes=0)
    metrics = fresh_metrics()
    raised: list[Alert] = []
    # the shipper's once-a-second tick raises the internal alert; time stands still while
    # the 400 alerts are emitted, so the first alert counts them all (else a tick in the
    # middle sends a first snapshot with part of them and the rest follow a minute later)
    now = [time.time()]
    sink = open_sink(config, metrics, on_alert=raised.append, clock=lambda: now[0])
    try:
        sink.emit(make_alert(0))
        _fill(small_fs)
        for i in range(1, 400):
            sink.emit(make_alert(i))
        now[0] += 5.0
        refused = sample(metrics, "vedette_es_spool_dropped_total", reason="disk_full")
        assert refused > 0
        assert len(sink.spool) + refused + sample(
            metrics, "vedette_es_spool_dropped_total", reason="overflow") == 400
        assert wait_until(lambda: bool(raised), 5), "no internal alert for the refusals"
        assert raised[0].rule.id == "vedette-internal-es-spool-overflow"
        assert raised[0].count >= refused
    finally:
        sink.close()


SCAN = REPO / "rules" / "network" / "port_scan_vertical.tests" / "attack.pcap"


def test_replay_ship_on_a_full_disk_says_how_many_were_not_delivered(
    small_fs: Path, tmp_path: Path
) -> None:
    config = tmp_path / "vedette.yaml"
    config.write_text(yaml.safe_dump({
        "agent": {"state_dir": str(tmp_path / "state")},
        "sinks": {"jsonl": {"enabled": False}},
        "elasticsearch": {"hosts": ["http://127.0.0.1:9"], "spool_dir": str(small_fs),
                          "spool_min_free_bytes": 0, "retry_backoff_initial_seconds": 0.1,
                          "retry_backoff_max_seconds": 0.2},
    }))
    _fill(small_fs)
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", "replay", str(SCAN), "--config", str(config),
         "--ship", "--ship-timeout", "2", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "OperationalError" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("vedette replay")]
    assert len(errors) == 1, result.stderr
    assert re.search(r"\b[1-9]\d* (of \d+ )?alert\(s\) not delivered", errors[0]), errors[0]
