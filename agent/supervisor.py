"""Collector supervision: build the configured collectors, run them, restart the ones that fail.

A polled collector (:class:`~agent.collectors.base.PollingCollector`) becomes a scheduler job
``collect_<name>``: a failure is a failed job (logged and counted by the scheduler, counted in
``vedette_collector_errors_total``), and it runs again next interval. A streaming collector
gets its own thread, restarted with exponential back-off (1 s doubling to 60 s, back to 1 s
after a minute of running) whenever ``run`` raises. A builder refusing with
:class:`~agent.errors.CollectorError` (no privilege, no interface) marks the collector
degraded with one warning; the others run.

This is the daemon's one door to :mod:`agent.collectors` (builders and protocols).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry

from agent.collectors.base import (
    AnyCollector,
    CollectorContext,
    PollingCollector,
    StreamingCollector,
)
from agent.collectors.registry import BUILDERS
from agent.config import Config
from agent.errors import CollectorError
from agent.identity import Identity
from agent.metrics import AgentMetrics
from agent.pipeline import Pipeline
from agent.scheduler import Scheduler

log = logging.getLogger("vedette")

JOB_PREFIX = "collect_"
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 60.0
RESET_AFTER_SECONDS = 60.0
"""A streaming collector that ran this long before failing starts again at 1 s."""
JOIN_TIMEOUT_SECONDS = 2.0


@dataclass
class _Supervised:
    collector: StreamingCollector
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


class CollectorSupervisor:
    """Runs the collectors of one configuration; :meth:`stop` then :meth:`start` swaps them."""

    def __init__(self, pipeline: Pipeline, scheduler: Scheduler, metrics: AgentMetrics,
                 registry: CollectorRegistry, identity: Identity, state_dir: Path) -> None:
        self._pipeline = pipeline
        self._scheduler = scheduler
        self._metrics = metrics
        self._registry = registry
        self._identity = identity
        self._state_dir = state_dir
        self._supervised: list[_Supervised] = []
        self._prom_collectors: list[object] = []

    def start(self, config: Config) -> None:
        ctx = CollectorContext(config, self._identity, self._metrics, self._state_dir)
        for name, builder in BUILDERS.items():
            try:
                collectors = builder(ctx)
            except CollectorError as exc:
                self._metrics.collector_degraded.labels(name).set(1)
                log.warning("collector unavailable", extra={"collector": name, "reason": str(exc)})
                continue
            except Exception:
                self._metrics.collector_errors.labels(name).inc()
                self._metrics.collector_degraded.labels(name).set(1)
                log.exception("collector failed to start", extra={"collector": name})
                continue
            for collector in collectors:
                self._start_one(collector)

    def stop(self) -> None:
        """Stop every collector (streaming threads get ``JOIN_TIMEOUT_SECONDS`` each)."""
        for job in self._scheduler.job_names():
            if job.startswith(JOB_PREFIX):
                self._scheduler.remove(job)
        for sup in self._supervised:
            sup.stop.set()
        for sup in self._supervised:
            if sup.thread is not None:
                sup.thread.join(timeout=JOIN_TIMEOUT_SECONDS)
        self._supervised.clear()
        for prom in self._prom_collectors:
            try:
                self._registry.unregister(prom)  # type: ignore[arg-type]
            except KeyError:
                pass
        self._prom_collectors.clear()

    def names(self) -> list[str]:
        polled = [j.removeprefix(JOB_PREFIX) for j in self._scheduler.job_names()
                  if j.startswith(JOB_PREFIX)]
        return sorted(polled + [s.collector.name for s in self._supervised])

    def _start_one(self, collector: AnyCollector) -> None:
        prom = getattr(collector, "prometheus_collector", None)
        if callable(prom):
            metric_source = prom()
            self._registry.register(metric_source)
            self._prom_collectors.append(metric_source)
        self._metrics.collector_degraded.labels(collector.name).set(0)
        if isinstance(collector, PollingCollector):
            publish = self._pipeline.publisher(collector.name)
            name = collector.name
            errors = self._metrics.collector_errors

            def job(c: PollingCollector = collector) -> None:
                try:
                    publish(c.collect())
                except Exception:
                    errors.labels(name).inc()
                    raise

            self._scheduler.add(f"{JOB_PREFIX}{name}", job, collector.interval_seconds)
        else:
            sup = _Supervised(collector)
            sup.thread = threading.Thread(target=self._supervise, args=(sup,),
                                          name=f"collector-{collector.name}", daemon=True)
            self._supervised.append(sup)
            sup.thread.start()

    def _supervise(self, sup: _Supervised) -> None:
        backoff = FIRST_BACKOFF_SECONDS
        publish = self._pipeline.publisher(sup.collector.name)
        while not sup.stop.is_set():
            started = time.monotonic()
            try:
                sup.collector.run(publish, sup.stop)
            except Exception as exc:
                self._metrics.collector_errors.labels(sup.collector.name).inc()
                log.error(
                    "collector failed; restarting",
                    extra={
                        "collector": sup.collector.name,
                        "error": f"{type(exc).__name__}: {exc}",
                        "retry_in_seconds": backoff,
                    },
                )
            if sup.stop.is_set():
                return
            if time.monotonic() - started > RESET_AFTER_SECONDS:
                backoff = FIRST_BACKOFF_SECONDS
            sup.stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
