"""Link-layer addresses of a decoded packet: the Ethernet (or Linux cooked) MACs.

:class:`~agent.netevents.analyzers.base.Packet` carries the captured frame but not its link
type, so :func:`ip_offset` finds where the IP header starts by checking the few framings the
capture produces (Ethernet with 0 to 2 VLAN tags, Linux cooked SLL and SLL2, raw IP) against what
the decoder already read: the version nibble, the ethertype/protocol field in front of it, and
the source and destination addresses at their places. Only a framing whose every check holds
is taken; the first that holds wins, Ethernet first.

Limits: a reassembled datagram (``Packet.fragments`` > 0) is the IP datagram alone — its frames'
MACs are gone, so it has none; a raw-IP or loopback capture has none; an SLL capture has the
sender's address only (no destination MAC in that header). A frame a local attacker crafted
could in theory satisfy the checks of another framing than its own: the MAC read would then be
bytes the attacker wrote — no worse than what they can already do, since the source MAC of a
frame on the local segment is theirs to choose anyway (nothing here treats a MAC as proof).
"""

from __future__ import annotations

from typing import Any, Final

from agent.netevents.analyzers.base import Packet
from agent.netevents.direction import mac_text

_IPV4, _IPV6 = b"\x08\x00", b"\x86\xdd"
_VLAN: Final = frozenset((b"\x81\x00", b"\x88\xa8", b"\x91\x00"))
ETHERNET, SLL, SLL2, RAW = "ethernet", "sll", "sll2", "raw"


def _addresses_at(pkt: Packet, off: int) -> bool:
    data = pkt.data
    if pkt.family == 4:
        return (len(data) >= off + 20 and data[off] >> 4 == 4
                and data[off + 12:off + 16] == pkt.src and data[off + 16:off + 20] == pkt.dst)
    return (len(data) >= off + 40 and data[off] >> 4 == 6
            and data[off + 8:off + 24] == pkt.src and data[off + 24:off + 40] == pkt.dst)


def ip_offset(pkt: Packet) -> tuple[str, int] | None:
    """``(framing, offset of the IP header)`` of an IP packet's captured bytes; ``None`` when no
    framing fits (or for ARP, which is not IP)."""
    if pkt.family not in (4, 6):
        return None
    data = pkt.data
    etype = _IPV4 if pkt.family == 4 else _IPV6
    if pkt.fragments:
        return (RAW, 0) if _addresses_at(pkt, 0) else None
    off = 14
    while off <= 22 and data[off - 2:off] in _VLAN:
        off += 4
    if data[off - 2:off] == etype and _addresses_at(pkt, off):
        return ETHERNET, off
    if data[14:16] == etype and data[4:6] == b"\x00\x06" and _addresses_at(pkt, 16):
        return SLL, 16
    if data[0:2] == etype and data[11:12] == b"\x06" and _addresses_at(pkt, 20):
        return SLL2, 20
    if _addresses_at(pkt, 0):
        return RAW, 0
    return None


def macs(pkt: Packet) -> tuple[bytes, bytes | None] | None:
    """``(source MAC, destination MAC or None)`` of the frame, ``None`` when it has none."""
    found = ip_offset(pkt)
    if found is None:
        return None
    framing, _ = found
    data = pkt.data
    if framing == ETHERNET:
        return data[6:12], data[0:6]
    if framing == SLL:
        return data[6:12], None
    if framing == SLL2:
        return data[12:18], None
    return None


def mac_fields(pkt: Packet) -> dict[str, Any] | None:
    """``source.mac`` (and ``destination.mac`` when the framing has it) for an event."""
    found = macs(pkt)
    if found is None:
        return None
    src, dst = found
    fields: dict[str, Any] = {"source.mac": mac_text(src)}
    if dst is not None:
        fields["destination.mac"] = mac_text(dst)
    return fields
