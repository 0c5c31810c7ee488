"""The delivery guarantees end to end: a long outage then a flapping cluster, kill -9 while
shipping, and a full spool. These take seconds (the outage test ~40 s); marked ``slow``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent.alerts import Alert
from agent.sinks.elasticsearch import OVERFLOW_RULE
from agent.sinks.es_docs import alerts_stream, latest_index
from tests.es_server import FakeElasticsearch
from tests.es_server.helpers import (
    fresh_metrics,
    make_alert,
    make_config,
    open_sink,
    sample,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]
ALERTS = alerts_stream("default")
LATEST = latest_index("default")
pytestmark = pytest.mark.slow


def _flap(server: FakeElasticsearch, stop: threading.Event) -> None:
    while not stop.is_set():
        server.set_down(False)
        stop.wait(0.6)
        server.set_down(True)
        stop.wait(0.4)
    server.set_down(False)


def test_10000_alerts_through_outage_and_flapping(tmp_path: Path,
                                                  server: FakeElasticsearch) -> None:
    total = 10_000
    server.set_down(True)
    config = make_config(tmp_path, [server.url], batch_max_docs=500,
                         retry_backoff_max_seconds=1.0, request_timeout_seconds=2)
    metrics = fresh_metrics()
    sink = open_sink(config, metrics)
    alerts = [make_alert(i, level=("low", "medium", "high")[i % 3]) for i in range(total)]
    stop_flapping = threading.Event()
    flapper = threading.Thread(target=_flap, args=(server, stop_flapping))
    try:
        started = time.monotonic()
        for alert in alerts[:6000]:  # emitted while the cluster is down
            sink.emit(alert)
        assert sample(metrics, "vedette_es_spool_records", spool="spool") == 6000
        while time.monotonic() - started < 30:
            time.sleep(0.2)
        assert len(server.cluster.docs(ALERTS)) == 0
        server.faults.item_status_rate = {429: 0.01, 503: 0.005}
        server.faults.reset_mid_response = 3
        flapper.start()
        for i, alert in enumerate(alerts[6000:]):
            sink.emit(alert)
            if i % 500 == 0:
                time.sleep(0.3)
        time.sleep(3)
        stop_flapping.set()
        flapper.join()
        assert wait_until(sink.idle, 60), f"{len(sink.spool)} still spooled"
    finally:
        stop_flapping.set()
        sink.close()
    history = sorted(d.id for d in server.cluster.docs(ALERTS))
    assert history == sorted(f"{a.id}-0" for a in alerts)  # every alert, exactly once
    assert len(server.cluster.docs(LATEST)) == total
    for stream in ("alerts", "alerts_latest"):
        shipped = sample(metrics, "vedette_es_docs_shipped_total", stream=stream)
        dups = sample(metrics, "vedette_es_duplicates_avoided_total", stream=stream)
        assert shipped + dups == total, stream
    assert sample(metrics, "vedette_es_request_failures_total", reason="connection") > 0
    assert sample(metrics, "vedette_es_retries_total", reason="rejected") > 0
    assert sample(metrics, "vedette_es_dead_lettered_total", stream="alerts") == 0
    assert sample(metrics, "vedette_es_spool_dropped_total", reason="overflow") == 0
    assert sample(metrics, "vedette_es_reachable") == 1
    assert sample(metrics, "vedette_es_last_success_timestamp_seconds") > 0
    assert sample(metrics, "vedette_es_bulk_seconds_count") > 0


def test_kill_9_while_shipping_then_restart_exactly_once(tmp_path: Path,
                                                         server: FakeElasticsearch) -> None:
    total = 1500
    server.faults.delay_after_seconds = 0.3  # writes applied, response not yet sent
    cmd = [sys.executable, "-m", "tests.es_server.driver", str(tmp_path), server.url, str(total)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None
        assert first.stdout.readline().strip() == "emitted"
        assert wait_until(lambda: len(server.cluster.docs(ALERTS)) >= 200, 30)
        assert server.faults.in_delay_after.wait(10)
        first.send_signal(signal.SIGKILL)  # mid-request: indexed, never acknowledged
        assert first.wait(10) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
    delivered_before = len(server.cluster.docs(ALERTS))
    assert 0 < delivered_before < total
    server.faults.delay_after_seconds = 0
    second = subprocess.run([*cmd[:-1], "0"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=60, check=True)
    counts = json.loads(second.stdout.splitlines()[-1])
    assert counts["idle"]
    history = sorted(d.id for d in server.cluster.docs(ALERTS))
    assert history == sorted(f"{make_alert(i).id}-0" for i in range(total))
    assert len(server.cluster.docs(LATEST)) == total
    # What the killed process had sent but not seen acknowledged came back as 409s.
    assert counts["duplicates"] >= 1
    assert counts["shipped"] == total - delivered_before


def test_spool_limit_drops_low_severity_first_counts_and_alerts(
    tmp_path: Path, server: FakeElasticsearch
) -> None:
    limit = 1 << 20
    server.set_down(True)
    config = make_config(tmp_path, [server.url], spool_max_bytes=limit)
    metrics = fresh_metrics()
    raised: list[Alert] = []
    sink = open_sink(config, metrics)

    def on_alert(alert: Alert) -> None:  # what the router does: record it and spool it too
        raised.append(alert)
        sink.emit(alert)

    sink.on_alert = on_alert
    critical = [make_alert(i, level="critical") for i in range(0, 400, 4)]
    low = [make_alert(i, level="low") for i in range(400) if i % 4]
    worst = 0
    try:
        for i in range(400):
            sink.emit(critical[i // 4] if i % 4 == 0 else low[i - i // 4 - 1])
            worst = max(worst, sink.spool.disk_bytes())
        # The shipper raises the overflow alert within a second (possibly mid-loop); the
        # router (here on_alert) spools it too. Internal alerts update at most once a minute.
        assert wait_until(lambda: bool(raised), 5)
        time.sleep(0.2)
        dropped = sample(metrics, "vedette_es_spool_dropped_total", reason="overflow")
        assert len(raised) == 1 and raised[0].rule.id == OVERFLOW_RULE.id
        assert 0 < raised[0].count <= dropped
        assert len(sink.spool) + dropped == 400 + len(raised)
        server.set_down(False)
        assert wait_until(sink.idle, 20)
    finally:
        sink.close()
    assert worst <= limit
    shipped = {d.id for d in server.cluster.docs(LATEST)}
    assert {a.id for a in critical} <= shipped  # no critical alert was dropped
    assert raised[0].id in shipped  # the overflow alert itself reached Elasticsearch
    assert len(shipped) == 400 - dropped + 1
    low_shipped = [a for a in low if a.id in shipped]
    assert low_shipped == low[len(low) - len(low_shipped):]  # the oldest low ones went first
