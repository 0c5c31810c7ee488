"""Follow JSON-lines files of ready-made events (ECS fields + logsource).

This is how other tools (or tests) feed events to the detection engine without a dedicated
collector: each line is ``{"@timestamp": …, "logsource": {"product": …}, <ECS fields>}``.
Malformed lines are counted in ``vedette_input_errors_total{source="event_file"}`` and skipped.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from agent.collectors.base import Publish
from agent.collectors.tail import FileTailer, OffsetStore
from agent.events import Event
from agent.metrics import AgentMetrics

log = logging.getLogger(__name__)


class EventFileCollector:
    name = "event_files"

    def __init__(
        self,
        paths: list[Path],
        offsets: OffsetStore,
        metrics: AgentMetrics,
        interval_seconds: float = 1.0,
    ) -> None:
        self._tailers = [FileTailer(p, offsets) for p in paths]
        self._offsets = offsets
        self._metrics = metrics
        self._interval = interval_seconds

    def poll(self) -> list[Event]:
        events: list[Event] = []
        for tailer in self._tailers:
            result = tailer.read()
            for lineno, raw in enumerate(result.lines, 1):
                if not raw.strip():
                    continue
                try:
                    events.append(Event.from_dict(json.loads(raw)))
                except (ValueError, TypeError, RecursionError) as exc:
                    self._metrics.input_errors.labels("event_file", "malformed").inc()
                    log.warning(
                        "malformed event line skipped",
                        extra={"file": str(tailer.path), "line_in_batch": lineno,
                               "reason": str(exc)[:200]},
                    )
        return events

    def run(self, publish: Publish, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                events = self.poll()
                if events:
                    publish(events)
                self._offsets.save()
                stop.wait(self._interval)
        finally:
            for tailer in self._tailers:
                tailer.close()
            self._offsets.save()
