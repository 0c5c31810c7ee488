"""Collectors → bounded event queue → detection thread → alert router → sinks.

The queue is bounded and publishing never blocks: when it is full the event is dropped and
counted in ``vedette_events_dropped_total{stage="queue",reason="queue_full"}`` — a capture
thread must never stall behind detection. One worker thread owns the detector: it evaluates
events in batches, advances the detector's timers with wall-clock time every tick, flushes the
sinks, and runs control requests (rule swaps) between batches so the detector is never touched
by two threads.

End-to-end acknowledgement (the Filebeat-registry / Vector model) for replayable sources (log
files, the journal, event files): :meth:`Pipeline.publish_acked` queues a *block* — events and
an ``ack`` callback — as one item, waiting for room instead of dropping. The worker evaluates
blocks whole; at the next tick, after the sinks' flush and only when no sink holds alerts in
its retry buffer, it first writes the detection checkpoint (``checkpoint``: open alerts, so
that a restart continues them) and then calls the acks of every block evaluated since, in
order, then each distinct ``commit`` once (the source writes its acknowledged positions). A
crash before that re-reads those blocks after the restart: at least once, never lost.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from agent.alerts import Alert
from agent.events import Event
from agent.metrics import AgentMetrics
from agent.sinks.router import AlertRouter

log = logging.getLogger(__name__)

_SAMPLE_EVERY = 64  # time one event in 64 for the detection-latency histogram
CHECKPOINT_SHARE = 10.0
"""A checkpoint that took *d* seconds is written again only after ``CHECKPOINT_SHARE`` times *d*:
the detection thread spends at most a tenth of its time on checkpoints (acknowledgements wait)."""


@dataclass(slots=True)
class _Block:
    """Events of a replayable source and the acknowledgement of their position."""

    events: list[Event]
    ack: Callable[[], None]
    commit: Callable[[], None] | None


class _Publisher:
    """``publish`` for one collector, with the acknowledging path (``acked``) beside it."""

    def __init__(self, pipeline: Pipeline, collector: str) -> None:
        self._pipeline = pipeline
        self._collector = collector

    def __call__(self, events: Iterable[Event]) -> int:
        return self._pipeline.publish(events, self._collector)

    def acked(self, events: list[Event], ack: Callable[[], None],
              commit: Callable[[], None] | None, stop: threading.Event) -> bool:
        return self._pipeline.publish_acked(events, self._collector, ack, commit, stop)


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
        checkpoint: Callable[[], None] | None = None,
    ) -> None:
        self.detector = detector
        self.router = router
        self._metrics = metrics
        self._queue: queue.Queue[Event | _Block] = queue.Queue(maxsize=queue_size)
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
        self.checkpoint = checkpoint
        self._unacked: list[_Block] = []  # evaluated, waiting for the sinks and the checkpoint
        self._commits: dict[Callable[[], None], None] = {}  # acknowledged, positions not saved
        self._changed = False  # alerts dispatched since the last checkpoint (state changed)
        self._checkpointed = 0.0  # monotonic time of the last checkpoint, and what it took
        self._cost = 0.0
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
        return _Publisher(self, collector)

    def publish_acked(self, events: list[Event], collector: str, ack: Callable[[], None],
                      commit: Callable[[], None] | None, stop: threading.Event) -> bool:
        """Queue a block from a replayable source; waits while the queue is more than half
        full (back-pressure: the source reads on later, nothing is dropped). False when the
        pipeline or ``stop`` stopped first: the block is not acknowledged."""
        block = _Block(list(events), ack, commit)
        room = max(1, self._capacity // 2)
        while True:
            with self._gate:
                if self._stop.is_set():
                    return False
                if self._queue.qsize() < room:
                    try:
                        self._queue.put_nowait(block)
                    except queue.Full:
                        pass
                    else:
                        if block.events:
                            self._metrics.events_published.labels(collector).inc(
                                len(block.events))
                        return True
            if stop.wait(0.05):
                return False

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
                self._acknowledge()
                next_tick = now + self._tick
            if self._stop.is_set():
                with self._gate:
                    done = self._queue.empty()
                if done:
                    self._advance(self._clock())
                    self.router.flush()
                    self._acknowledge(final=True)
                    return

    def _acknowledge(self, final: bool = False) -> None:
        """After a flush: checkpoint, then acknowledge the blocks evaluated since the last one,
        in order — unless a sink still holds alerts in its retry buffer (not yet durable) —
        then save the acknowledged positions (those whose save failed before, too)."""
        if (self._unacked or self._changed) and self.router.settled():
            self._checkpoint_and_ack(final)
        if self._commits:
            self._save_positions()

    def _checkpoint_and_ack(self, final: bool) -> None:
        if self.checkpoint is not None:
            started = time.monotonic()
            if not final and started - self._checkpointed < CHECKPOINT_SHARE * self._cost:
                return  # a large checkpoint: written less often than every tick
            try:
                self.checkpoint()
            except OSError as exc:  # EIO, ENOSPC, EROFS: try again next tick
                self._metrics.state_write_failures.labels("checkpoint").inc()
                log.error("detection checkpoint not written (%s); source positions stay "
                          "where they are until it is", exc.strerror or exc)
                return
            except Exception:
                self._metrics.state_write_failures.labels("checkpoint").inc()
                log.exception("detection checkpoint failed; positions not acknowledged")
                return
            self._checkpointed = time.monotonic()
            self._cost = self._checkpointed - started
        self._changed = False
        blocks, self._unacked = self._unacked, []
        for block in blocks:
            try:
                block.ack()
            except Exception:
                log.exception("acknowledging a source position failed")
            if block.commit is not None:
                self._commits[block.commit] = None

    def _save_positions(self) -> None:
        """Each source writes its acknowledged positions once; a failed write (EIO, ENOSPC)
        is counted and tried again at the next tick, so the positions on disk catch up when
        the disk recovers (until then a restart re-reads: at least once)."""
        commits, self._commits = self._commits, {}
        for commit in commits:
            try:
                commit()
            except Exception as exc:
                self._commits[commit] = None
                self._metrics.state_write_failures.labels("positions").inc()
                if isinstance(exc, OSError):
                    log.error("acknowledged source positions not saved (%s); retried next "
                              "tick", exc.strerror or exc)
                else:
                    log.exception("saving acknowledged source positions failed")

    def _take(self, n: int, wait: float) -> Iterator[Event | _Block]:
        try:
            yield self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
        except queue.Empty:
            return
        for _ in range(n - 1):
            try:
                yield self._queue.get_nowait()
            except queue.Empty:
                return

    def _evaluate(self, items: list[Event | _Block]) -> None:
        batch: list[Event] = []
        for item in items:
            if type(item) is _Block:
                batch.extend(item.events)
                self._unacked.append(item)
            else:
                batch.append(item)  # type: ignore[arg-type]
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
                self._changed = True
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
            self._changed = True
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
