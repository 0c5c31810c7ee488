"""Bounded queue → detection thread → router: overflow policy, drain on stop, isolation."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from foundation_helpers import RecordingSink, fresh_metrics, make_alert, value, wait_until
from prometheus_client import CollectorRegistry

from agent.alerts import Alert
from agent.events import HOST_METRICS, Event
from agent.metrics import AgentMetrics, catalog
from agent.pipeline import Pipeline, QueueDepthCollector
from agent.sinks.router import AlertRouter


def event(n: int) -> Event:
    return Event(1_700_000_000.0 + n, HOST_METRICS, {"n": n})


class GatedDetector:
    """Raises one alert per event; blocks inside ``process`` until ``gate`` is set."""

    def __init__(self, blocking: bool = True) -> None:
        self.gate = threading.Event()
        if not blocking:
            self.gate.set()
        self.entered = threading.Event()
        self.seen: list[int] = []
        self.advanced: list[float] = []
        self.threads: set[str] = set()
        self.fail_on: set[int] = set()

    def process(self, ev: Event) -> list[Alert]:
        self.threads.add(threading.current_thread().name)
        self.entered.set()
        self.gate.wait(5)
        n = ev.fields["n"]
        if n in self.fail_on:
            raise RuntimeError(f"rule crashed on {n}")
        self.seen.append(n)
        return [make_alert(rule_id=f"rule-{n}", first_seen=ev.timestamp)]

    def advance(self, now: float) -> list[Alert]:
        self.advanced.append(now)
        return []


@pytest.fixture
def metrics() -> AgentMetrics:
    return fresh_metrics()


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


def make_pipeline(
    detector: GatedDetector, sink: RecordingSink, metrics: AgentMetrics, **kwargs: float
) -> Pipeline:
    router = AlertRouter([sink], metrics)
    params = {"queue_size": 4, "batch_size": 2, "tick_seconds": 0.05, **kwargs}
    return Pipeline(detector, router, metrics, **params)  # type: ignore[arg-type]


@pytest.fixture
def running(metrics: AgentMetrics, sink: RecordingSink) -> Iterator[tuple[Pipeline, GatedDetector]]:
    detector = GatedDetector()
    pipeline = make_pipeline(detector, sink, metrics)
    pipeline.start()
    yield pipeline, detector
    detector.gate.set()
    pipeline.stop(timeout=2)


def test_full_queue_drops_and_counts_without_blocking(
    running: tuple[Pipeline, GatedDetector], metrics: AgentMetrics, sink: RecordingSink
) -> None:
    pipeline, detector = running
    assert pipeline.publish([event(0)], "test") == 1
    assert detector.entered.wait(2)  # the worker holds event 0 and is stuck in the detector
    started = time.monotonic()
    accepted = pipeline.publish((event(n) for n in range(1, 21)), "test")
    assert time.monotonic() - started < 0.5  # never blocks the producer
    assert accepted == 4  # queue_size
    assert pipeline.depth() == 4
    assert value(metrics, "vedette_events_dropped_total", stage="queue", reason="queue_full") == 16
    assert value(metrics, "vedette_events_published_total", collector="test") == 5
    # stop drains what was queued and flushes the sinks
    detector.gate.set()
    assert pipeline.stop(timeout=2) is True
    assert detector.seen == [0, 1, 2, 3, 4]
    assert [a.rule.id for a in sink.emitted] == [f"rule-{n}" for n in range(5)]
    assert sink.flushed_count[-1] == 5
    assert value(metrics, "vedette_events_processed_total", stage="detection") == 5
    assert pipeline.depth() == 0


def test_publish_after_stop_is_counted_as_shutdown_drop(
    metrics: AgentMetrics, sink: RecordingSink
) -> None:
    pipeline = make_pipeline(GatedDetector(blocking=False), sink, metrics)
    pipeline.start()
    assert pipeline.stop(timeout=2)
    assert pipeline.publish([event(1), event(2)], "late") == 0
    assert value(metrics, "vedette_events_dropped_total", stage="queue", reason="shutdown") == 2
    assert value(metrics, "vedette_events_published_total", collector="late") == 0


def test_stop_times_out_on_a_stuck_detector_and_counts_the_rest(
    metrics: AgentMetrics, sink: RecordingSink
) -> None:
    detector = GatedDetector()
    pipeline = make_pipeline(detector, sink, metrics, batch_size=1)
    pipeline.start()
    pipeline.publish([event(n) for n in range(3)], "test")
    assert detector.entered.wait(2)
    assert pipeline.stop(timeout=0.2) is False
    assert value(metrics, "vedette_events_dropped_total", stage="queue", reason="shutdown") == 2
    detector.gate.set()


def test_detector_error_is_counted_and_the_next_event_still_runs(
    metrics: AgentMetrics, sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    detector = GatedDetector(blocking=False)
    detector.fail_on = {1}
    pipeline = make_pipeline(detector, sink, metrics)
    pipeline.start()
    pipeline.publish([event(0), event(1), event(2)], "test")
    assert pipeline.stop(timeout=2)
    assert detector.seen == [0, 2]
    assert value(metrics, "vedette_events_dropped_total", stage="detection", reason="error") == 1
    assert "detection failed on an event" in caplog.text


def test_timers_advance_with_the_clock_and_their_alerts_are_routed(
    metrics: AgentMetrics, sink: RecordingSink
) -> None:
    detector = GatedDetector(blocking=False)
    closing = make_alert(rule_id="closer")
    calls: list[float] = []

    def advance(now: float) -> list[Alert]:
        calls.append(now)
        return [closing] if len(calls) == 1 else []

    detector.advance = advance  # type: ignore[method-assign]
    pipeline = make_pipeline(detector, sink, metrics, tick_seconds=0.02)
    pipeline.start()
    assert wait_until(lambda: len(calls) >= 3)
    assert pipeline.stop(timeout=2)
    assert calls == sorted(calls)
    assert [a.rule.id for a in sink.emitted] == ["closer"]
    assert sink.flushes >= 3


def test_timer_failure_is_logged_and_the_worker_survives(
    metrics: AgentMetrics, sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    detector = GatedDetector(blocking=False)

    def advance(now: float) -> list[Alert]:
        raise RuntimeError("timer bug")

    detector.advance = advance  # type: ignore[method-assign]
    pipeline = make_pipeline(detector, sink, metrics, tick_seconds=0.02)
    pipeline.start()
    pipeline.publish([event(7)], "test")
    assert wait_until(lambda: detector.seen == [7])
    assert pipeline.stop(timeout=2)
    assert "detection timers failed" in caplog.text


def test_call_in_worker_runs_on_the_detection_thread(
    metrics: AgentMetrics, sink: RecordingSink
) -> None:
    detector = GatedDetector(blocking=False)
    pipeline = make_pipeline(detector, sink, metrics)
    ran_on: list[str] = []
    pipeline.call_in_worker(lambda: ran_on.append(threading.current_thread().name))
    assert ran_on == [threading.current_thread().name]  # not started: runs inline
    pipeline.start()
    pipeline.call_in_worker(lambda: ran_on.append(threading.current_thread().name))

    def broken() -> None:
        raise RuntimeError("bad rule swap")

    pipeline.call_in_worker(broken)  # logged, the worker goes on
    pipeline.publish([event(1)], "test")
    assert wait_until(lambda: len(ran_on) == 2 and detector.seen == [1])
    assert pipeline.stop(timeout=2)
    assert ran_on[1] == "detection"
    assert detector.threads == {"detection"}


def test_publisher_binds_the_collector_name(metrics: AgentMetrics, sink: RecordingSink) -> None:
    pipeline = make_pipeline(GatedDetector(blocking=False), sink, metrics)
    publish = pipeline.publisher("host_metrics")
    assert publish([event(1)]) == 1
    assert value(metrics, "vedette_events_published_total", collector="host_metrics") == 1


def test_queue_depth_collector(metrics: AgentMetrics) -> None:
    failing = RecordingSink("es", failing=True)
    router = AlertRouter([failing], metrics)
    pipeline = Pipeline(GatedDetector(), router, metrics, queue_size=8)
    pipeline.publish([event(1), event(2), event(3)], "test")
    router.dispatch([make_alert()])
    registry = CollectorRegistry()
    registry.register(QueueDepthCollector(pipeline))
    assert registry.get_sample_value("vedette_queue_depth", {"queue": "events"}) == 3
    assert registry.get_sample_value("vedette_queue_capacity", {"queue": "events"}) == 8
    assert registry.get_sample_value("vedette_queue_depth", {"queue": "sink_es"}) == 1
    names = {s.name for f in registry.collect() for s in f.samples}
    assert names <= set(catalog())


def test_every_accepted_event_is_processed_or_counted_when_stopping_under_load(
    metrics: AgentMetrics, sink: RecordingSink
) -> None:
    detector = GatedDetector(blocking=False)
    pipeline = make_pipeline(detector, sink, metrics, queue_size=64, batch_size=8)
    pipeline.start()
    go = threading.Event()

    def produce(offset: int) -> None:
        go.wait(2)
        for n in range(offset, offset + 400):
            pipeline.publish([event(n)], "load")

    producers = [threading.Thread(target=produce, args=(i * 1000,)) for i in range(3)]
    for thread in producers:
        thread.start()
    go.set()
    time.sleep(0.005)
    assert pipeline.stop(timeout=2)
    for thread in producers:
        thread.join(2)
    published = value(metrics, "vedette_events_published_total", collector="load")
    processed = value(metrics, "vedette_events_processed_total", stage="detection")
    shutdown = value(metrics, "vedette_events_dropped_total", stage="queue", reason="shutdown")
    full = value(metrics, "vedette_events_dropped_total", stage="queue", reason="queue_full")
    assert published + shutdown + full == 1200  # every event offered is accounted for
    assert published == processed + pipeline.depth()  # accepted ones were all evaluated
