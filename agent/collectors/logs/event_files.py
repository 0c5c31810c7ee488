"""Follow JSON-lines files of ready-made events (ECS fields + logsource).

This is how other tools (or tests) feed events to the detection engine without a dedicated
collector: each line is ``{"@timestamp": …, "logsource": {"product": …}, <ECS fields>}``.
Malformed lines are counted in ``vedette_input_errors_total{source="event_file"}`` and skipped.
Positions are stored only once the pipeline acknowledged the events read before them
(:func:`~agent.collectors.base.publish_acked`).
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from pathlib import Path

from agent.collectors.base import AnyCollector, CollectorContext, Publish, publish_acked
from agent.collectors.logs.tailer import FileTailer, OffsetStore
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
        self._tailers = [FileTailer(p, offsets, remember=False) for p in paths]
        self._published: dict[str, tuple[int, int]] = {}
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
                moved = self._moved_positions()
                if (events or moved) and not publish_acked(
                    publish, events, functools.partial(self._acknowledged, moved),
                    self._offsets.save, stop,
                ):
                    break  # stopping: not acknowledged, read again after the restart
                stop.wait(self._interval)
        finally:
            for tailer in self._tailers:
                tailer.close()
            self._offsets.save()  # acknowledged positions only

    def _moved_positions(self) -> dict[str, tuple[int, int]]:
        moved: dict[str, tuple[int, int]] = {}
        for tailer in self._tailers:
            position = tailer.position()
            if position is not None and self._published.get(tailer.key) != position:
                moved[tailer.key] = position
        self._published.update(moved)
        return moved

    def _acknowledged(self, positions: dict[str, tuple[int, int]]) -> None:
        for key, (inode, offset) in positions.items():
            self._offsets.set(key, inode, offset)


def build(ctx: CollectorContext) -> list[AnyCollector]:
    """The ``inputs.event_files`` collector (nothing when no file is configured)."""
    section = ctx.config.inputs
    if not section.event_files:
        return []
    offsets = OffsetStore(
        ctx.state_dir / "offsets-event-files.json", on_problem=ctx.state_problem)
    return [
        EventFileCollector(
            section.event_files, offsets, ctx.metrics, section.event_files_interval_seconds
        )
    ]
