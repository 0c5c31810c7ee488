"""The packet-capture collector: rings on every wanted interface → processor → pipeline.

One thread (``run``) polls every ring, decodes each handed-over block with the shared
:class:`~agent.netevents.processor.PacketProcessor` (the same one ``vedette replay`` uses) and
publishes the events. It also

* rescans interfaces every ``capture.rescan_seconds`` (new ones are opened, vanished ones closed);
* advances the processor with wall time, so aggregates of a quiet second still flush;
* exports the processor's counters and the kernel's PACKET_STATISTICS of every ring (packets,
  drops) to the metrics every second and at shutdown (after flushing the open second, before
  the rings close), so a short run shows them too; the final totals (kernel packets and drops
  per interface, packets decoded) are also logged at shutdown ("capture stopped"), as the last
  scrape may predate them;
* every ``capture.health_interval_seconds`` emits one ``vedette/capture_health`` event per
  interface with the interval's kernel counters, which the ``capture_degraded`` rule turns into
  a "network detection degraded" alert.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections import Counter
from collections.abc import Callable

from prometheus_client import Counter as PromCounter

from agent.capture.bpf import compile_filter
from agent.capture.interfaces import Interface, discover
from agent.capture.ring import Ring
from agent.collectors.base import Publish
from agent.config import CaptureSection, NetworkSection
from agent.events import Event
from agent.metrics import AgentMetrics
from agent.netdecode.layers import LINKTYPE_ETHERNET, NOT_IP
from agent.netevents.arp import default_gateways
from agent.netevents.processor import IntelSource, PacketProcessor
from agent.netevents.records import CAPTURE_HEALTH
from agent.netevents.summaries import ProcessorStats

log = logging.getLogger(__name__)

DEGRADED_RATIO = 0.01
EXPORT_SECONDS = 1.0
"""Processor counters (packets, TCP control, DNS, errors, budgets) and the kernel ring
statistics reach the metrics this often, and once more at shutdown."""
_POLL_MS = 100
_BROKEN = select.POLLERR | select.POLLHUP | select.POLLNVAL


class PacketCaptureCollector:
    name = "packet_capture"

    def __init__(
        self,
        capture: CaptureSection,
        network: NetworkSection,
        metrics: AgentMetrics,
        intel: IntelSource | None = None,
        host_name: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.capture = capture
        self.metrics = metrics
        self.host_name = host_name
        self._clock = clock
        self.processor = PacketProcessor(network, intel=intel, gateways=default_gateways())
        self.rings: dict[str, Ring] = {}
        self._programs = {
            LINKTYPE_ETHERNET: compile_filter(capture.bpf_filter, capture.snaplen, "EN10MB"),
        }
        self._warned: set[str] = set()
        self._seen = ProcessorStats()
        self._interval: dict[str, list[int]] = {}
        """Kernel (packets, drops, freezes) per interface since the last health event (the
        kernel resets its counters on every read)."""
        self._health_due = 0.0
        self._export_due = 0.0
        self._totals: dict[str, list[int]] = {}
        """Kernel (packets, drops) per interface since the collector started."""

    # ------------------------------------------------------------------ interfaces

    def _program(self, linktype: int) -> list[tuple[int, int, int, int]]:
        if linktype not in self._programs:
            self._programs[linktype] = compile_filter(
                self.capture.bpf_filter, self.capture.snaplen, "RAW"
            )
        return self._programs[linktype]

    def rescan(self) -> None:
        wanted, unsupported = discover(self.capture.interfaces, self.capture.exclude_interfaces)
        for name in unsupported:
            if name not in self._warned:
                self._warned.add(name)
                log.info("interface not captured: unsupported link type",
                         extra={"interface": name})
        names = {i.name for i in wanted}
        for name in list(self.rings):
            if name not in names:
                log.info("interface gone; capture closed", extra={"interface": name})
                self.rings.pop(name).close()
        for iface in wanted:
            if iface.name not in self.rings:
                self._open(iface)
        self.metrics.capture_interfaces.set(len(self.rings))

    def _drop(self, ring: Ring) -> None:
        log.info("capture closed: interface error", extra={"interface": ring.interface})
        if self.rings.get(ring.interface) is ring:
            del self.rings[ring.interface]
        ring.close()
        self.metrics.capture_interfaces.set(len(self.rings))

    def _open(self, iface: Interface) -> None:
        try:
            ring = Ring(iface.name, iface.linktype, self._program(iface.linktype),
                        self.capture.ring_block_bytes, self.capture.ring_blocks,
                        self.capture.block_timeout_ms)
        except OSError as exc:
            if iface.name not in self._warned:
                self._warned.add(iface.name)
                log.warning("cannot capture on interface",
                            extra={"interface": iface.name, "error": str(exc)})
            return
        self._warned.discard(iface.name)
        self.rings[iface.name] = ring
        log.info("capturing", extra={"interface": iface.name,
                                     "ring_mib": ring.block_bytes * ring.blocks >> 20})

    # ------------------------------------------------------------------ main loop

    def run(self, publish: Publish, stop: threading.Event) -> None:
        next_scan = 0.0
        self._health_due = self._clock() + self.capture.health_interval_seconds
        poller = select.poll()
        registered: dict[int, Ring] = {}
        try:
            while not stop.is_set():
                now = self._clock()
                if now >= next_scan:
                    self.rescan()
                    next_scan = now + self.capture.rescan_seconds
                    for fd in list(registered):
                        if registered[fd] not in self.rings.values():
                            poller.unregister(fd)
                            del registered[fd]
                    for ring in self.rings.values():
                        if ring.fileno() not in registered:
                            poller.register(ring.fileno(), select.POLLIN | select.POLLERR)
                            registered[ring.fileno()] = ring
                if not registered:
                    stop.wait(min(1.0, self.capture.rescan_seconds))
                    continue
                for fd, flags in poller.poll(_POLL_MS):
                    if flags & _BROKEN and fd in registered:
                        # The interface went away (ENETDOWN): close now rather than spin on
                        # POLLERR until the next rescan.
                        ring = registered.pop(fd)
                        poller.unregister(fd)
                        self._drop(ring)
                        next_scan = 0.0
                events: list[Event] = []
                for ring in list(self.rings.values()):
                    for batch in ring.ready_columns(max_blocks=8):
                        events.extend(self.processor.process_columns(batch, ring.interface))
                        if len(events) >= 4096:
                            publish(events)
                            events = []
                now = self._clock()
                events.extend(self.processor.advance(now))
                if now >= self._health_due:
                    events.extend(self.health())
                elif now >= self._export_due:
                    self._export_processor_stats()
                    self.export_ring_stats()
                    self._export_due = now + EXPORT_SECONDS
                if events:
                    publish(events)
        finally:
            try:
                self.export_ring_stats()  # what the kernel counted since the last export
            finally:
                for ring in self.rings.values():
                    ring.close()
                self.rings.clear()
            # What the last second saw: its aggregates, and every counter up to the end.
            try:
                tail = self.processor.flush()
                if tail:
                    publish(tail)
            finally:
                self._export_processor_stats()
                self._log_totals()

    def _log_totals(self) -> None:
        decoded = self.processor.stats.packets
        for name, (packets, drops) in sorted(self._totals.items()):
            log.info("capture stopped", extra={"interface": name, "ring_packets": packets,
                                               "ring_drops": drops, "decoded": decoded})
        if not self._totals:
            log.info("capture stopped", extra={"decoded": decoded})

    # ------------------------------------------------------------------ health and metrics

    def health(self) -> list[Event]:
        """Kernel counters → metrics and one capture_health event per interface."""
        now = self._clock()
        self._health_due = now + self.capture.health_interval_seconds
        over_budget = self.processor.stats.over_global_budget - self._seen.over_global_budget
        self._export_processor_stats()
        if over_budget:
            limit = self.processor.settings.max_events_per_second
            log.warning("capture event budget exhausted: probes were not analysed",
                        extra={"events": over_budget, "max_events_per_second": limit})
        out: list[Event] = []
        self.export_ring_stats()
        for name in self.rings:
            interval = self._interval.pop(name, None)
            if interval is None:
                continue
            packets, drops, freezes = interval
            m = self.metrics
            ratio = drops / packets if packets else 0.0
            m.capture_degraded.labels(name).set(1 if ratio >= DEGRADED_RATIO else 0)
            if drops:
                log.warning("capture ring dropped packets",
                            extra={"interface": name, "drops": drops, "packets": packets})
            fields: dict[str, object] = {
                "event.dataset": "network.capture_health",
                "observer.ingress.interface.name": name,
                "capture.packets": packets,
                "capture.drops": drops,
                "capture.drop_ratio": round(ratio, 4),
                "capture.freeze_drops": freezes,
                "capture.events_over_global_budget": over_budget,
            }
            if self.host_name:
                fields["host.name"] = self.host_name
            out.append(Event(now, CAPTURE_HEALTH, fields))
        return out

    def export_ring_stats(self) -> None:
        """Each ring's kernel counters since the last read → the metrics, and into the
        interval the next health event reports."""
        m = self.metrics
        for name, ring in self.rings.items():
            try:
                packets, drops, freezes = ring.statistics()
            except OSError:
                continue
            # unconditionally: an interface's series exist (at 0) from its first export, so
            # "no drops" reads as 0, not as no data (dashboards, absent() alerts)
            m.capture_ring_packets.labels(name).inc(packets)
            m.capture_ring_drops.labels(name).inc(drops)
            grand = self._totals.setdefault(name, [0, 0])
            grand[0] += packets
            grand[1] += drops
            total = self._interval.setdefault(name, [0, 0, 0])
            total[0] += packets
            total[1] += drops
            total[2] += freezes

    def _export_processor_stats(self) -> None:
        stats, seen, m = self.processor.stats, self._seen, self.metrics
        for key, (packets, nbytes) in stats.traffic.items():
            old = seen.traffic.get(key, [0, 0])
            if packets > old[0]:
                m.capture_packets.labels(*key).inc(packets - old[0])
                m.capture_bytes.labels(*key).inc(nbytes - old[1])
            seen.traffic[key] = [packets, nbytes]
        _increase(m.capture_tcp_control, stats.tcp_control, seen.tcp_control)
        if stats.dns_queries > seen.dns_queries:
            m.capture_dns_queries.inc(stats.dns_queries - seen.dns_queries)
            seen.dns_queries = stats.dns_queries
        _increase(m.capture_dns_responses, stats.dns_responses, seen.dns_responses)
        for reason, count in stats.errors.items():
            delta = count - seen.errors.get(reason, 0)
            if delta > 0:
                if reason == NOT_IP:
                    m.capture_packets.labels("other", "none").inc(delta)
                else:
                    m.input_errors.labels("capture", reason).inc(delta)
                seen.errors[reason] = count
        if stats.suppressed > seen.suppressed:
            global_part = stats.over_global_budget - seen.over_global_budget
            m.capture_events_over_budget.labels("global").inc(global_part)
            m.capture_events_over_budget.labels("per_key").inc(
                stats.suppressed - seen.suppressed - global_part)
            seen.suppressed = stats.suppressed
            seen.over_global_budget = stats.over_global_budget
        _increase(m.capture_table_overflows, stats.table_overflows, seen.table_overflows)
        _increase(m.capture_evasion, stats.evasion, seen.evasion)


def _increase(metric: PromCounter, now: Counter[str], seen: Counter[str]) -> None:
    """Add to a one-label counter what each label's count grew by since the last export."""
    for label, count in now.items():
        delta = count - seen[label]
        if delta > 0:
            metric.labels(label).inc(delta)
            seen[label] = count
