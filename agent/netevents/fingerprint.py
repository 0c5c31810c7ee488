"""TCP/IP fingerprint fields of a probe event, and the nmap OS-detection probe it matches.

Called only for packets that already became a ``network_packet`` event (control segments,
untracked ACKs, ICMP echo requests: within the event budgets), so the bytes read here cost one
header walk per event, never per ordinary segment. Fields: ``ip.ttl`` (IPv6: hop limit),
``ip.df`` (IPv4), ``ip.tos`` (IPv4), ``tcp.window``, ``tcp.options`` (option kinds in order, as
short names), ``tcp.mss`` / ``tcp.window_scale`` when present, ``tcp.flags.ece`` /
``tcp.flags.cwr``; ``icmp.id`` / ``icmp.seq`` / ``icmp.payload_length`` of echo requests.

``network.probe_shape`` names the nmap OS-detection probe (https://nmap.org/book/
osdetect-methods.html, nmap's osscan2.cc) a packet is built like: ``nmap_seq1`` …
``nmap_seq6`` (the six SYNs with fixed windows 1/63/4/4/16/512 and option sets), ``nmap_ecn``
(SYN+ECE+CWR, window 3), ``nmap_t2`` … ``nmap_t7`` (fixed flags, windows 128/256/1024/31337/
32768/65535 and the options ``wscale,nop,mss 265,ts,sack``), ``nmap_ie1`` / ``nmap_ie2`` (the
echo requests with code 9 and 120 zero bytes, then TOS 4 and 150 bytes). No ordinary stack
sends any of them (windows that small with those options, a timestamp value 0xFFFFFFFF).

Every byte read here is the sender's to choose: the shape is evidence of a tool, never of who
sent it (attribution stays the packet's source address, which decoys can forge). The U1 probe
(UDP, 300 times ``C``) is not classified: UDP datagrams make no packet event today.

The option walk is hand-written (a bounded loop over at most 40 bytes): a packet library would
decode far more than the few bytes needed, per event.
"""

from __future__ import annotations

from typing import Any, Final

from agent.netdecode.layers import PROTO_TCP
from agent.netevents import link
from agent.netevents.analyzers.base import Packet

OPTION_NAMES: Final = {0: "eol", 1: "nop", 2: "mss", 3: "ws", 4: "sack", 5: "sackblk", 8: "ts"}

_T_OPTS: Final = "ws,nop,mss,ts,sack"
# (TCP flag byte without ECE/CWR, window, option kinds) -> shape; extra checks below.
_TCP_SHAPES: Final = {
    (0x02, 1, "ws,nop,mss,ts,sack"): "nmap_seq1",
    (0x02, 63, "mss,ws,sack,ts,eol"): "nmap_seq2",
    (0x02, 4, "ts,nop,nop,ws,nop,mss"): "nmap_seq3",
    (0x02, 4, "sack,ts,ws,eol"): "nmap_seq4",
    (0x02, 16, "mss,sack,ts,ws,eol"): "nmap_seq5",
    (0x02, 512, "mss,sack,ts"): "nmap_seq6",
    (0x02, 3, "ws,nop,mss,sack,nop,nop"): "nmap_ecn",
    (0x00, 128, _T_OPTS): "nmap_t2",
    (0x2B, 256, _T_OPTS): "nmap_t3",
    (0x10, 1024, _T_OPTS): "nmap_t4",
    (0x02, 31337, _T_OPTS): "nmap_t5",
    (0x10, 32768, _T_OPTS): "nmap_t6",
    (0x29, 65535, _T_OPTS): "nmap_t7",
}
_TS_PROBE: Final = b"\xff\xff\xff\xff"


def _tcp_options(data: bytes, start: int, end: int, out: dict[str, Any]) -> tuple[str, bytes]:
    """Walk the options in ``data[start:end]``: their kinds as a comma list, and the timestamp
    value (empty when none); sets ``tcp.mss`` / ``tcp.window_scale``. Malformed: stops."""
    kinds: list[str] = []
    tsval = b""
    i = start
    while i < end:  # each step advances by >= 1: at most 40 rounds
        kind = data[i]
        kinds.append(OPTION_NAMES.get(kind, str(kind)))
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= end or data[i + 1] < 2 or i + data[i + 1] > end:
            kinds.append("malformed")
            break
        size = data[i + 1]
        if kind == 2 and size == 4:
            out["tcp.mss"] = (data[i + 2] << 8) | data[i + 3]
        elif kind == 3 and size == 3:
            out["tcp.window_scale"] = data[i + 2]
        elif kind == 8 and size == 10:
            tsval = data[i + 2:i + 6]
        i += size
    return ",".join(kinds), tsval


def _ip(pkt: Packet, out: dict[str, Any]) -> int | None:
    """IP header fields; the offset of the transport header (``None``: not found)."""
    found = link.ip_offset(pkt)
    if found is None:
        return None
    off, data = found[1], pkt.data
    if pkt.family == 4:
        out["ip.ttl"] = data[off + 8]
        out["ip.df"] = bool(data[off + 6] & 0x40)
        out["ip.tos"] = data[off + 1]
        return off + (data[off] & 0x0F) * 4
    out["ip.ttl"] = data[off + 7]
    return None if pkt.v6_headers else off + 40


def tcp_fields(pkt: Packet) -> dict[str, Any]:
    """Fingerprint fields of a TCP packet event (see the module docstring)."""
    out: dict[str, Any] = {"tcp.flags.ece": bool(pkt.flags & 0x40),
                           "tcp.flags.cwr": bool(pkt.flags & 0x80)}
    t = _ip(pkt, out)
    data = pkt.data
    if t is None or pkt.proto != PROTO_TCP or len(data) < t + 20 or t + 20 > pkt.l4:
        return out
    window = (data[t + 14] << 8) | data[t + 15]
    out["tcp.window"] = window
    opts, tsval = _tcp_options(data, t + 20, min(pkt.l4, len(data)), out)
    if opts:
        out["tcp.options"] = opts
    shape = _TCP_SHAPES.get((pkt.flags & 0x3F, window, opts))
    if shape is not None and _confirmed(shape, pkt.flags, "ts" in opts, tsval, out):
        out["network.probe_shape"] = shape
    return out


def _confirmed(shape: str, flags: int, has_ts: bool, tsval: bytes,
               out: dict[str, Any]) -> bool:
    """The checks of a table match beyond (flags, window, options): nmap's timestamp value,
    ECE+CWR on the ECN probe only, the T probes' window scale and MSS."""
    if has_ts and tsval != _TS_PROBE:
        return False
    if flags & 0xC0 != (0xC0 if shape == "nmap_ecn" else 0):
        return False
    if shape == "nmap_t7":
        return out.get("tcp.window_scale") == 15 and out.get("tcp.mss") == 265
    if shape.startswith("nmap_t"):
        return out.get("tcp.window_scale") == 10 and out.get("tcp.mss") == 265
    return True


def icmp_fields(pkt: Packet) -> dict[str, Any] | None:
    """Fingerprint fields of an ICMP echo request event (``None`` for other ICMP)."""
    if pkt.family != 4 or pkt.sport != 8:  # IPv4 echo request only (nmap's IE pair)
        return None
    out: dict[str, Any] = {}
    _ip(pkt, out)
    data, h = pkt.data, pkt.l4 - 4  # l4: after the 4-byte type/code/checksum
    end = min(pkt.end, len(data))
    if h < 0 or end < h + 8:
        return out
    out["icmp.id"] = (data[h + 4] << 8) | data[h + 5]
    out["icmp.seq"] = (data[h + 6] << 8) | data[h + 7]
    payload = data[h + 8:end]
    out["icmp.payload_length"] = len(payload)
    zeros = not payload.strip(b"\x00")
    if pkt.dport == 9 and len(payload) == 120 and zeros:
        out["network.probe_shape"] = "nmap_ie1"
    elif pkt.dport == 0 and out.get("ip.tos") == 4 and len(payload) == 150 and zeros:
        out["network.probe_shape"] = "nmap_ie2"
    return out
