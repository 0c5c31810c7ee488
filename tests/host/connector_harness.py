"""The process-exec collector running on the real proc connector, for root-only tests."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from agent.collectors.host.process.collector import ProcessExecCollector
from agent.collectors.host.process.connector import ProcConnector
from agent.collectors.host.process.procfs import ProcReader
from agent.events import Event
from agent.metrics import AgentMetrics


def _connector_available() -> bool:
    try:
        ProcConnector().close()
    except OSError:
        return False
    return True


needs_connector = pytest.mark.skipif(
    os.geteuid() != 0 or not _connector_available(), reason="needs root and the proc connector")


class RunningCollector:
    """The collector in a thread, recording what it publishes."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self.stop = threading.Event()
        self.collector = ProcessExecCollector(ProcReader(), AgentMetrics(CollectorRegistry()))
        self.thread = threading.Thread(target=self.collector.run, args=(self._publish, self.stop))

    def _publish(self, events: list[Event]) -> int:
        with self._lock:
            self.events.extend(events)
        return len(events)

    def __enter__(self) -> RunningCollector:
        self.thread.start()
        deadline = time.monotonic() + 5
        while self.collector.mode == "starting" and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)

    def matching(self, keep: Callable[[Event], bool], count: int, timeout: float) -> list[Event]:
        """Events ``keep`` accepts, once there are ``count`` of them or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = [e for e in self.events if keep(e)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.02)
