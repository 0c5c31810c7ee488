"""Which collectors the daemon runs: one builder per collector, chosen by config.

A builder returns the collector(s) for its config section, or an empty list when disabled. It
raises :class:`~agent.errors.CollectorError` when the collector cannot run here (no privilege,
no interface); the daemon then logs one clear warning, marks
``vedette_collector_degraded{collector}`` and keeps every other collector running.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.capture.builder import NETWORK_BUILDERS
from agent.collectors.base import PollingCollector, StreamingCollector
from agent.collectors.event_files import EventFileCollector
from agent.collectors.host import HostMetricsCollector
from agent.collectors.host_builders import HOST_BUILDERS
from agent.collectors.tail import OffsetStore
from agent.config import Config
from agent.identity import Identity
from agent.metrics import AgentMetrics

AnyCollector = PollingCollector | StreamingCollector


@dataclass(frozen=True)
class CollectorContext:
    config: Config
    identity: Identity
    metrics: AgentMetrics
    state_dir: Path

    def offsets(self, name: str) -> OffsetStore:
        """The positions file ``NAME`` in the state dir; a damaged one is counted in
        ``vedette_checkpoint_problems_total`` (its files are then read from their start)."""
        return OffsetStore(self.state_dir / name, on_problem=self._count_problem)

    def _count_problem(self, reason: str) -> None:
        self.metrics.checkpoint_problems.labels(reason=reason).inc()


Builder = Callable[[CollectorContext], list[AnyCollector]]


def _host_metrics(ctx: CollectorContext) -> list[AnyCollector]:
    section = ctx.config.host_metrics
    if not section.enabled:
        return []
    return [
        HostMetricsCollector(
            interval_seconds=section.interval_seconds,
            exclude_interfaces=section.exclude_interfaces,
            exclude_fstypes=section.exclude_fstypes,
            host_name=ctx.identity.host_name,
        )
    ]


def _event_files(ctx: CollectorContext) -> list[AnyCollector]:
    section = ctx.config.inputs
    if not section.event_files:
        return []
    offsets = ctx.offsets("offsets-event-files.json")
    return [
        EventFileCollector(
            section.event_files, offsets, ctx.metrics, section.event_files_interval_seconds
        )
    ]


BUILDERS: dict[str, Builder] = {
    "host_metrics": _host_metrics,
    "event_files": _event_files,
}
# Host collectors (process, sockets, auth_logs, web_logs, auditd, fim, kernel_modules)
BUILDERS.update(HOST_BUILDERS)
BUILDERS.update(NETWORK_BUILDERS)
