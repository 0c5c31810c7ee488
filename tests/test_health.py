"""agent/health.py: the reasons /healthz gives, read from the agent's own metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from agent.health import Health
from agent.metrics import AgentMetrics


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_healthy_only_with_rules_and_no_degraded_collector() -> None:
    metrics = AgentMetrics(CollectorRegistry())
    health = Health(metrics, clock=Clock())
    assert health.reasons() == ["no rules loaded"]
    metrics.rules_loaded.labels(kind="detection").set(3)
    assert health.reasons() == []
    metrics.collector_degraded.labels("auth_logs").set(1)
    metrics.collector_degraded.labels("fim").set(0)
    assert health.reasons() == ["collector auth_logs is degraded or failed to start"]


def test_drops_refusals_and_errors_count_for_a_window_then_clear() -> None:
    metrics = AgentMetrics(CollectorRegistry())
    metrics.rules_loaded.labels(kind="detection").set(1)
    clock = Clock()
    health = Health(metrics, window_seconds=60, clock=clock)
    health.sample()
    metrics.events_dropped.labels("queue", "queue_full").inc(5)
    metrics.events_dropped.labels("capture", "budget").inc(5)  # not the event queue
    metrics.es_spool_dropped.labels("overflow").inc()
    metrics.es_spool_dropped.labels("age").inc()  # expiry is not a refusal
    metrics.collector_errors.labels("sockets").inc()
    health.sample()
    clock.now += 30
    assert health.reasons() == [
        "collector sockets raised errors in the last 60 s",
        "the Elasticsearch spool is refusing records (full) in the last 60 s",
        "the event queue is dropping events in the last 60 s",
    ]
    clock.now += 31
    assert health.reasons() == []
    metrics.events_dropped.labels("queue", "queue_full").inc()
    assert health.reasons() == ["the event queue is dropping events in the last 60 s"]
