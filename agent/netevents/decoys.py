"""Decoy scans (``nmap -D``): one MAC sending the same probe under several source addresses.

Not an analyzer of its own: the TCP analyzer feeds it the SYNs whose events the budgets
admitted (one call), so the bulk path, which only swallows SYNs whose events are refused,
gives it exactly what the per-packet path gives (tests/network/test_bulk.py). The cost: a
decoy scan hidden in a flood that spends the destination's event budget is not seen.

A decoy scan sends every probe once per address in its list — same destination port, same
source port, same TCP sequence number, milliseconds apart — with the real scanner's address
hidden among spoofed ones. On the local segment all those frames leave one network card, so
they carry one source MAC. This module keys each SYN by its *probe fingerprint* (source MAC,
destination, destination port, source port, sequence number); when a second source address
sends a fingerprint already seen within :data:`WINDOW` seconds, both addresses join that MAC's
decoy set, and each address joining emits one ``network_packet`` event with ``event.action:
decoy_probe`` (``source.mac``, ``source.ip``, ``vedette.decoy_set_size``). The
``tcp_decoy_scan`` rule counts distinct ``source.ip`` per ``source.mac``.

Why the fingerprint and not "many addresses behind one MAC": a router's MAC carries the
traffic of every routed client, so distinct sources per MAC alone is normal. Real clients'
SYNs never share a sequence number (RFC 6528 randomises it per connection), so many routed
clients behind one gateway MAC never form a set, whatever their number.

Hostile input: a local attacker chooses their frames' source MAC and source addresses. What
they can do with this analyzer is make a decoy set appear under a MAC they send from, naming
addresses they choose — which is a decoy scan, and reported as one. They cannot remove an
address from a set, and nothing here claims an address is the real scanner (see
docs/network.md, "Decoy scans": the lab capture shows decoys and scanner behaving alike).

State bounds: at most :data:`MAX_PROBES` fingerprints (oldest dropped first; each holds at most
:data:`MAX_SOURCES` addresses), at most :data:`MAX_MACS` decoy sets of at most
:data:`MAX_SOURCES` addresses each (least recently grown dropped first). SYNs the bulk counters
take during a flood (budgets refused their events) never reach analyzers, so a decoy scan
inside a SYN flood is not seen here (see above). Frames without a MAC (reassembled datagrams, raw-IP
captures) are skipped.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Final

from agent.events import Event
from agent.netevents import link, records
from agent.netevents.analyzers.base import Packet
from agent.netevents.direction import ip_text, mac_text

WINDOW: Final = 2.0
"""Seconds within which the copies of one probe count as one probe (nmap sends them in one
burst, microseconds apart)."""
MAX_PROBES: Final = 4096
MAX_MACS: Final = 1024
MAX_SOURCES: Final = 64

_ZERO: Final = b"\x00\x00\x00\x00"
"""SYNs with sequence number 0 are left out: no real stack picks it (RFC 6528 randomises the
initial sequence number; nmap too), crafting tools default to it (scapy), so hand-made traffic
from one host — test fixtures, load generators — would share it across addresses. A decoy tool
of one's own could use it — or any scheme other than one sequence number per probe: this
detection recognises nmap's decoys, not every possible one (docs/network.md)."""

Fingerprint = tuple[bytes, bytes, int, int, bytes]


def _sequence(pkt: Packet, ip_off: int) -> bytes | None:
    data = pkt.data
    if pkt.family == 4:
        tcp = ip_off + (data[ip_off] & 15) * 4
    elif not pkt.v6_headers:
        tcp = ip_off + 40
    else:
        return None
    return data[tcp + 4:tcp + 8] if len(data) >= tcp + 8 else None


class DecoyTracker:
    """The fingerprints and decoy sets of one capture; :meth:`syn` is called by the TCP
    analyzer for each connection attempt whose event the budgets admitted."""

    def __init__(self) -> None:
        self._probes: OrderedDict[Fingerprint, tuple[float, set[bytes]]] = OrderedDict()
        self._sets: OrderedDict[bytes, set[bytes]] = OrderedDict()

    def sizes(self) -> tuple[int, int, int]:
        """``(fingerprints held, decoy sets held, addresses in the largest set)``."""
        return (len(self._probes), len(self._sets),
                max((len(m) for m in self._sets.values()), default=0))

    def syn(self, out: list[Event], pkt: Packet, direction: str) -> None:
        """Note one SYN; append a ``decoy_probe`` event per address it adds to a decoy set."""
        if pkt.flags & 0x12 != 0x02 or pkt.fragments:
            return
        found = link.ip_offset(pkt)
        if found is None or found[0] != link.ETHERNET:
            return
        seq = _sequence(pkt, found[1])
        if seq is None or seq == _ZERO:  # see _ZERO
            return
        mac = pkt.data[6:12]
        probes = self._probes
        while probes:  # age out: the oldest fingerprint first
            key, (first, _) = next(iter(probes.items()))
            if pkt.ts - first <= WINDOW and len(probes) < MAX_PROBES:
                break
            del probes[key]
        fp = (mac, pkt.dst, pkt.dport, pkt.sport, seq)
        entry = probes.get(fp)
        if entry is None:
            probes[fp] = (pkt.ts, {pkt.src})
            return
        sources = entry[1]
        if pkt.src in sources or len(sources) >= MAX_SOURCES:
            return
        sources.add(pkt.src)
        members = self._sets.get(mac)
        if members is None:
            members = self._sets[mac] = set()
            if len(self._sets) > MAX_MACS:
                self._sets.popitem(last=False)
        self._sets.move_to_end(mac)
        for src in sorted(sources):
            if src in members or len(members) >= MAX_SOURCES:
                continue
            members.add(src)
            out.append(self._event(pkt, mac, src, len(members), direction))

    @staticmethod
    def _event(pkt: Packet, mac: bytes, src: bytes, size: int, direction: str) -> Event:
        fields: dict[str, Any] = {
            "event.dataset": "network.packet",
            "event.action": "decoy_probe",
            "source.ip": ip_text(src),
            "source.mac": mac_text(mac),
            "destination.ip": ip_text(pkt.dst),
            "destination.mac": mac_text(pkt.data[0:6]),
            "destination.port": pkt.dport,
            "network.type": "ipv4" if pkt.family == 4 else "ipv6",
            "network.transport": "tcp",
            "network.direction": direction,
            "vedette.decoy_set_size": size,
        }
        if pkt.interface is not None:
            fields["observer.ingress.interface.name"] = pkt.interface
        return Event(pkt.ts, records.NETWORK_PACKET, fields)
