"""Fans alerts out to every configured sink, isolating sinks from each other."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable

from agent.alerts import Alert, Status
from agent.events import Event
from agent.metrics import AgentMetrics
from agent.sinks.base import EventSink, Sink

log = logging.getLogger(__name__)
MAX_TITLE = 200
"""Characters of a rule title kept in the `title` label of `vedette_rule_info`."""


class AlertRouter:
    """Delivers each alert to all sinks; a failing sink gets a bounded retry buffer."""

    def __init__(
        self, sinks: Iterable[Sink], metrics: AgentMetrics, retry_buffer: int = 10_000
    ) -> None:
        self._sinks = list(sinks)
        self._metrics = metrics
        self._retry_buffer = retry_buffer
        self._pending: dict[str, deque[Alert]] = {s.name: deque() for s in self._sinks}
        self._lock = threading.RLock()
        self._event_sinks = [
            s for s in self._sinks if isinstance(s, EventSink) and s.wants_events
        ]
        for sink in self._sinks:
            # A sink that raises alerts about itself (spool overflow, refused credentials)
            # gets them delivered to every sink, itself included.
            if hasattr(sink, "on_alert") and sink.on_alert is None:
                sink.on_alert = self._internal_alert

    def _internal_alert(self, alert: Alert) -> None:
        self.dispatch([alert])

    @property
    def ships_events(self) -> bool:
        return bool(self._event_sinks)

    def ship_events(self, events: list[Event]) -> None:
        """Offer raw events to the sinks that take them; a failure is counted, never raised."""
        for sink in self._event_sinks:
            try:
                for event in events:
                    sink.emit_event(event)
            except Exception as exc:
                self._metrics.sink_failures.labels(sink.name).inc()
                log.error("raw event shipping failed", extra={"sink": sink.name, "error": str(exc)})

    @property
    def sinks(self) -> list[Sink]:
        return list(self._sinks)

    def dispatch(self, alerts: Iterable[Alert]) -> None:
        with self._lock:
            for alert in alerts:
                if alert.status is Status.OPEN and alert.revision == 0:
                    self._metrics.alerts.labels(alert.rule.id, alert.rule.level).inc()
                    self._metrics.rule_info.labels(
                        alert.rule.id, alert.rule.title[:MAX_TITLE]).set(1)
                    self._metrics.last_alert.set(alert.first_seen)
                self._metrics.alert_updates.labels(str(alert.status)).inc()
                for sink in self._sinks:
                    pending = self._pending[sink.name]
                    if pending or not self._try(sink, alert):
                        self._enqueue(sink, alert)

    def flush(self) -> None:
        """Retry what failed before, then flush every sink."""
        with self._lock:
            for sink in self._sinks:
                pending = self._pending[sink.name]
                while pending and self._try(sink, pending[0]):
                    pending.popleft()
                try:
                    sink.flush()
                except Exception as exc:
                    self._metrics.sink_failures.labels(sink.name).inc()
                    log.error("sink flush failed", extra={"sink": sink.name, "error": str(exc)})

    def close(self) -> None:
        self.flush()
        with self._lock:
            for sink in self._sinks:
                left = len(self._pending[sink.name])
                if left:
                    self._metrics.sink_dropped.labels(sink.name).inc(left)
                    log.error(
                        "sink still failing at shutdown; alerts not delivered to it",
                        extra={"sink": sink.name, "alerts": left},
                    )
                try:
                    sink.close()
                except Exception as exc:
                    log.error("sink close failed", extra={"sink": sink.name, "error": str(exc)})

    def settled(self) -> bool:
        """No sink holds alerts in its retry buffer: everything dispatched so far was taken
        (and, after :meth:`flush`, made durable) by every sink."""
        with self._lock:
            return not any(self._pending.values())

    def pending(self, sink_name: str) -> int:
        return len(self._pending.get(sink_name, ()))

    def _try(self, sink: Sink, alert: Alert) -> bool:
        try:
            sink.emit(alert)
        except Exception as exc:
            self._metrics.sink_failures.labels(sink.name).inc()
            log.error("sink emit failed", extra={"sink": sink.name, "error": str(exc)})
            return False
        self._metrics.sink_deliveries.labels(sink.name).inc()
        return True

    def _enqueue(self, sink: Sink, alert: Alert) -> None:
        pending = self._pending[sink.name]
        if len(pending) >= self._retry_buffer:
            pending.popleft()
            self._metrics.sink_dropped.labels(sink.name).inc()
        pending.append(alert)
