"""The real `vedette run` with the Elasticsearch sink: an alert reaches the fake cluster, the
shipping metrics are exposed, and SIGTERM exits promptly even while a bulk request hangs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from agent.events import format_timestamp
from agent.sinks.es_docs import alerts_stream, events_stream, latest_index
from tests.conftest import REPO, AgentProcess
from tests.es_server import FakeElasticsearch

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CPU_RULE = REPO / "rules" / "host" / "cpu_saturation.yml"


def _agent(agent_factory: Callable[..., AgentProcess], feed: Path, server: FakeElasticsearch,
           **es: object) -> AgentProcess:
    """A started agent reading host events from ``feed`` and shipping to ``server``."""
    return agent_factory({
        "inputs": {"event_files": [str(feed)], "event_files_interval_seconds": 0.2},
        "host_metrics": {"enabled": False},
        # only the fed events: alerts of the real host (its processes, sockets, files) would
        # change what reaches the fake cluster
        **{section: {"enabled": False} for section in (
            "process", "sockets", "fim", "kernel_modules", "auth_logs", "web_logs", "auditd")},
        "detection": {"late_allowance_seconds": 120},
        "elasticsearch": {"hosts": [server.url], "batch_max_age_seconds": 0.1, **es},
    }).start()


def _feed_busy_cpu(feed: Path, host: str) -> None:
    start = time.time() - 80
    with feed.open("a") as out:
        for i in range(8):
            out.write(json.dumps({
                "@timestamp": format_timestamp(start + 10 * i),
                "logsource": {"product": "vedette", "category": "host_metrics"},
                "event.dataset": "vedette.host_metrics",
                "host.name": host,
                "host.cpu.usage": 0.99,
            }) + "\n")


def test_daemon_ships_alerts_and_stops_promptly(
    agent_factory: Callable[..., AgentProcess], server: FakeElasticsearch, tmp_path: Path
) -> None:
    if not CPU_RULE.exists():
        pytest.skip("the CPU rule is not in the repository")
    rule_ids = {doc["id"] for doc in yaml.safe_load_all(CPU_RULE.read_text()) if doc}
    feed = tmp_path / "fake-host.jsonl"
    feed.touch()
    agent = _agent(agent_factory, feed, server, retry_backoff_max_seconds=1)
    _feed_busy_cpu(feed, "fake-busy-host")
    agent.wait_for(lambda: bool(server.cluster.docs(latest_index("default"))),
                   timeout=30, what="an alert in Elasticsearch")
    doc = server.cluster.docs(latest_index("default"))[0].source
    assert doc["rule"]["id"] in rule_ids and doc["event"]["kind"] == "alert"
    assert server.cluster.docs(alerts_stream("default"))
    agent.wait_for(lambda: (agent.sample("vedette_es_docs_shipped_total",
                                         {"stream": "alerts"}) or 0) >= 1, what="metrics")
    assert agent.sample("vedette_es_spool_records", {"spool": "spool"}) == 0
    assert agent.sample("vedette_es_reachable") == 1
    # A cluster that hangs must not hold up shutdown (SIGTERM: 10 s in total).
    server.faults.delay_seconds = 30
    before = server.bulk_started
    _feed_busy_cpu(feed, "another-busy-host")  # a second alert: its bulk request hangs
    agent.wait_for(lambda: server.bulk_started > before, timeout=30, what="a hanging request")
    started = time.monotonic()
    assert agent.stop(timeout=12) == 0
    assert time.monotonic() - started < 10
    # The unacknowledged alert waited in the spool: the next start delivers it.
    server.faults.delay_seconds = 0
    agent.config["inputs"]["event_files"] = []
    agent.start()
    agent.wait_for(lambda: len(server.cluster.docs(latest_index("default"))) == 2,
                   timeout=30, what="the spooled alert after restart")
    assert agent.stop() == 0


def test_daemon_ships_raw_events_when_asked(
    agent_factory: Callable[..., AgentProcess], server: FakeElasticsearch, tmp_path: Path
) -> None:
    """`elasticsearch.ship_events`: the pipeline offers every event, the sink keeps the chosen
    datasets; with it off (the default) nothing reaches the events stream."""
    feed = tmp_path / "fake-host.jsonl"
    feed.touch()
    agent = _agent(agent_factory, feed, server, ship_events=True,
                   events_datasets=["vedette.host_metrics"])
    _feed_busy_cpu(feed, "raw-events-host")
    with feed.open("a") as out:  # another dataset: filtered out by events_datasets
        out.write(json.dumps({"@timestamp": format_timestamp(time.time()),
                              "logsource": {"product": "vedette", "category": "host_metrics"},
                              "event.dataset": "other.dataset", "host.name": "x"}) + "\n")
    agent.wait_for(lambda: len(server.cluster.docs(events_stream("default"))) >= 8,
                   timeout=30, what="raw events in Elasticsearch")
    time.sleep(1)
    docs = [d.source for d in server.cluster.docs(events_stream("default"))]
    assert len(docs) == 8
    assert {d["vedette"]["dataset"] for d in docs} == {"vedette.host_metrics"}
    assert agent.stop() == 0
