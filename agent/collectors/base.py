"""The two shapes of collector, and what the daemon hands them.

Collectors never schedule or register themselves. Their constructor receives what they read
(proc root, paths, a psutil handle, a packet source, a clock) so tests can fake the OS.

* A :class:`PollingCollector` is called by the scheduler every ``interval_seconds`` and returns
  the events of that run (host metrics, socket tables, module lists).
* A :class:`StreamingCollector` runs in its own thread until ``stop`` is set, publishing events
  as they happen (proc connector, inotify, log tails, packet capture). If ``run`` raises, the
  daemon logs and counts the error and restarts it after a back-off.

A collector may also expose Prometheus metrics read at scrape time by providing
``prometheus_collector()``; the names must be declared in :mod:`agent.metrics`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

from agent.events import Event

Publish = Callable[[Iterable[Event]], int]
"""Hand events to the pipeline; returns how many were accepted (the rest were dropped)."""


@runtime_checkable
class PollingCollector(Protocol):
    name: str
    interval_seconds: float

    def collect(self) -> list[Event]:
        """One run: read the OS, return the events of this run."""


@runtime_checkable
class StreamingCollector(Protocol):
    name: str

    def run(self, publish: Publish, stop: threading.Event) -> None:
        """Publish events until ``stop`` is set; return promptly after it is."""
