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
address from a set, and an address is only called the real scanner when ARP bound it to the
set's MAC and bound every other member elsewhere (ARP is sender-written: a forger who is the
first to announce an address the agent never saw can bind it to their card; see
docs/network.md, "Decoy scans").

Which address is the real scanner (with ARP or ND knowledge). On the target's segment a
probe under a decoy's address still leaves the scanner's card, so it carries the scanner's MAC
while ARP binds that address to the decoy host's own MAC (the target resolves it to answer).
:meth:`DecoyTracker.packet` marks an admitted SYN ``vedette.likely_spoofed: true`` when its
source MAC differs from the binding :meth:`~agent.netevents.arp.ArpTracker.binding` gives for
its source address — a binding that changed recently is not believed (the one before it is),
so a gratuitous ARP flip cannot make a forger's probes under an innocent's address look
genuine. IPv6 works alike with the bindings neighbour discovery teaches the same table. Never
marked: addresses without a binding (never seen in ARP/ND: replay started mid-way, routed
hosts) and frames from a *router* MAC — a gateway's believed MAC, or a MAC that sent SYNs under
at least :data:`ROUTER_SOURCES` source addresses that have no binding (routed traffic carries
the router's MAC for every remote client). The answers to a marked probe (the target's SYN-ACK
or RST back to that address and port, within :data:`WINDOW_ANSWER` seconds) are marked
``vedette.answers_spoofed: true``. The per-address scan rules count only unmarked probes and
answers; ``port_scan_spoofed`` counts the marked ones per source MAC, so a scan is never
dropped, only attributed to the card that sent it. When a decoy set of at least 3 addresses
has exactly one address whose probes were genuine (its binding is the set's MAC) and every
other address's probes were marked, one ``decoy_source`` event names that address
(``tcp_decoy_source``).

State bounds: at most :data:`MAX_PROBES` fingerprints (oldest dropped first; each holds at most
:data:`MAX_SOURCES` addresses), at most :data:`MAX_MACS` decoy sets of at most
:data:`MAX_SOURCES` addresses each (least recently grown dropped first), at most
:data:`MAX_PROBES` marked probes awaiting answers, at most :data:`MAX_MACS` MACs with at most
:data:`ROUTER_SOURCES` unbound addresses each (least recently seen dropped first). SYNs the bulk
counters take during a flood (budgets refused their events) never reach analyzers, so a decoy
scan inside a SYN flood is not seen here (see above). Frames without a MAC (reassembled
datagrams, raw-IP captures) are skipped.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Final

from agent.events import Event
from agent.netevents import link, records
from agent.netevents.analyzers.base import Packet
from agent.netevents.arp import ArpTracker
from agent.netevents.direction import ip_text, mac_text

WINDOW: Final = 2.0
"""Seconds within which the copies of one probe count as one probe (nmap sends them in one
burst, microseconds apart)."""
MAX_PROBES: Final = 4096
MAX_MACS: Final = 1024
MAX_SOURCES: Final = 64
ROUTER_SOURCES: Final = 16
"""Source addresses without an ARP binding behind one MAC that make it a router's (nmap -D
with at most 15 on-segment decoys stays below it)."""
WINDOW_ANSWER: Final = 10.0
"""Seconds within which a SYN-ACK or RST back to a marked probe is taken as its answer."""

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

    def __init__(self, arp: ArpTracker | None = None) -> None:
        self._arp = arp
        self._probes: OrderedDict[Fingerprint, tuple[float, set[bytes]]] = OrderedDict()
        self._sets: OrderedDict[bytes, set[bytes]] = OrderedDict()
        self._spoofed: OrderedDict[bytes, float] = OrderedDict()
        """Marked probes awaiting their answer: source, source port, destination, port."""
        self._unbound: OrderedDict[bytes, set[bytes]] = OrderedDict()
        self._verdicts: dict[bytes, dict[bytes, bool]] = {}
        """Per decoy-set MAC: member address → its probes were marked (True) or genuine."""
        self._named: set[bytes] = set()

    def packet(self, out: list[Event], pkt: Packet, direction: str,
               fields: dict[str, Any]) -> None:
        """One admitted TCP control segment whose event has ``fields``: mark a spoofed SYN or
        the answer to one; a SYN also goes to :meth:`syn`."""
        flags = pkt.flags
        if flags & 0x12 == 0x02:
            verdict = self.spoofed(pkt)
            if verdict:
                fields["vedette.likely_spoofed"] = True
                self._await_answer(pkt)
            self.syn(out, pkt, direction)
            if verdict is not None:
                self._judge(out, pkt, verdict, direction)
        elif flags & 0x06 and self._spoofed:
            key = pkt.dst + pkt.dport.to_bytes(2, "big") + pkt.src + pkt.sport.to_bytes(2, "big")
            seen = self._spoofed.get(key)
            if seen is not None and pkt.ts - seen <= WINDOW_ANSWER:
                fields["vedette.answers_spoofed"] = True

    def _await_answer(self, pkt: Packet) -> None:
        pending = self._spoofed
        key = pkt.src + pkt.sport.to_bytes(2, "big") + pkt.dst + pkt.dport.to_bytes(2, "big")
        pending[key] = pkt.ts
        pending.move_to_end(key)
        while pending:
            first = next(iter(pending.values()))
            if len(pending) <= MAX_PROBES and pkt.ts - first <= WINDOW_ANSWER:
                break
            pending.popitem(last=False)

    def spoofed(self, pkt: Packet) -> bool | None:
        """Whether the frame's source MAC is not the one ARP (or ND) binds its source address to;
        ``None`` when that cannot be told (no binding, no MAC, a router's MAC: see the module
        docstring)."""
        arp = self._arp
        if arp is None:
            return None
        found = link.macs(pkt)
        if found is None:
            return None
        mac = found[0]
        bound = arp.binding(pkt.src, pkt.ts)
        if bound is None:
            unbound = self._unbound.get(mac)
            if unbound is None:
                unbound = self._unbound[mac] = set()
                if len(self._unbound) > MAX_MACS:
                    self._unbound.popitem(last=False)
            self._unbound.move_to_end(mac)
            if len(unbound) < ROUTER_SOURCES:
                unbound.add(pkt.src)
            return None
        if mac in arp.gateway_macs(pkt.ts) or len(self._unbound.get(mac, ())) >= ROUTER_SOURCES:
            return None
        return bound != mac

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

    def _judge(self, out: list[Event], pkt: Packet, spoofed: bool, direction: str) -> None:
        """Note whether this SYN's address is spoofed when it is a member of its MAC's decoy
        set; name the real one once it is the only genuine member of a set of at least 3 whose
        other members were all marked."""
        found = link.macs(pkt)
        if found is None:
            return
        mac = found[0]
        members = self._sets.get(mac)
        if members is None or pkt.src not in members:
            return
        verdicts = self._verdicts.get(mac)
        if verdicts is None:
            verdicts = self._verdicts[mac] = {}
            if len(self._verdicts) > MAX_MACS:
                del self._verdicts[next(iter(self._verdicts))]
        verdicts[pkt.src] = spoofed
        if len(members) < 3:
            return
        genuine = [ip for ip in members if verdicts.get(ip) is False]
        if len(genuine) != 1 or not all(verdicts.get(ip) for ip in members if ip != genuine[0]):
            return
        key = mac + genuine[0]
        if key in self._named:
            return
        if len(self._named) >= MAX_MACS:
            self._named.clear()
        self._named.add(key)
        event = self._event(pkt, mac, genuine[0], len(members), direction)
        event.fields["event.action"] = "decoy_source"
        event.fields["vedette.decoy_spoofed_count"] = len(members) - 1
        out.append(event)

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
