"""Collectors → bounded event queue → detection thread → alert router → sinks.

The queue is bounded and publishing never blocks: when it is full the event is dropped and
counted in ``vedette_events_dropped_total{stage="queue",reason="queue_full"}`` — a capture
thread must never stall behind detection. One worker thread owns the detector: it evaluates
events in batches, advances the detector's timers with wall-clock time every tick, flushes the
sinks, and runs control requests (rule swaps) between batches so the detector is never touched
by two threads.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from agent.alerts import Alert
from agent.events import Event
from agent.metrics import AgentMetrics
from agent.sinks.router import AlertRouter

log = logging.getLogger(__name__)

_SAMPLE_EVERY = 64  # time one event in 64 for the detection-latency histogram


class Detector(Protocol):
    def process(self, event: Event) -> list[Alert]: ...

    def advance(self, now: float) -> list[Alert]: ...


class Pipeline:
    def __init__(
        self,
        detector: Detector,
        router: AlertRouter,
        metrics: AgentMetrics,
        queue_size: int = 65_536,
        batch_size: int = 512,
        tick_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.detector = detector
        self.router = router
        self._metrics = metrics
        self._queue: queue.Queue[Event] = queue.Queue(maxsize=queue_size)
        self._capacity = queue_size
        self._batch_size = batch_size
        self._tick = tick_seconds
        self._clock = clock
        self._control: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._gate = threading.Lock()
        self._thread: threading.Thread | None = None
        self._processed = metrics.events_processed.labels("detection")
        self._dropped_full = metrics.events_dropped.labels("queue", "queue_full")
        self._dropped_stopped = metrics.events_dropped.labels("queue", "shutdown")
        self._seen = 0
        self.heartbeat = time.monotonic()  # last loop of the detection thread (watchdog)

    # ------------------------------------------------------------------ producers (any thread)

    def publish(self, events: Iterable[Event], collector: str) -> int:
        """Queue events without blocking; returns how many were accepted."""
        accepted = dropped = 0
        put = self._queue.put_nowait
        with self._gate:  # the worker's final "queue empty" check cannot interleave
            if self._stop.is_set():
                n = sum(1 for _ in events)
                self._dropped_stopped.inc(n)
                return 0
            for event in events:
                try:
                    put(event)
                    accepted += 1
                except queue.Full:
                    dropped += 1
        if accepted:
            self._metrics.events_published.labels(collector).inc(accepted)
        if dropped:
            self._dropped_full.inc(dropped)
        return accepted

    def publisher(self, collector: str) -> Callable[[Iterable[Event]], int]:
        return lambda events: self.publish(events, collector)

    def call_in_worker(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the detection thread between batches (e.g. swap the rule set)."""
        if self._thread is None or not self._thread.is_alive():
            fn()
        else:
            self._control.put(fn)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="detection", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 8.0) -> bool:
        """Stop accepting events, drain what is queued, flush sinks. False if it timed out."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                left = self._queue.qsize()
                self._dropped_stopped.inc(left)
                log.error("detection did not drain in time", extra={"events_left": left})
                return False
        return True

    def healthy(self, max_silence: float) -> bool:
        """The detection thread is alive and looped within ``max_silence`` seconds."""
        alive = self._thread is not None and self._thread.is_alive()
        return alive and time.monotonic() - self.heartbeat < max_silence

    def depth(self) -> int:
        return self._queue.qsize()

    # ------------------------------------------------------------------ worker

    def _work(self) -> None:
        next_tick = self._clock() + self._tick
        while True:
            self.heartbeat = time.monotonic()
            batch = list(self._take(self._batch_size, max(0.0, next_tick - self._clock())))
            # requests posted while waiting (a rule swap after SIGHUP) apply to this batch
            while not self._control.empty():
                self._run_control(self._control.get_nowait())
            if batch:
                self._evaluate(batch)
            now = self._clock()
            if now >= next_tick or (self._stop.is_set() and not batch):
                self._advance(now)
                self.router.flush()
                next_tick = now + self._tick
            if self._stop.is_set():
                with self._gate:
                    done = self._queue.empty()
                if done:
                    self._advance(self._clock())
                    self.router.flush()
                    return

    def _take(self, n: int, wait: float) -> Iterator[Event]:
        try:
            yield self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
        except queue.Empty:
            return
        for _ in range(n - 1):
            try:
                yield self._queue.get_nowait()
            except queue.Empty:
                return

    def _evaluate(self, batch: list[Event]) -> None:
        process = self.detector.process
        for event in batch:
            self._seen += 1
            try:
                if self._seen % _SAMPLE_EVERY == 0:
                    started = time.perf_counter()
                    alerts = process(event)
                    self._metrics.detection_seconds.observe(time.perf_counter() - started)
                else:
                    alerts = process(event)
            except Exception:
                self._metrics.events_dropped.labels("detection", "error").inc()
                log.exception("detection failed on an event")
                continue
            if alerts:
                self.router.dispatch(alerts)
        self._processed.inc(len(batch))
        if self.router.ships_events:
            self.router.ship_events(batch)

    def _advance(self, now: float) -> None:
        try:
            alerts = self.detector.advance(now)
        except Exception:
            log.exception("detection timers failed")
            return
        if alerts:
            self.router.dispatch(alerts)

    def _run_control(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            log.exception("control request failed in the detection thread")


class QueueDepthCollector(Collector):
    """Scrape-time ``vedette_queue_depth``/``vedette_queue_capacity`` for the pipeline and sinks."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "vedette_queue_depth", "Items waiting in a pipeline queue.", labels=["queue"]
        )
        capacity = GaugeMetricFamily(
            "vedette_queue_capacity", "Capacity of a pipeline queue.", labels=["queue"]
        )
        depth.add_metric(["events"], self._pipeline.depth())
        capacity.add_metric(["events"], self._pipeline._capacity)
        for sink in self._pipeline.router.sinks:
            depth.add_metric([f"sink_{sink.name}"], self._pipeline.router.pending(sink.name))
        yield depth
        yield capacity
