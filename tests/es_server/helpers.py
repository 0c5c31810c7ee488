"""Helpers shared by the Elasticsearch tests and the shipping benchmark."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from agent.alerts import Alert, RuleRef, Status, alert_id
from agent.config import Config
from agent.identity import Identity
from agent.metrics import AgentMetrics
from agent.sinks.elasticsearch import ElasticsearchSink, spool_dir

IDENTITY = Identity(
    host_name="web-1", host_id="host-id-1", agent_id="agent-1", agent_name="web-1",
    ephemeral_id="eph-1", host_ips=("192.0.2.10",),
)
LEVELS = ("informational", "low", "medium", "high", "critical")


def make_config(tmp_path: Path, hosts: list[str], **es: Any) -> Config:
    section: dict[str, Any] = {
        "hosts": hosts,
        "spool_dir": str(tmp_path / "spool"),
        "batch_max_age_seconds": 0.05,
        "retry_backoff_initial_seconds": 0.05,
        "retry_backoff_max_seconds": 0.3,
        "request_timeout_seconds": 5,
        **es,
    }
    return Config.model_validate({"agent": {"state_dir": str(tmp_path / "state")},
                                  "elasticsearch": section})


def fresh_metrics() -> AgentMetrics:
    return AgentMetrics(CollectorRegistry())


def open_sink(config: Config, metrics: AgentMetrics | None = None, **kwargs: Any
              ) -> ElasticsearchSink:
    """The Elasticsearch sink of ``config`` (identity ``IDENTITY``, fresh metrics by default)."""
    if metrics is None:
        metrics = fresh_metrics()
    return ElasticsearchSink(config.elasticsearch, IDENTITY, metrics, spool_dir(config), **kwargs)


def sample(metrics: AgentMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def make_alert(i: int, level: str = "medium", revision: int = 0, count: int = 1,
               matched: dict[str, Any] | None = None, rule: str = "ssh-bruteforce") -> Alert:
    group = {"source.ip": f"198.51.100.{i % 250}", "n": i}
    first = 1_700_000_000.0 + i
    return Alert(
        id=alert_id(rule, group, first),
        rule=RuleRef(id=rule, title="SSH brute force", level=level, tags=("attack.t1110",)),
        group=group,
        first_seen=first,
        last_seen=first + revision,
        count=count,
        status=Status.OPEN if revision == 0 else Status.UPDATED,
        revision=revision,
        matched=matched or {"source.ip": f"198.51.100.{i % 250}", "destination.port": 22},
        message=f"alert {i}",
    )


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
