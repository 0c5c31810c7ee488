"""agent/supervisor.py: collectors are built, run, restarted with back-off, and stopped."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agent import supervisor
from agent.collectors.base import CollectorContext
from agent.config import Config
from agent.errors import CollectorError
from agent.events import Event
from agent.identity import detect_identity
from agent.metrics import AgentMetrics
from agent.scheduler import Scheduler


class _Publishers:
    def __init__(self) -> None:
        self.published: list[tuple[str, list[Event]]] = []

    def publisher(self, name: str) -> Any:
        def publish(events: Any) -> int:
            batch = list(events)
            self.published.append((name, batch))
            return len(batch)
        return publish


class _Flaky:
    """Fails twice, then runs until told to stop."""

    name = "flaky"

    def __init__(self) -> None:
        self.runs = 0
        self.stopped = threading.Event()

    def run(self, publish: Any, stop: threading.Event) -> None:
        self.runs += 1
        if self.runs <= 2:
            raise RuntimeError(f"boom {self.runs}")
        stop.wait(30)
        self.stopped.set()


class _Polled:
    name = "polled"
    interval_seconds = 0.05

    def collect(self) -> list[Event]:
        return [Event(time.time(), ("linux", None, "test"), {"message": "x"})]


def _sample(registry: CollectorRegistry, name: str, collector: str) -> float:
    return registry.get_sample_value(name, {"collector": collector}) or 0.0


def test_a_failing_stream_restarts_with_backoff_and_a_refusing_builder_is_degraded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    flaky = _Flaky()

    def refuse(ctx: CollectorContext) -> list[Any]:
        raise CollectorError("no privilege here")

    monkeypatch.setattr(supervisor, "BUILDERS", {
        "flaky": lambda ctx: [flaky], "polled": lambda ctx: [_Polled()], "refused": refuse})
    monkeypatch.setattr(supervisor, "FIRST_BACKOFF_SECONDS", 0.05)
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    scheduler = Scheduler(metrics)
    pipe = _Publishers()
    identity = detect_identity(tmp_path, None, {})
    sup = supervisor.CollectorSupervisor(pipe, scheduler, metrics, registry,  # type: ignore[arg-type]
                                         identity, tmp_path)
    scheduler.start()
    try:
        sup.start(Config())
        assert sup.names() == ["flaky", "polled"]
        deadline = time.monotonic() + 10
        while (flaky.runs < 3 or not pipe.published) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert flaky.runs == 3
        assert _sample(registry, "vedette_collector_errors_total", "flaky") == 2
        assert _sample(registry, "vedette_collector_degraded", "refused") == 1
        assert _sample(registry, "vedette_collector_degraded", "flaky") == 0
        assert pipe.published and pipe.published[0][0] == "polled"
        sup.stop()
        assert flaky.stopped.wait(5)
        assert sup.names() == []
    finally:
        scheduler.shutdown(wait=False)
