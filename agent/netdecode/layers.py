"""Header decoding for the capture hot path: link layer → IP → TCP/UDP/ICMP, as plain tuples.

:func:`decode` walks Ethernet (with up to two 802.1Q/802.1ad tags), Linux cooked (SLL, SLL2),
raw IP and BSD loopback framing, then IPv4 (options, fragments) or IPv6 (extension headers,
fragments), then the transport header. It returns one flat tuple — no object per packet — or a
short reason string when the frame cannot be decoded, so the caller counts
``vedette_input_errors_total{source="capture",reason}`` and moves on. It never raises on any
byte string (the fuzz tests in ``tests/network/test_fuzz.py`` hold it to that).

Tuple layout (:data:`Decoded`): ``(family, src, dst, proto, sport, dport, flags, l4, end)``

* ``family`` 4 or 6 for IP, 0 for ARP (``src``/``dst`` are then the Ethernet MACs, ``l4`` the ARP
  header offset);
* ``src``/``dst`` the raw address bytes (4 or 16), turned into text only when an event is built;
* ``proto`` the IP protocol (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6; :data:`PROTO_FRAGMENT` for a
  non-first fragment, which has no transport header);
* ``sport``/``dport`` ports for TCP/UDP, ICMP type/code for ICMP, 0 otherwise;
* ``flags`` the TCP flag byte (0 for other protocols);
* ``l4`` the offset of the transport payload (after the TCP/UDP/ICMP header), ``end`` the end of
  the IP datagram within the captured bytes.
"""

from __future__ import annotations

import struct
from typing import Final

Decoded = tuple[int, bytes, bytes, int, int, int, int, int, int]

LINKTYPE_NULL: Final = 0
LINKTYPE_ETHERNET: Final = 1
LINKTYPE_RAW: Final = 101
LINKTYPE_LINUX_SLL: Final = 113
LINKTYPE_IPV4: Final = 228
LINKTYPE_IPV6: Final = 229
LINKTYPE_LINUX_SLL2: Final = 276
LINKTYPE_RAW_OPENBSD: Final = 12

ETH_IPV4: Final = 0x0800
ETH_ARP: Final = 0x0806
ETH_IPV6: Final = 0x86DD
_VLAN_TYPES: Final = frozenset((0x8100, 0x88A8, 0x9100))

PROTO_ICMP: Final = 1
PROTO_TCP: Final = 6
PROTO_UDP: Final = 17
PROTO_ICMPV6: Final = 58
PROTO_FRAGMENT: Final = 44

_V6_EXT: Final = frozenset((0, 43, 60, 51, 135, 139, 140))
V6_EXT_NAMES: Final = {0: "hop_by_hop", 43: "routing", 44: "fragment", 51: "ah", 60: "dstopts",
                       135: "mobility", 139: "hip", 140: "shim6"}
MAX_V6_HEADERS: Final = 32
"""Extension headers walked at most; a longer chain is ``ipv6_chain_too_long`` (no real stack
sends more than a handful: RFC 8200 orders at most one of each, destination options twice)."""
V6_CHAIN_TOO_LONG: Final = "ipv6_chain_too_long"
_HH = struct.Struct("!HH").unpack_from

TRUNCATED: Final = "truncated"
BAD_IP_HEADER: Final = "bad_ip_header"
UNSUPPORTED_LINKTYPE: Final = "unsupported_linktype"
NOT_IP: Final = "not_ip"
"""Reason strings :func:`decode` returns instead of a tuple (bounded metric label values)."""


def link_payload(data: bytes, linktype: int) -> tuple[int, int] | str:
    """``(ethertype, offset)`` of the network-layer header, or a reason string."""
    if linktype == LINKTYPE_ETHERNET:
        if len(data) < 14:
            return TRUNCATED
        etype = (data[12] << 8) | data[13]
        off = 14
        while etype in _VLAN_TYPES:
            if len(data) < off + 4:
                return TRUNCATED
            etype = (data[off + 2] << 8) | data[off + 3]
            off += 4
        return etype, off
    if linktype in (LINKTYPE_RAW, LINKTYPE_RAW_OPENBSD, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if not data:
            return TRUNCATED
        version = data[0] >> 4
        return (ETH_IPV4 if version == 4 else ETH_IPV6 if version == 6 else 0), 0
    if linktype == LINKTYPE_LINUX_SLL:
        if len(data) < 16:
            return TRUNCATED
        return (data[14] << 8) | data[15], 16
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(data) < 20:
            return TRUNCATED
        return (data[0] << 8) | data[1], 20
    if linktype == LINKTYPE_NULL:
        if len(data) < 5:
            return TRUNCATED
        version = data[4] >> 4
        return (ETH_IPV4 if version == 4 else ETH_IPV6 if version == 6 else 0), 4
    return UNSUPPORTED_LINKTYPE


def decode(data: bytes, linktype: int) -> Decoded | str:
    """Decode one frame down to the transport header; a reason string when it cannot."""
    if linktype == LINKTYPE_ETHERNET and len(data) >= 14:
        etype = (data[12] << 8) | data[13]
        off = 14
        if etype in _VLAN_TYPES:
            link = link_payload(data, linktype)
            if isinstance(link, str):
                return link
            etype, off = link
    else:
        link = link_payload(data, linktype)
        if isinstance(link, str):
            return link
        etype, off = link
    n = len(data)
    if etype == ETH_IPV4:
        if n < off + 20:
            return TRUNCATED
        vihl = data[off]
        ihl = (vihl & 15) * 4
        if vihl >> 4 != 4 or ihl < 20:
            return BAD_IP_HEADER
        total = (data[off + 2] << 8) | data[off + 3]
        if total < ihl:
            # TSO/GSO frames captured on the sending host report length 0.
            if total != 0:
                return BAD_IP_HEADER
            total = n - off
        end = min(off + total, n)
        proto = data[off + 9]
        src = data[off + 12:off + 16]
        dst = data[off + 16:off + 20]
        if (data[off + 6] & 0x3F) | data[off + 7]:  # MF or an offset: a fragment
            return 4, src, dst, PROTO_FRAGMENT, 0, 0, 0, off + ihl, end
        l4 = off + ihl
        family = 4
    elif etype == ETH_IPV6:
        if n < off + 40:
            return TRUNCATED
        if data[off] >> 4 != 6:
            return BAD_IP_HEADER
        end = min(off + 40 + ((data[off + 4] << 8) | data[off + 5]), n)
        proto = data[off + 6]
        src = data[off + 8:off + 24]
        dst = data[off + 24:off + 40]
        family = 6
        chain = ipv6_chain(data, off)
        if isinstance(chain, str):
            return chain
        proto, l4, frag = chain[0], chain[1], chain[3]
        if frag >= 0:
            return 6, src, dst, PROTO_FRAGMENT, 0, 0, 0, l4, end
    elif etype == ETH_ARP:
        if n < off + 28:
            return TRUNCATED
        if linktype == LINKTYPE_ETHERNET:
            return 0, data[6:12], data[0:6], 0, 0, 0, 0, off, n
        return 0, b"", b"", 0, 0, 0, 0, off, n
    else:
        return NOT_IP
    if proto == PROTO_TCP:
        if n < l4 + 14:
            return TRUNCATED
        sport, dport = _HH(data, l4)
        hlen = (data[l4 + 12] >> 4) * 4
        if hlen < 20:
            return BAD_IP_HEADER
        return family, src, dst, proto, sport, dport, data[l4 + 13], l4 + hlen, end
    if proto == PROTO_UDP:
        if n < l4 + 8:
            return TRUNCATED
        sport, dport = _HH(data, l4)
        return family, src, dst, proto, sport, dport, 0, l4 + 8, end
    if proto in (PROTO_ICMP, PROTO_ICMPV6):
        if n < l4 + 4:
            return TRUNCATED
        return family, src, dst, proto, data[l4], data[l4 + 1], 0, l4 + 4, end
    return family, src, dst, proto, 0, 0, 0, l4, end


V6Chain = tuple[int, int, tuple[int, ...], int]
"""``(upper protocol, its offset, extension header types in order, fragment header offset or
-1)`` — the fragment header is reported only for a real fragment (offset or M flag set); an
atomic fragment (RFC 6946) is walked through like any other header."""


def ipv6_chain(data: bytes, off: int) -> V6Chain | str:
    """Walk the extension headers after the IPv6 header at ``off`` (at most
    :data:`MAX_V6_HEADERS`); a reason string when the chain is cut or too long."""
    n = len(data)
    proto = data[off + 6]
    l4 = off + 40
    headers: list[int] = []
    while proto in _V6_EXT or proto == PROTO_FRAGMENT:
        if len(headers) >= MAX_V6_HEADERS:
            return V6_CHAIN_TOO_LONG
        if n < l4 + 8:
            return TRUNCATED
        headers.append(proto)
        if proto == PROTO_FRAGMENT:
            if ((data[l4 + 2] << 8) | data[l4 + 3]) & 0xFFF9:  # offset or M: a fragment
                return data[l4], l4 + 8, tuple(headers), l4
            proto = data[l4]
            l4 += 8
            continue
        length = (data[l4 + 1] + 2) * 4 if proto == 51 else (data[l4 + 1] + 1) * 8
        proto = data[l4]
        l4 += length
    return proto, l4, tuple(headers), -1


def unusual_chain(headers: tuple[int, ...]) -> bool:
    """An extension header chain no ordinary stack sends: a header repeated (destination
    options may appear twice), hop-by-hop anywhere but first, more than four headers, or an
    atomic fragment header (RFC 6946: a fragment of one, used to slip past filters)."""
    if len(headers) > 4:
        return True
    if 0 in headers[1:]:
        return True
    if headers.count(PROTO_FRAGMENT) and headers[-1] == PROTO_FRAGMENT:
        return True
    return any(headers.count(h) > (2 if h == 60 else 1) for h in set(headers))


Fragment = tuple[tuple[bytes, bytes, int, int], int, bool, bytes, bytes, int, tuple[int, ...]]
"""``(key, offset, more, header, payload, protocol, IPv6 extension headers before it)``."""


def fragment_of(data: bytes, linktype: int) -> Fragment | str:
    """What reassembly needs of a frame :func:`decode` found to be a fragment: the key
    (source, destination, IPv4 protocol or -1, identification), the payload's offset in the
    datagram, the "more fragments" flag, the header to rebuild the datagram with (IPv4: the
    fragment's own; IPv6: the fixed header naming the fragmented protocol), the payload bytes
    (up to the datagram's end) and the upper protocol."""
    link = link_payload(data, linktype)
    if isinstance(link, str):
        return link
    _, off = link
    n = len(data)
    if data[off] >> 4 == 4:
        ihl = (data[off] & 15) * 4
        total = (data[off + 2] << 8) | data[off + 3]
        end = min(off + total, n) if total >= ihl else n
        field = (data[off + 6] << 8) | data[off + 7]
        proto = data[off + 9]
        key = (data[off + 12:off + 16], data[off + 16:off + 20], proto,
               (data[off + 4] << 8) | data[off + 5])
        return (key, (field & 0x1FFF) * 8, bool(field & 0x2000), data[off:off + ihl],
                data[off + ihl:end], proto, ())
    chain = ipv6_chain(data, off)
    if isinstance(chain, str):
        return chain
    proto, start, headers, frag = chain
    end = min(off + 40 + ((data[off + 4] << 8) | data[off + 5]), n)
    field = (data[frag + 2] << 8) | data[frag + 3]
    ident = int.from_bytes(data[frag + 4:frag + 8], "big")
    key = (data[off + 8:off + 24], data[off + 24:off + 40], -1, ident)
    header = data[off:off + 6] + bytes([proto]) + data[off + 7:off + 40]
    return key, field & 0xFFF8, bool(field & 1), header, data[start:end], proto, headers[:-1]


def quoted_transport(data: bytes, off: int, end: int, family: int) -> tuple[int, bytes, int] | None:
    """The IP header an ICMP error quotes: ``(proto, original destination, dst port)``.

    ``off`` is the start of the quoted datagram (ICMP header + 4 bytes of unused/MTU field).
    Returns ``None`` when the quote is too short to hold the ports.
    """
    if family == 4:
        if end < off + 20 or data[off] >> 4 != 4:
            return None
        ihl = (data[off] & 15) * 4
        proto = data[off + 9]
        dst = data[off + 16:off + 20]
        l4 = off + ihl
    else:
        if end < off + 40 or data[off] >> 4 != 6:
            return None
        proto = data[off + 6]
        dst = data[off + 24:off + 40]
        l4 = off + 40
    if proto in (PROTO_TCP, PROTO_UDP) and end >= l4 + 4:
        return proto, dst, (data[l4 + 2] << 8) | data[l4 + 3]
    return proto, dst, 0
