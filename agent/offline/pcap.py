"""Capture files as event streams: the ``pcap``/``pcapng`` input of ``vedette replay`` and of rule
fixtures (registered in :mod:`agent.offline.inputs`).

:func:`pcap_events` runs a pcap/pcapng file through the same
:class:`~agent.netevents.processor.PacketProcessor` live capture uses; the replay's counters
are on the :class:`PcapEvents` that produced the events (``.stats``), never in module state.
A fixture input may carry settings in a ``<file>.network.yml`` sidecar (:func:`fixture_config`:
``network:`` and ``threat_intel:`` sections as in the agent config; relative feed paths resolve
against the fixture's folder).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from agent.config import Config
from agent.events import Event
from agent.netdecode.pcapfile import CaptureFormatError, CaptureReader
from agent.netevents.processor import PacketProcessor
from agent.netevents.records import CAPTURE_HEALTH
from agent.netevents.summaries import ProcessorStats
from agent.threatintel.feeds import load_feeds

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes total) as the input is read."""

SIDECAR_SUFFIX = ".network.yml"


@dataclass
class PcapStats:
    """What one replay of a capture file saw (the replay summary reads it from the
    :class:`PcapEvents` that produced the events; no module state)."""

    processor: ProcessorStats = field(default_factory=ProcessorStats)
    truncated_records: int = 0
    bad_timestamps: int = 0
    """Records dropped for an implausible timestamp (pcapng ``if_tsresol`` abuse)."""
    error: str | None = None
    """Why the read stopped early (a corrupt record): the events before it were kept."""


class PcapEvents(Iterator[Event]):
    """Events of a pcap/pcapng file, through the same processor live capture uses.

    Iterate it for the events; :attr:`stats` holds the counters once it is exhausted. A corrupt
    record ends the read: what came before it is flushed and kept, the reason is in
    ``stats.error`` (the caller reports it; nothing is raised mid-stream, so the alerts of the
    good part survive). Every ``capture.health_interval_seconds`` of packet time in which
    events were refused by the overall budget, a ``capture_health`` event says so — what the
    live collector reports — so ``capture_budget_exhausted`` fires in replay too.
    """

    def __init__(self, path: Path, config: Config, progress: Progress | None = None) -> None:
        self.path = path
        self.config = config
        self.progress = progress
        self.stats = PcapStats()
        self._events = self._run()

    def __iter__(self) -> PcapEvents:
        return self

    def __next__(self) -> Event:
        return next(self._events)

    def _run(self) -> Iterator[Event]:
        config, path, progress = self.config, self.path, self.progress
        intel_files = list(config.threat_intel.files)
        intel = load_feeds(intel_files) if intel_files else None
        processor = PacketProcessor(config.network, intel=(lambda: intel) if intel else None)
        self.stats.processor = processor.stats
        health = _Health(processor.stats, config.capture.health_interval_seconds)
        with CaptureReader(path) as reader:
            try:
                for batch in reader.columns(32768):
                    yield from processor.process_columns(batch)
                    if len(batch):
                        yield from health.check(float(batch.timestamps.max()))
                    if progress is not None:
                        progress(reader.position, reader.bytes_total)
            except CaptureFormatError as exc:
                self.stats.error = str(exc)
                log.warning("capture file corrupt; events before it kept",
                            extra={"file": str(path), "error": str(exc)})
            yield from processor.flush()
            yield from health.check(math.inf)
            self.stats.truncated_records = reader.truncated_records
            self.stats.bad_timestamps = reader.bad_timestamps
            if reader.truncated_records:
                log.warning("capture file ends with a truncated record", extra={"file": str(path)})


class _Health:
    """``capture_health`` events of a replay: one per interval with over-budget refusals."""

    def __init__(self, stats: ProcessorStats, interval: float) -> None:
        self.stats = stats
        self.interval = interval
        self.due = -math.inf
        self.packets = 0
        self.over = 0
        self.last_ts = 0.0

    def check(self, ts: float) -> list[Event]:
        if ts < self.due:
            self.last_ts = ts
            return []
        out: list[Event] = []
        over = self.stats.over_global_budget - self.over
        if over and self.due > -math.inf:
            at = ts if ts != math.inf else self.last_ts
            out.append(Event(at, CAPTURE_HEALTH, {
                "event.dataset": "network.capture_health",
                "capture.packets": self.stats.packets - self.packets,
                "capture.drops": 0,
                "capture.drop_ratio": 0.0,
                "capture.freeze_drops": 0,
                "capture.events_over_global_budget": over,
            }))
            self.over = self.stats.over_global_budget
            self.packets = self.stats.packets
        if ts != math.inf:
            self.due = (ts // self.interval + 1) * self.interval
            self.last_ts = ts
        return out


def pcap_events(path: Path, config: Config, progress: Progress | None = None) -> PcapEvents:
    """Events of a pcap/pcapng file (see :class:`PcapEvents`)."""
    return PcapEvents(path, config, progress)


def fixture_config(path: Path) -> Config:
    """A fixture input's settings: the defaults, overridden by an optional
    ``<file>.network.yml`` sidecar."""
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    if not sidecar.exists():
        return Config()
    data = yaml.safe_load(sidecar.read_text(encoding="utf-8")) or {}
    intel = dict(data.get("threat_intel") or {})
    intel["files"] = [str(path.parent / f) for f in intel.get("files", [])]
    return Config.model_validate({"network": data.get("network") or {}, "threat_intel": intel})
