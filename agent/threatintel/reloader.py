"""Scheduled reload of the threat-intel feeds, as a polling collector.

The scheduler calls :meth:`ThreatIntelReloader.collect` every
``threat_intel.reload_interval_seconds``; when any feed file changed (size or mtime) the feeds
are parsed again and the new :class:`~agent.threatintel.feeds.IntelSet` replaces the old one
in a single attribute assignment, so the capture thread (which calls the reloader to get the
current set) never sees a half-built table. It returns no events.
"""

from __future__ import annotations

import logging
from pathlib import Path

from agent.events import Event
from agent.metrics import AgentMetrics
from agent.threatintel.feeds import IntelSet, load_feeds

log = logging.getLogger(__name__)

Signature = tuple[tuple[str, int, int], ...]


def _signature(paths: list[Path]) -> Signature:
    out = []
    for path in paths:
        try:
            st = path.stat()
            out.append((str(path), st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((str(path), -1, -1))
    return tuple(out)


class ThreatIntelReloader:
    name = "threat_intel"

    def __init__(
        self, files: list[Path], interval_seconds: float, metrics: AgentMetrics | None = None
    ) -> None:
        self.files = list(files)
        self.interval_seconds = interval_seconds
        self.metrics = metrics
        self.current: IntelSet | None = None
        self._signature: Signature | None = None
        self.collect()

    def __call__(self) -> IntelSet | None:
        return self.current

    def collect(self) -> list[Event]:
        signature = _signature(self.files)
        if signature == self._signature:
            return []
        self._signature = signature
        intel = load_feeds(self.files)
        failed = any(e.line == 0 for e in intel.errors)
        self.current = intel
        log.info("threat-intel feeds loaded",
                 extra={"networks": len(intel), "feeds": intel.feeds,
                        "skipped_lines": intel.error_count})
        if self.metrics is not None:
            self.metrics.threat_intel_reloads.labels("error" if failed else "ok").inc()
            for feed, count in intel.feeds.items():
                self.metrics.threat_intel_networks.labels(feed).set(count)
            if intel.error_count:
                self.metrics.input_errors.labels("threat_intel", "bad_line").inc(
                    intel.error_count)
        return []
