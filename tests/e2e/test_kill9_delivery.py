"""The headline durability test: ``kill -9`` of ``vedette run`` while it tails an auth log that
is being written fast, then a restart. Every alert's final (closed) state reaches
Elasticsearch (the project's fake server) exactly once — also the alerts that were open at the
kill — because log positions advance only after what was read before them is durable
(end-to-end acknowledgement) and open alerts are checkpointed before the positions are."""

from __future__ import annotations

import collections
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.sinks.es_docs import alerts_stream, latest_index
from tests.conftest import AgentProcess
from tests.es_server import FakeElasticsearch

SOURCES = 3000
ROUNDS = 5  # 15,000 lines: five failed logins from each of 3,000 addresses
RULE = """\
title: SSH login failure (durability test)
id: 5b0a3c9e-1f7d-4b8e-9d11-6a0c2e3f4d55
status: test
logsource:
  product: linux
  service: sshd
detection:
  failed:
    event.action: ssh_login
    event.outcome: failure
  condition: failed
level: medium
vedette:
  group_by: [source.ip]
  quiet_period: 15
  update_interval: 3600
  max_alerts_per_minute: 1000000
  max_groups: 100000
"""


def _address(i: int) -> str:
    return f"198.18.{i // 250}.{i % 250 + 1}"


def _line(i: int) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return (f"{stamp} web1 sshd[{1000 + i % 5000}]: Failed password for root from "
            f"{_address(i)} port {20000 + i % 30000} ssh2\n")


class Writer(threading.Thread):
    """Appends the 15,000 lines as fast as a busy sshd would (in bursts), flushing each."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.written = 0
        self.pause = threading.Event()
        self.pause.set()

    def run(self) -> None:
        with self.path.open("a", encoding="ascii") as handle:
            for n in range(SOURCES * ROUNDS):
                self.pause.wait()
                handle.write(_line(n % SOURCES))
                self.written += 1
                if n % 100 == 99:
                    handle.flush()
                    time.sleep(0.01)
            handle.flush()


def _agent(agent_factory: Any, server: FakeElasticsearch, tmp_path: Path) -> AgentProcess:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "ssh_failure.yml").write_text(RULE)
    log = tmp_path / "auth.log"
    log.touch()
    return agent_factory({
        # only this rule (no shipped rules: host collectors would raise unrelated alerts)
        "detection": {"rule_paths": [str(rules)], "shipped_rules": False, "watch_rules": False},
        "auth_logs": {"paths": [str(log)], "journal": "off", "start_at_end": False,
                      "poll_interval_seconds": 0.05, "watch_integrity": False},
        "web_logs": {"enabled": False}, "fim": {"enabled": False},
        "elasticsearch": {"hosts": [server.url], "batch_max_age_seconds": 0.05,
                          "retry_backoff_initial_seconds": 0.05,
                          "retry_backoff_max_seconds": 0.5},
        "sinks": {"jsonl": {"enabled": False}},
    })


def test_kill9_while_tailing_a_fast_log_loses_nothing(
    agent_factory: Any, server: FakeElasticsearch, tmp_path: Path
) -> None:
    agent = _agent(agent_factory, server, tmp_path)
    writer = Writer(tmp_path / "auth.log")
    agent.start()
    writer.start()

    def shipped() -> int:
        return len(server.cluster.docs(latest_index("default")))

    # kill -9 in the middle: alerts delivered, thousands of lines read and still queued
    agent.wait_for(lambda: writer.written >= SOURCES * 2 and shipped() > 100, 60,
                   "alerts shipping while the log is written")
    agent.kill()
    open_at_kill = {i for i, doc in _latest(server).items()
                    if doc["vedette"]["alert"]["status"] != "closed"}
    writer.pause.clear()
    time.sleep(0.5)
    writer.pause.set()
    agent.start()
    writer.join(120)
    assert writer.written == SOURCES * ROUNDS

    def all_closed() -> bool:
        latest = _latest(server)
        return len(latest) >= SOURCES and all(
            d["vedette"]["alert"]["status"] == "closed" for d in latest.values())

    agent.wait_for(all_closed, 120, "every alert closed in Elasticsearch")
    agent.stop()

    latest = _latest(server)
    per_source: dict[str, list[int]] = collections.defaultdict(list)
    for doc in latest.values():
        per_source[doc["vedette"]["group"]["source.ip"]].append(doc["vedette"]["alert"]["count"])
    assert set(per_source) == {_address(i) for i in range(SOURCES)}
    # nothing lost: every failed login is counted in an alert of its address (an address whose
    # alert went quiet while the agent was down has a second one for the later lines)
    assert min(sum(c) for c in per_source.values()) >= ROUNDS, "failed logins were lost"
    # history: no snapshot twice, exactly one closed snapshot per alert
    history = server.cluster.docs(alerts_stream("default"))
    ids = [d.id for d in history]
    assert len(ids) == len(set(ids))
    closed = collections.Counter(d.source["event"]["id"] for d in history
                                 if d.source["vedette"]["alert"]["status"] == "closed")
    assert set(closed) == set(latest) and set(closed.values()) == {1}
    assert open_at_kill and open_at_kill <= set(closed), "alerts open at the kill never closed"
    totals = collections.Counter(sum(c) for c in per_source.values())
    print(f"alerts {len(latest)}, open at the kill {len(open_at_kill)}, failed logins counted "
          f"per address {dict(totals)}")


def _latest(server: FakeElasticsearch) -> dict[str, dict[str, Any]]:
    return {d.source["event"]["id"]: d.source for d in server.cluster.docs(latest_index("default"))}
