"""Shipping to a REAL Elasticsearch 9 node: throughput, latency, CPU per alert of the agent.

The node is Elastic's test distribution (tests/es_server/real_node.py: single node on
loopback, TLS and basic auth on, 512 MiB heap) in its own processes on the same two cores as
the agent — it parses, maps and indexes every document, so its indexing cost is in every
figure, and other people's load on this shared machine is too (the load average is noted).

* throughput: ``THROUGHPUT_ALERTS`` alerts handed to ``ElasticsearchSink.emit`` — what the
  detection stage calls — as fast as it takes them; alerts/s from the first ``emit`` until the
  last record was acknowledged by the node and deleted from the spool (each alert = 2
  documents: the history data stream and the latest index). CPU per alert: this process only
  (the agent's side: rendering, spool, bulk assembly, gzip, TLS, response handling), and
  the node's processes apart;
* latency: alerts emitted at ``LATENCY_RATE``/s for ``LATENCY_SECONDS`` s; time from ``emit``
  to the acknowledged record's deletion from the spool, p50 and p99 (batches linger up to
  ``batch_max_age_seconds`` = 0.2 s by default, which sets the floor).

Every figure is the median of ``RUNS`` runs (each into a fresh namespace, so fresh data
streams) with the min and max in the note; never best-of-N.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.sinks.elasticsearch import ElasticsearchSink
from agent.sinks.es_docs import alerts_stream, latest_index
from agent.spool import AppendResult
from bench.common import BenchResult
from tests.es_server.helpers import make_alert, make_config, open_sink
from tests.es_server.real_node import PASSWORD, RealElasticsearch

RUNS = 5
THROUGHPUT_ALERTS = 5000
WARMUP_ALERTS = 3000
LATENCY_RATE = 100
LATENCY_SECONDS = 5


def _cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _node_pids(node: RealElasticsearch) -> list[int]:
    """The server JVM (its PID file) — the CLI launcher exited after daemonizing."""
    return [node.pid] if node.pid is not None else []


def _sink(tmp: Path, node: RealElasticsearch, namespace: str) -> ElasticsearchSink:
    assert node.certs is not None
    config = make_config(tmp, [node.url], namespace=namespace, username="elastic",
                         password=PASSWORD, ca_file=str(node.certs.ca),
                         request_timeout_seconds=30, batch_max_age_seconds=0.2,
                         retry_backoff_initial_seconds=0.2, retry_backoff_max_seconds=1.0)
    return open_sink(config)


def _wait_idle(sink: ElasticsearchSink, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not sink.idle():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def _throughput(tmp: Path, node: RealElasticsearch, run: int, count: int = THROUGHPUT_ALERTS
                ) -> tuple[float, float, float, float]:
    """(alerts/s, agent CPU µs per alert, node CPU µs per alert, emit-phase alerts/s)."""
    ns = f"bench{run}"
    warm = _sink(tmp / f"warm{run}", node, ns)  # templates and the data streams exist first
    warm.emit(make_alert(10**6 + run))
    if not _wait_idle(warm, 120):
        raise AssertionError("warm-up alert not acknowledged")
    warm.close()
    alerts = [make_alert(i, level="high") for i in range(count)]
    sink = _sink(tmp / f"tp{run}", node, ns)
    try:
        cpu, node_cpu = time.process_time(), _cpu_of(_node_pids(node))
        started = time.perf_counter()
        for alert in alerts:
            sink.emit(alert)
        emitted = time.perf_counter() - started
        done = _wait_idle(sink, 600)
        elapsed = time.perf_counter() - started
        cpu, node_cpu = time.process_time() - cpu, _cpu_of(_node_pids(node)) - node_cpu
    finally:
        sink.close()
    stored = (node.count(alerts_stream(ns)), node.count(latest_index(ns)))
    if not done or stored != (count + 1, count + 1):
        raise AssertionError(f"run {run}: node holds {stored} of {count + 1}")
    n = count
    return n / elapsed, cpu / n * 1e6, node_cpu / n * 1e6, n / emitted


def _latency(tmp: Path, node: RealElasticsearch, run: int) -> tuple[float, float, int]:
    """(p50 s, p99 s, acknowledged) of one run."""
    sink = _sink(tmp / f"lat{run}", node, f"benchlat{run}")
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
        sink.emit(make_alert(10**6))  # warm-up: setup, connection, the data streams
        _wait_idle(sink, 120)
        emitted.clear()
        acked.clear()
        interval = 1.0 / LATENCY_RATE
        start = time.perf_counter()
        for i in range(LATENCY_RATE * LATENCY_SECONDS):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sink.emit(make_alert(i, level="high"))
        _wait_idle(sink, 120)
    finally:
        sink.close()
    latencies = sorted(acked[s] - emitted[s] for s in emitted if s in acked)
    if len(latencies) != len(emitted):
        raise AssertionError(f"run {run}: {len(latencies)}/{len(emitted)} acknowledged")
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return statistics.median(latencies), p99, len(latencies)


def _add(result: BenchResult, metric: str, values: list[float], unit: str, note: str,
         scale: float = 1.0, target: str = "") -> None:
    med = statistics.median(values) * scale
    spread = f"median of {len(values)} runs, min {min(values) * scale:,.4g}, " \
             f"max {max(values) * scale:,.4g}"
    result.add(metric, med, unit, target, note=f"{spread}; {note}")


def run() -> BenchResult:
    result = BenchResult("shipping_real")
    workdir = Path(tempfile.mkdtemp(prefix="vedette-bench-es-"))
    node = RealElasticsearch(workdir / "node")
    try:
        started = time.monotonic()
        node.start()
        (about,) = node.info["nodes"].values()
        result.context.update({
            "elasticsearch": about["version"], "jvm": about["jvm"]["version"],
            "distribution": "org.elasticsearch.distribution.integ-test-zip:elasticsearch "
                            "(single node, TLS + basic auth, 512 MiB heap, same 2 cores)",
            "node_start_seconds": round(time.monotonic() - started, 1),
            "runs": RUNS, "throughput_alerts": THROUGHPUT_ALERTS,
            "node_warmup_alerts": WARMUP_ALERTS,
            "latency_rate_per_second": LATENCY_RATE, "latency_seconds": LATENCY_SECONDS,
        })
        rates, cpu, node_cpu, p50s, p99s, loads, emits = [], [], [], [], [], [], []
        with tempfile.TemporaryDirectory() as tmp:
            # A fresh JVM indexes several times slower until its JIT has compiled the
            # indexing path (measured: 103 alerts/s cold, 230-330 warm, same load): one
            # unrecorded pass first, as a running cluster is warm.
            _throughput(Path(tmp), node, 99, WARMUP_ALERTS)
            for i in range(RUNS):
                rate, agent_us, node_us, emit_rate = _throughput(Path(tmp), node, i)
                rates.append(rate)
                emits.append(emit_rate)
                cpu.append(agent_us)
                node_cpu.append(node_us)
                p50, p99, _ = _latency(Path(tmp), node, i)
                p50s.append(p50)
                p99s.append(p99)
                loads.append(os.getloadavg()[0])
        load = f"load {min(loads):.1f}-{max(loads):.1f} on 2 cores"
        mix = (f"{THROUGHPUT_ALERTS} SSH brute-force alerts (ECS docs of ~1.8 kB) = "
               f"{2 * THROUGHPUT_ALERTS} docs a run; {load}")
        _add(result, "real ES: shipping throughput, emit to acknowledged", rates, "alerts/s",
             mix)
        _add(result, "real ES: emit phase (render + spool), while shipping",
             emits, "alerts/s", mix)
        _add(result, "real ES: agent CPU per alert (this process only)", cpu, "us", mix)
        _add(result, "real ES: node CPU per alert (Elasticsearch JVM)", node_cpu, "us", mix)
        lat = f"{LATENCY_RATE}/s for {LATENCY_SECONDS} s, batch_max_age 0.2 s; {load}"
        _add(result, "real ES: detection-to-acknowledged p50", p50s, "s", lat)
        _add(result, "real ES: detection-to-acknowledged p99", p99s, "s", lat, target="<= 1")
    finally:
        node.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return result


if __name__ == "__main__":
    from bench.common import table

    print(table([run()]))
