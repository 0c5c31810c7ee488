"""APScheduler wrapper: runs, failures and misfires counted per job; a failing job runs again."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from foundation_helpers import fresh_metrics, value, wait_until

from agent.metrics import AgentMetrics
from agent.scheduler import Scheduler


@pytest.fixture
def metrics() -> AgentMetrics:
    return fresh_metrics()


@pytest.fixture
def scheduler(metrics: AgentMetrics) -> Iterator[Scheduler]:
    sched = Scheduler(metrics, misfire_grace_seconds=5, workers=2)
    yield sched
    sched.shutdown(wait=True)


def test_series_exist_at_zero_before_the_first_run(
    scheduler: Scheduler, metrics: AgentMetrics
) -> None:
    scheduler.add("idle", lambda: None, 60, run_now=False)
    for name in ("vedette_job_runs_total", "vedette_job_failures_total",
                 "vedette_job_misfires_total"):
        assert metrics.registry.get_sample_value(name, {"task": "idle"}) == 0.0
    assert scheduler.job_names() == ["idle"]


def test_runs_are_counted_and_timed(scheduler: Scheduler, metrics: AgentMetrics) -> None:
    ran = threading.Event()
    scheduler.add("tick", ran.set, 0.2)
    scheduler.start()
    assert ran.wait(2)
    assert wait_until(lambda: value(metrics, "vedette_job_runs_total", task="tick") >= 2)
    assert value(metrics, "vedette_job_failures_total", task="tick") == 0
    assert value(metrics, "vedette_job_duration_seconds_count", task="tick") >= 2


def test_failing_job_is_counted_logged_and_runs_again(
    scheduler: Scheduler, metrics: AgentMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    attempts: list[float] = []

    def broken() -> None:
        attempts.append(time.monotonic())
        raise OSError("proc unreadable")

    scheduler.add("broken", broken, 0.2)
    scheduler.start()
    assert wait_until(lambda: value(metrics, "vedette_job_failures_total", task="broken") >= 2)
    runs = value(metrics, "vedette_job_runs_total", task="broken")
    failures = value(metrics, "vedette_job_failures_total", task="broken")
    assert runs >= failures >= 2  # every failed run is also a run
    assert attempts[1] - attempts[0] >= 0.1  # next interval, not a tight retry loop
    records = [r for r in caplog.records if r.name == "agent.scheduler"]
    assert any(
        r.getMessage() == "job failed; it runs again at its next interval"
        and getattr(r, "job", None) == "broken"
        and getattr(r, "error", None) == "OSError: proc unreadable"
        for r in records
    )


def test_slow_job_misfires_and_never_overlaps(
    scheduler: Scheduler, metrics: AgentMetrics
) -> None:
    running = 0
    most = 0
    lock = threading.Lock()

    def slow() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.55)
        with lock:
            running -= 1

    scheduler.add("slow", slow, 0.2)
    scheduler.start()
    assert wait_until(lambda: value(metrics, "vedette_job_misfires_total", task="slow") >= 2, 2.5)
    assert most == 1  # max_instances=1
    assert value(metrics, "vedette_job_failures_total", task="slow") == 0


def test_run_now_false_waits_one_interval(scheduler: Scheduler, metrics: AgentMetrics) -> None:
    ran: list[float] = []
    scheduler.add("later", lambda: ran.append(time.monotonic()), 0.4, run_now=False)
    started = time.monotonic()
    scheduler.start()
    assert wait_until(lambda: bool(ran), 2)
    assert ran[0] - started >= 0.3


def test_remove_and_replace(scheduler: Scheduler, metrics: AgentMetrics) -> None:
    calls: list[str] = []
    scheduler.start()
    scheduler.add("job", lambda: calls.append("old"), 60, run_now=False)
    scheduler.add("job", lambda: calls.append("new"), 0.2)  # same name replaces (reload)
    assert scheduler.job_names() == ["job"]
    assert wait_until(lambda: bool(calls))
    assert set(calls) == {"new"}
    scheduler.remove("job")
    scheduler.remove("never-added")  # no error
    assert scheduler.job_names() == []


def test_shutdown_twice_and_before_start_is_harmless(metrics: AgentMetrics) -> None:
    sched = Scheduler(metrics)
    sched.shutdown()
    sched.start()
    sched.shutdown()
    sched.shutdown()
