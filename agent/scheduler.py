"""Periodic jobs, driven by APScheduler's BackgroundScheduler.

This is the only module that imports APScheduler. Every job runs with ``coalesce=True`` (a
backlog of missed runs collapses into one), ``max_instances=1`` (a slow run is never overlapped
by the next one) and the configured ``misfire_grace_time``. Runs, failures, misfires and
durations are counted per job name; a failing job is logged and simply runs again at its next
interval.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
    JobExecutionEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from agent.metrics import AgentMetrics

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, metrics: AgentMetrics, misfire_grace_seconds: int = 30, workers: int = 4):
        self._metrics = metrics
        self._grace = misfire_grace_seconds
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=workers)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": misfire_grace_seconds,
            },
            timezone="UTC",
        )
        self._scheduler.add_listener(
            self._on_event,
            EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES,
        )

    def add(
        self,
        name: str,
        func: Callable[[], object],
        interval_seconds: float,
        *,
        run_now: bool = True,
    ) -> None:
        """Run ``func`` every ``interval_seconds``; the first run is immediate unless told not."""

        def timed() -> None:
            started = time.perf_counter()
            try:
                func()
            finally:
                self._metrics.job_duration.labels(name).observe(time.perf_counter() - started)

        now = datetime.now().astimezone()
        first = now if run_now else now + timedelta(seconds=interval_seconds)
        self._scheduler.add_job(
            timed,
            "interval",
            seconds=interval_seconds,
            id=name,
            name=name,
            replace_existing=True,
            next_run_time=first,
        )
        for counter in (
            self._metrics.job_runs,
            self._metrics.job_failures,
            self._metrics.job_misfires,
        ):
            counter.labels(name)  # expose zero-valued series from the start

    def remove(self, name: str) -> None:
        if self._scheduler.get_job(name) is not None:
            self._scheduler.remove_job(name)

    def job_names(self) -> list[str]:
        return sorted(job.id for job in self._scheduler.get_jobs())

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self, wait: bool = True) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)

    def _on_event(self, event: JobEvent) -> None:
        name = event.job_id
        if event.code == EVENT_JOB_EXECUTED:
            self._metrics.job_runs.labels(name).inc()
        elif event.code == EVENT_JOB_ERROR:
            self._metrics.job_runs.labels(name).inc()
            self._metrics.job_failures.labels(name).inc()
            exc = event.exception if isinstance(event, JobExecutionEvent) else None
            log.error(
                "job failed; it runs again at its next interval",
                extra={"job": name, "error": f"{type(exc).__name__}: {exc}"},
            )
        else:  # missed beyond the grace time, or previous run still going
            self._metrics.job_misfires.labels(name).inc()
            reason = "missed" if event.code == EVENT_JOB_MISSED else "still running"
            log.warning("job run skipped", extra={"job": name, "reason": reason})
