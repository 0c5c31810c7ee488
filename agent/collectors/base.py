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

A :data:`Builder` turns the daemon's :class:`CollectorContext` into the collectors its config
section asks for (an empty list when disabled). It lives beside its collector (a module-level
``build``); each collector package (``host``, ``logs``, ``agent.capture``) lists its builders in
one ``BUILDERS`` dict and :mod:`agent.collectors.registry` merges those. A builder raises
:class:`~agent.errors.CollectorError` when the collector cannot run here (no privilege, no
interface); the daemon then logs one clear warning, marks ``vedette_collector_degraded{collector}``
and keeps every other collector running.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from agent.config import Config
from agent.events import Event
from agent.identity import Identity
from agent.metrics import AgentMetrics

Publish = Callable[[Iterable[Event]], int]
"""Hand events to the pipeline; returns how many were accepted (the rest were dropped)."""

Ack = Callable[[], None]
"""Called (on the detection thread, in publish order) once every event of a block and every
block before it has been evaluated and the alerts they produced are durable in the sinks."""


def publish_acked(publish: Publish, events: list[Event], ack: Ack, commit: Ack | None,
                  stop: threading.Event) -> bool:
    """Hand a block of events read from a replayable source (a log file, the journal) to the
    pipeline with end-to-end acknowledgement: the pipeline waits for room instead of dropping,
    and calls ``ack`` (then ``commit``, once per tick) when the block is safe — the source
    persists only acknowledged positions. False when ``stop`` was set first (not acknowledged:
    the block is read again after a restart). A ``publish`` without the acknowledging path (a
    test's plain function) publishes and acknowledges at once."""
    acked = getattr(publish, "acked", None)
    if acked is not None:
        return bool(acked(events, ack, commit, stop))
    if events:
        publish(events)
    ack()
    if commit is not None:
        commit()
    return True


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


AnyCollector = PollingCollector | StreamingCollector


@dataclass(frozen=True)
class CollectorContext:
    """What every builder receives from the daemon."""

    config: Config
    identity: Identity
    metrics: AgentMetrics
    state_dir: Path

    def state_problem(self, reason: str) -> None:
        """Count a damaged or refused state file (a positions file: ``OffsetStore``'s
        ``on_problem``) in ``vedette_checkpoint_problems_total``."""
        self.metrics.checkpoint_problems.labels(reason=reason).inc()


Builder = Callable[[CollectorContext], list[AnyCollector]]
