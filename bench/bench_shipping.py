"""Elasticsearch shipping against the FAKE server: spool write cost, throughput, latency.

Rows measured against the fake say "FAKE ES"; the same figures against a real Elasticsearch
node are bench_shipping_real.py's ("real ES").

The fake Elasticsearch (tests/es_server) runs in its own process on loopback, so that the
agent's shipper and the server do not share one interpreter lock. It still shares the two
cores with the agent, so its costs are part of what is measured — a real cluster's speed would
differ. To measure the agent rather than the fake:

* throughput rows run the fake with ``--raw-sources`` (documents stored unparsed; ids, 409s,
  external versions and ``@timestamp`` still checked) — the row "fake parses every document"
  shows the other case;
* the fake's bulk path was made cheaper where it spent time no real cluster spends: its
  ``filter_path`` built the full response and walked it generically (~14 µs per item, more
  than the agent spent per item), and ``json.loads`` sniffed the encoding of every action line.
  Both are compiled/direct now with the same output (tests/sinks/test_es_hot_path.py);
* each throughput row notes the CPU time per alert of the agent process and of the fake over
  the measured interval: on this shared VM the alerts/s move with other people's load, the CPU
  per alert much less.

* spool write cost: ``ElasticsearchSink.emit`` per alert (ECS rendering, bulk lines, SQLite
  append with ``spool_fsync: batch``) while the cluster is down;
* throughput: the spool filled with N alerts, then the cluster comes up: alerts acknowledged
  per second from the first acknowledgement until the spool is empty (each alert = 2
  documents, history + latest, unless noted);
* agent alone: the same spool drained through an in-process client that acknowledges every
  document without a network — the agent's own ceiling;
* latency: alerts emitted at 100/s; time from ``emit`` to the shipper deleting the
  acknowledged record from the spool.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
import urllib.request
from pathlib import Path
from typing import Any

from agent.sinks.elasticsearch import ElasticsearchSink
from agent.sinks.es_docs import alert_bulk_lines, alerts_stream, latest_index
from agent.spool import AppendResult, Spool
from bench.common import BenchResult
from tests.es_server.helpers import IDENTITY, make_alert, make_config, open_sink

REPO = Path(__file__).resolve().parent.parent
THROUGHPUT_ALERTS = 20_000
LATENCY_RATE = 100
LATENCY_SECONDS = 10


class _Server:
    def __init__(self, port: int = 0, raw: bool = True) -> None:
        flags = ["--raw-sources"] if raw else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.es_server", "--port", str(port), *flags],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        self.port = int(self.url.rsplit(":", 1)[1])

    def count(self, target: str) -> int:
        """Documents the server holds (``_count``), to check that nothing went missing."""
        request = urllib.request.Request(f"{self.url}/{target}/_count", method="GET")
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(json.loads(response.read())["count"])

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (Linux ``/proc``)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


def _sink(tmp: Path, url: str, **es: Any) -> ElasticsearchSink:
    config = make_config(tmp, [url], retry_backoff_initial_seconds=0.2,
                         retry_backoff_max_seconds=0.5, batch_max_age_seconds=0.2, **es)
    return open_sink(config)


def _wait_idle(sink: ElasticsearchSink, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not sink.idle():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _throughput(result: BenchResult, tmp: Path, raw: bool, latest: bool) -> None:
    # Reserve a port, fill the spool while nothing listens on it, then start the server there.
    probe = _Server()
    port = probe.port
    probe.stop()
    sink = _sink(tmp / f"tp-{raw}-{latest}", f"http://127.0.0.1:{port}", latest_index=latest)
    alerts = [make_alert(i, level="high") for i in range(THROUGHPUT_ALERTS)]
    started = time.perf_counter()
    for alert in alerts:
        sink.emit(alert)
    emit_seconds = time.perf_counter() - started
    sink.flush()
    if raw and latest:
        result.add("spool write cost per alert (emit: render + append)",
                   emit_seconds / len(alerts) * 1e6, "us", note="spool_fsync=batch")
    server = _Server(port, raw)
    try:
        up = time.perf_counter()
        # Steady state: from the first acknowledgement (after reconnect backoff and index
        # setup) until the spool is empty.
        while len(sink.spool) == THROUGHPUT_ALERTS and time.perf_counter() - up < 30:
            time.sleep(0.001)
        started = time.perf_counter()
        agent_cpu, server_cpu = time.process_time(), server.cpu_seconds()
        first_batch = THROUGHPUT_ALERTS - len(sink.spool)
        done = _wait_idle(sink, 90)
        elapsed = time.perf_counter() - started
        agent_cpu = time.process_time() - agent_cpu
        server_cpu = server.cpu_seconds() - server_cpu
        stored = server.count(alerts_stream("default"))
        stored_latest = server.count(latest_index("default")) if latest else stored
    finally:
        sink.close()
        server.stop()
    if stored != THROUGHPUT_ALERTS or stored_latest != THROUGHPUT_ALERTS:
        raise AssertionError(f"server holds {stored}/{stored_latest} of {THROUGHPUT_ALERTS}")
    shipped = THROUGHPUT_ALERTS - len(sink.spool) - first_batch
    docs = shipped * (2 if latest else 1)
    label = "FAKE ES: shipping throughput" + ("" if raw else ", fake parses every document") + (
        "" if latest else ", latest_index off")
    result.add(label, shipped / elapsed, "alerts/s", ">= 20000" if raw and latest else "",
               note=f"{shipped} alerts = {docs} docs in {elapsed:.2f} s "
                    f"({'complete' if done else 'INCOMPLETE'}); CPU per alert: agent "
                    f"{agent_cpu / max(shipped, 1) * 1e6:.0f} us, fake "
                    f"{server_cpu / max(shipped, 1) * 1e6:.0f} us; load {os.getloadavg()[0]:.1f}")


class _AcknowledgingClient:
    """Stands in for the HTTP client: every document delivered, no network, held until
    ``go`` is set (so the spool can be filled first)."""

    def __init__(self) -> None:
        self.go = threading.Event()

    def perform_request(self, method: str, path: str, *, headers: Any, body: bytes,
                        params: Any) -> Any:
        self.go.wait()
        items = [{"create": {"status": 201}}] * (body.count(b"\n") // 2)
        return types.SimpleNamespace(body={"errors": False, "items": items})


def _agent_alone(result: BenchResult, tmp: Path) -> None:
    """The agent's side by itself: spool read, bulk assembly, acknowledgement, deletion."""
    sink = _sink(tmp / "alone", "http://127.0.0.1:9")
    client = _AcknowledgingClient()
    sink.shipper._sender._client = client  # type: ignore[assignment]
    sink.shipper._needs_setup = False
    try:
        for i in range(THROUGHPUT_ALERTS):
            sink.emit(make_alert(i, level="high"))
        sink.flush()
        started, cpu = time.perf_counter(), time.process_time()
        client.go.set()
        done = _wait_idle(sink, 60)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        sink.close()
    result.add("shipping throughput, agent alone (no network)", THROUGHPUT_ALERTS / elapsed,
               "alerts/s", note=f"an in-process client acknowledges every document; "
               f"{'complete' if done else 'INCOMPLETE'}; CPU per alert "
               f"{cpu / THROUGHPUT_ALERTS * 1e6:.0f} us")


def _spool_cost(result: BenchResult, tmp: Path) -> None:
    """The spool append alone (a rendered alert of ~1.8 kB), per fsync policy."""
    body = alert_bulk_lines(make_alert(1), IDENTITY, "default")
    for policy, count in (("batch", 5000), ("always", 300)):
        spool = Spool(tmp / f"cost-{policy}.db", 512 << 20, 3600, policy)  # type: ignore[arg-type]
        started = time.perf_counter()
        for i in range(count):
            spool.append("alert", 3, body, key=f"k{i}")
        spool.sync()
        per = (time.perf_counter() - started) / count
        spool.close()
        result.add(f"spool append per alert, fsync {policy}", per * 1e6, "us",
                   note=f"{len(body)} B record, {count} appends")


def _latency(result: BenchResult, tmp: Path) -> None:
    server = _Server()
    sink = _sink(tmp / "lat", server.url)
    emitted: dict[int, float] = {}
    acked: dict[int, float] = {}
    append, ack = sink.spool.append, sink.spool.ack

    def timed_append(*args: Any, **kwargs: Any) -> AppendResult:
        t0 = time.perf_counter()
        res = append(*args, **kwargs)
        emitted[res.seq] = t0
        return res

    def timed_ack(seqs: Any) -> int:
        now = time.perf_counter()
        seqs = list(seqs)
        for seq in seqs:
            acked.setdefault(seq, now)
        return ack(seqs)

    sink.spool.append = timed_append  # type: ignore[method-assign]
    sink.spool.ack = timed_ack  # type: ignore[method-assign]
    try:
        sink.emit(make_alert(10**6))  # warm-up: index setup, connection
        _wait_idle(sink, 10)
        emitted.clear()
        acked.clear()
        interval = 1.0 / LATENCY_RATE
        start = time.perf_counter()
        for i in range(LATENCY_RATE * LATENCY_SECONDS):
            target = start + i * interval
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sink.emit(make_alert(i, level="high"))
        _wait_idle(sink, 20)
    finally:
        sink.close()
        server.stop()
    latencies = sorted(acked[s] - emitted[s] for s in emitted if s in acked)
    if not latencies:
        result.add("FAKE ES: detection-to-acknowledged p99", float("inf"), "s", "<= 1")
        return
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    note = f"{len(latencies)}/{len(emitted)} acknowledged, batch_max_age 0.2 s"
    result.add("FAKE ES: detection-to-acknowledged p50", p50, "s", note=note)
    result.add("FAKE ES: detection-to-acknowledged p99", p99, "s", "<= 1", note=note)


def run() -> BenchResult:
    result = BenchResult("shipping")
    result.context.update({"throughput_alerts": THROUGHPUT_ALERTS,
                           "latency_rate_per_second": LATENCY_RATE,
                           "latency_seconds": LATENCY_SECONDS,
                           "server": "tests/es_server in a separate process; raw-sources mode "
                                     "(documents stored unparsed) unless noted"})
    with tempfile.TemporaryDirectory() as tmp:
        _spool_cost(result, Path(tmp))
        _throughput(result, Path(tmp), raw=True, latest=True)
        _throughput(result, Path(tmp), raw=True, latest=False)
        _throughput(result, Path(tmp), raw=False, latest=True)
        _agent_alone(result, Path(tmp))
        _latency(result, Path(tmp))
    return result


if __name__ == "__main__":
    from bench.common import table

    print(table([run()]))
