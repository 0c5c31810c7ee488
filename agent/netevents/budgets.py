"""Per-second event budgets of the packet path, fair under floods.

Per-packet events (TCP control packets, ICMP probes and errors, DNS messages, ARP packets)
are what the rules read one by one; their rate must stay bounded whatever the packet rate.
Each second, at most ``max_events_per_destination`` control-packet events toward one
(address, port), ``max_events_per_source`` from one address, ``max_dns_events_per_client``
about one DNS client, ``max_arp_events_per_mac`` from one ARP sender.

``max_events_per_second`` bounds each class of them, and is shared out so that one flood cannot
spend it for everyone (a first-come budget let a spoofed SYN flood to random ports hide a scan):

* **per class**: control packets (TCP, ICMP, evasion events) and DNS/ARP each have a budget
  of their own of that size — a SYN flood cannot silence DNS tunnel detection, nor a DNS flood
  the scans;
* **per source**, within the control class: a source's first attempt of the second draws on
  the *new sources* pool (:data:`NEW_SOURCE_SHARE` of the class), its later attempts on the
  *known sources* pool. A spoofed flood is all first attempts: it spends the new-sources pool
  and nothing else, while a scanner — one source, many probes — keeps drawing on the other.
  Attempts are counted in a two-row count-min sketch of 2^20 slots each (2 MiB, cleared every
  second), so a flood from millions of addresses cannot overflow it; a flood packet passes for
  a known source only when both its slots were hit before (about 0.3 % of packets at 50 k
  spoofed sources per second);
* the heaviest hitters are sampled: a source still gets at most ``max_events_per_source``.

The per-key budgets are checked first, the class pools after (a packet the per-key budgets
refuse never spends or counts against a pool). Every refusal is counted in
``stats.suppressed``; refusals by a class pool also in
``stats.over_global_budget`` (detection was blind for someone, not thinned) and, by pool, in
``stats.over_budget_pools`` (``new_sources``, ``known_sources``, ``dns_arp``).
"""

from __future__ import annotations

from typing import Final

from agent.config import NetworkSection
from agent.netevents.summaries import ProcessorStats

NEW_SOURCE_SHARE: Final = 0.25
SKETCH_BITS: Final = 20
_MASK: Final = (1 << SKETCH_BITS) - 1


class Budgets:
    """What may still be made this second; :meth:`reset` when a second begins."""

    def __init__(self, settings: NetworkSection, stats: ProcessorStats) -> None:
        self.stats = stats
        self.max_destination = settings.max_events_per_destination
        self.max_source = settings.max_events_per_source
        self.max_total = settings.max_events_per_second
        self.max_new = max(1, int(self.max_total * NEW_SOURCE_SHARE))
        self.max_known = max(1, self.max_total - self.max_new)
        self.max_aux = self.max_total
        self.max_keys = settings.max_tracked_keys
        self.emitted = 0
        self.new = 0
        self.known = 0
        self.aux = 0
        self._row1 = bytearray(1 << SKETCH_BITS)
        self._row2 = bytearray(1 << SKETCH_BITS)
        self._dirty = False
        self._destinations: dict[tuple[bytes, int], int] = {}
        self._sources: dict[bytes, int] = {}
        self._aux: dict[bytes, int] = {}

    def reset(self) -> None:
        self.emitted = self.new = self.known = self.aux = 0
        if self._dirty:
            self._row1 = bytearray(1 << SKETCH_BITS)
            self._row2 = bytearray(1 << SKETCH_BITS)
            self._dirty = False
        self._destinations = {}
        self._sources = {}
        self._aux = {}

    def global_spent(self) -> bool:
        """Whether every class pool is spent (nothing more can be emitted this second)."""
        return (self.new >= self.max_new and self.known >= self.max_known
                and self.aux >= self.max_aux)

    def _seen(self, src: bytes) -> bool:
        """Count an attempt of ``src``; whether it attempted before this second."""
        h = hash(src)
        i, j = h & _MASK, (h >> SKETCH_BITS) & _MASK
        row1, row2 = self._row1, self._row2
        a, b = row1[i], row2[j]
        if a < 255:
            row1[i] = a + 1
        if b < 255:
            row2[j] = b + 1
        self._dirty = True
        return a > 0 and b > 0

    def _refuse(self, pool: str) -> bool:
        stats = self.stats
        stats.suppressed += 1
        stats.over_global_budget += 1
        stats.over_budget_pools[pool] += 1
        return False

    def destination_spent(self, dst: bytes, port: int) -> bool:
        return self._destinations.get((dst, port), 0) >= self.max_destination

    def source_spent(self, src: bytes) -> bool:
        return self._sources.get(src, 0) >= self.max_source

    def aux_spent(self, key: bytes, limit: int) -> bool:
        return self._aux.get(key, 0) >= limit

    def admit(self, src: bytes, dst: bytes, port: int) -> bool:
        """One control-packet event from ``src`` toward (``dst``, ``port``)?

        The per-key budgets are checked first: what they refuse is a flood thinned out by
        design and never touches the class pools (nor the sketch)."""
        dkey = (dst, port)
        d = self._destinations.get(dkey, 0)
        s = self._sources.get(src, 0)
        if d >= self.max_destination or s >= self.max_source:
            self.stats.suppressed += 1
            return False
        h = hash(src)  # self._seen(src), inline: this runs for every control packet
        i, j = h & _MASK, (h >> SKETCH_BITS) & _MASK
        row1, row2 = self._row1, self._row2
        a, b = row1[i], row2[j]
        if a < 255:
            row1[i] = a + 1
        if b < 255:
            row2[j] = b + 1
        self._dirty = True
        if a and b:
            if self.known >= self.max_known:
                return self._refuse("known_sources")
            self.known += 1
        else:
            if self.new >= self.max_new:
                return self._refuse("new_sources")
            self.new += 1
        if d or len(self._destinations) < self.max_keys:
            self._destinations[dkey] = d + 1
        if s or len(self._sources) < self.max_keys:
            self._sources[src] = s + 1
        self.emitted += 1
        return True

    def admit_aux(self, key: bytes, limit: int) -> bool:
        """Budget of DNS clients and ARP senders (their own table and class pool)."""
        c = self._aux.get(key, 0)
        if c >= limit:
            self.stats.suppressed += 1
            return False
        if self.aux >= self.max_aux:
            return self._refuse("dns_arp")
        if c or len(self._aux) < self.max_keys:
            self._aux[key] = c + 1
        self.aux += 1
        self.emitted += 1
        return True
