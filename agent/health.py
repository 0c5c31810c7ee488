"""What ``/healthz`` answers: the reasons the agent is not fully watching, or none.

Read from the agent's own metrics (the public ``collect()`` of each metric), so that the health
endpoint and Prometheus can never disagree:

* no rules loaded (``vedette_rules_loaded`` sums to 0);
* a collector is degraded or failed to start (``vedette_collector_degraded == 1``);
* a collector raised errors in the last ``window`` seconds (``vedette_collector_errors_total``);
* the event queue dropped events in the last ``window`` seconds
  (``vedette_events_dropped_total{stage="queue"}``);
* the Elasticsearch spool refused or evicted records for lack of room in the last ``window``
  seconds (``vedette_es_spool_dropped_total{reason="overflow"}``).

"Recently" needs a memory of the counters: :meth:`Health.sample` records their totals (the
daemon calls it every second; :meth:`reasons` calls it too) and when each last grew.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client.metrics import MetricWrapperBase

from agent.metrics import AgentMetrics

DEFAULT_WINDOW_SECONDS = 60.0


def _samples(metric: MetricWrapperBase, suffix: str = "") -> Iterator[tuple[dict[str, str], float]]:
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith(suffix):
                yield sample.labels, float(sample.value)


class Health:
    def __init__(
        self,
        metrics: AgentMetrics,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._window = window_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._totals: dict[str, float] = {}
        self._grew_at: dict[str, float] = {}

    def _counters(self) -> dict[str, float]:
        m = self._metrics
        out: dict[str, float] = {}
        for labels, value in _samples(m.collector_errors, "_total"):
            key = f"collector {labels.get('collector', '?')} raised errors"
            out[key] = out.get(key, 0.0) + value
        out["the event queue is dropping events"] = sum(
            v for labels, v in _samples(m.events_dropped, "_total")
            if labels.get("stage") == "queue")
        out["the Elasticsearch spool is refusing records (full)"] = sum(
            v for labels, v in _samples(m.es_spool_dropped, "_total")
            if labels.get("reason") == "overflow")
        return out

    def sample(self) -> None:
        now = self._clock()
        current = self._counters()
        with self._lock:
            for key, value in current.items():
                if value > self._totals.get(key, 0.0):
                    self._grew_at[key] = now
                self._totals[key] = value

    def reasons(self) -> list[str]:
        """Every reason the agent is unhealthy right now; empty when healthy."""
        self.sample()
        out: list[str] = []
        if sum(v for _, v in _samples(self._metrics.rules_loaded)) == 0:
            out.append("no rules loaded")
        for labels, value in sorted(_samples(self._metrics.collector_degraded),
                                    key=lambda s: sorted(s[0].items())):
            if value >= 1:
                out.append(f"collector {labels.get('collector', '?')} is degraded or failed "
                           "to start")
        now = self._clock()
        with self._lock:
            recent = sorted(k for k, t in self._grew_at.items() if now - t < self._window)
        out.extend(f"{key} in the last {self._window:.0f} s" for key in recent)
        return out
