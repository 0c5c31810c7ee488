"""Per-second event budgets of the packet path.

Per-packet events (TCP control packets, ICMP probes and errors, DNS messages, ARP packets)
are what the rules read one by one; their rate must stay bounded whatever the packet rate.
Each second, at most ``max_events_per_destination`` control-packet events toward one
(address, port), ``max_events_per_source`` from one address, ``max_dns_events_per_client``
about one DNS client, ``max_arp_events_per_mac`` from one ARP sender, and
``max_events_per_second`` in all. Every refusal is counted in ``stats.suppressed``; refusals
by the overall budget also in ``stats.over_global_budget`` (detection was blind, not thinned).
"""

from __future__ import annotations

from agent.config import NetworkSection
from agent.netevents.summaries import ProcessorStats


class Budgets:
    """What may still be made this second; :meth:`reset` when a second begins."""

    def __init__(self, settings: NetworkSection, stats: ProcessorStats) -> None:
        self.stats = stats
        self.max_destination = settings.max_events_per_destination
        self.max_source = settings.max_events_per_source
        self.max_total = settings.max_events_per_second
        self.max_keys = settings.max_tracked_keys
        self.emitted = 0
        self._destinations: dict[tuple[bytes, int], int] = {}
        self._sources: dict[bytes, int] = {}
        self._aux: dict[bytes, int] = {}

    def reset(self) -> None:
        self.emitted = 0
        self._destinations = {}
        self._sources = {}
        self._aux = {}

    def global_spent(self) -> bool:
        return self.emitted >= self.max_total

    def destination_spent(self, dst: bytes, port: int) -> bool:
        return self._destinations.get((dst, port), 0) >= self.max_destination

    def source_spent(self, src: bytes) -> bool:
        return self._sources.get(src, 0) >= self.max_source

    def aux_spent(self, key: bytes, limit: int) -> bool:
        return self._aux.get(key, 0) >= limit

    def admit(self, src: bytes, dst: bytes, port: int) -> bool:
        """Spend one unit of the per-destination, per-source and global budgets."""
        if self.emitted >= self.max_total:
            self.stats.suppressed += 1
            self.stats.over_global_budget += 1
            return False
        dkey = (dst, port)
        d = self._destinations.get(dkey, 0)
        s = self._sources.get(src, 0)
        if d >= self.max_destination or s >= self.max_source:
            self.stats.suppressed += 1
            return False
        if d or len(self._destinations) < self.max_keys:
            self._destinations[dkey] = d + 1
        if s or len(self._sources) < self.max_keys:
            self._sources[src] = s + 1
        self.emitted += 1
        return True

    def admit_aux(self, key: bytes, limit: int) -> bool:
        """Budget of DNS clients and ARP senders (their own table, same global cap)."""
        if self.emitted >= self.max_total:
            self.stats.suppressed += 1
            self.stats.over_global_budget += 1
            return False
        c = self._aux.get(key, 0)
        if c >= limit:
            self.stats.suppressed += 1
            return False
        if c or len(self._aux) < self.max_keys:
            self._aux[key] = c + 1
        self.emitted += 1
        return True
