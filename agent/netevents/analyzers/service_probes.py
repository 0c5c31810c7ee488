"""The first client payload of a TCP connection, matched against nmap's service probes.

``nmap -sV`` opens full connections to each open port and sends one probe of
``nmap-service-probes`` per connection (``GET / HTTP/1.0\\r\\n\\r\\n``, ``OPTIONS / HTTP/1.0``,
``\\r\\n\\r\\n``, an SSLv3/TLS ClientHello, RPC, DNS ``version.bind``, SMB, X11, ``HELP\\r\\n``…),
then runs the NSE version scripts, whose HTTP requests carry the ``Nmap Scripting Engine`` user
agent. Those first payloads are byte-exact constants of the tool, so they are recognised by
equality or by a fixed prefix (:data:`EXACT`, :data:`PREFIXES`, :data:`NSE_MARK`), on at most
:data:`SCAN_BYTES` bytes: no regular expression, a handful of dictionary look-ups per
connection whatever the payload.

Who the client is comes from the connection itself, never from a byte it chose: a SYN-ACK
makes its receiver the client (the side that sent the SYN) and the connection *awaits* the
client's first payload (:attr:`ServiceProbeAnalyzer.awaiting`, keyed client → server as the
client sends). The first segment with data from the client side ends the wait; an RST, or
:data:`AWAIT_SECONDS`, ends it without one (a FIN is an ordinary segment, counted in bulk: it
is not looked at). A matching payload becomes one ``network_packet`` event (within the
packet budgets) with ``network.service_probe`` naming the probe; others make nothing.

Ordinary segments are normally only counted (in bulk, :mod:`agent.netevents.bulk`): segments
with data sent on an awaiting connection take the analyzers' path instead, in both paths — the
processor checks :attr:`~ServiceProbeAnalyzer.awaiting` on its inline path, and the bulk
classification holds back every ordinary segment with data whose key may be awaiting at its
turn (:func:`awaiting_rows`: awaiting when the batch starts, or the client side of a SYN-ACK of
the batch; a superset is safe, those segments then count per packet exactly as in bulk). The
handshake's ACK, ACKs of a banner and FINs without data stay on the bulk path.

Bounds: :data:`MAX_AWAITING` connections (oldest dropped first, counted under
``vedette_capture_table_overflows_total{table="service_probes"}``), each for at most
:data:`AWAIT_SECONDS`. A connection whose SYN-ACK was already known (a retransmission, a forged
copy) does not wait again.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Mapping
from typing import ClassVar, Final

import numpy as np
import numpy.typing as npt

from agent.events import Event
from agent.netdecode.layers import PROTO_TCP
from agent.netevents import records
from agent.netevents.analyzers.base import REFUSED_SYNACK, Analyzer, Packet
from agent.netevents.analyzers.tcp import connection_key
from agent.netevents.state import TrafficState

MAX_AWAITING: Final = 4096
AWAIT_SECONDS: Final = 15
"""nmap's NULL probe waits 6 s for a banner (``totalwaitms 6000``) and then sends its next probe
on the same connection (the capture's GetRequest came 6.0 s after the handshake); other probes
and ordinary clients send at once."""
SCAN_BYTES: Final = 512
"""Bytes of a first payload looked at: the NSE user agent comes after a request line with an
arbitrary path (the capture's longest, ``POST /sdk``, has it at byte 40)."""

EXACT: Final[Mapping[bytes, str]] = {
    b"\r\n\r\n": "generic_lines",
    b"GET / HTTP/1.0\r\n\r\n": "get_request",
    b"OPTIONS / HTTP/1.0\r\n\r\n": "http_options",
    b"OPTIONS / RTSP/1.0\r\n\r\n": "rtsp_request",
    b"HELP\r\n": "help",
    b"EHLO\r\n": "hello",
    b"GET /nice%20ports%2C/Tri%6Eity.txt%2ebak HTTP/1.0\r\n\r\n": "four_oh_four",
    b"\x6c\0\x0b\0\0\0\0\0\0\0\0\0": "x11_probe",
    b"\0\x0c\0\0\x10\0\0\0\0\0\0\0\0\0": "dns_status_request",
    b"\0\x1e\0\x06\x01\0\0\x01\0\0\0\0\0\0\x07version\x04bind\0\0\x10\0\x03":
        "dns_version_bind",
    b"\x30\x0c\x02\x01\x01\x60\x07\x02\x01\x02\x04\0\x80\0": "ldap_bind",
    b"\x03\0\0\x0b\x06\xe0\0\0\0\0\0": "terminal_server",
    b"\x01default\n": "lpd_string",
}
"""Whole first payloads (``Probe TCP`` lines of nmap-service-probes) → the probe's name."""

PREFIXES: Final[Mapping[bytes, str]] = {
    b"\x80\0\0\x28\x72\xfe\x1d\x13\0\0\0\0\0\0\0\x02\0\x01\x86\xa0": "rpc_check",
    b"\x16\x03\0\0S\x01\0\0O\x03\0?G\xd7\xf7\xba,\xee": "ssl_session_req",
    b"\x16\x03\0\0\x69\x01\0\0\x65\x03\x03U\x1c\xa7\xe4random1": "tls_session_req",
    b"\0\0\0\xa4\xff\x53\x4d\x42\x72\0\0\0\0\x08\x01\x40": "smb_prog_neg",
    b"\x03\0\0*%\xe0\0\0\0\0\0Cookie: mstshash=nmap": "terminal_server_cookie",
    b"OPTIONS sip:nm SIP/2.0\r\nVia: SIP/2.0/TCP nm;": "sip_options",
}
"""Fixed first bytes of longer probes (the rest may vary) → the probe's name. Every prefix is
at least 16 bytes of constants no ordinary client sends (a ClientHello's random starts at byte
11: these are nmap's fixed "random" bytes)."""
_PREFIX_LENGTHS: Final = tuple(sorted({len(p) for p in PREFIXES}))

NSE_MARK: Final = b"(compatible; Nmap Scripting Engine;"
"""In the user agent of every HTTP request of an NSE script (``nse_http``)."""

_PORTS: Final = struct.Struct("!HH").pack
_MIX: Final = 0x9E3779B97F4A7C15
_U64: Final = (1 << 64) - 1


def classify(payload: bytes) -> str | None:
    """The nmap service probe ``payload`` (a first client payload) is, or ``None``. Looks at
    most at :data:`SCAN_BYTES` bytes, with a fixed number of look-ups."""
    head = payload[:SCAN_BYTES]
    name = EXACT.get(head) if len(payload) <= SCAN_BYTES else None
    if name is not None:
        return name
    for n in _PREFIX_LENGTHS:
        name = PREFIXES.get(head[:n])
        if name is not None:
            return name
    if head[:1].isalpha() and NSE_MARK in head:
        return "nse_http"
    return None


def key_hash(key: bytes) -> int:
    """64-bit hash of an IPv4 connection key (12 bytes), as :func:`key_hashes` computes it."""
    h = 0
    for k in (0, 4, 8):
        h = ((h ^ int.from_bytes(key[k:k + 4], "big")) * _MIX) & _U64
    return h


def key_hashes(words: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """:func:`key_hash` of rows of three big-endian words (addresses, ports)."""
    mix = np.uint64(_MIX)
    h = np.zeros(len(words), dtype=np.uint64)
    for k in range(3):
        h = (h ^ words[:, k]) * mix
    return h


def awaiting_rows(head: npt.NDArray[np.uint8], caplen: npt.NDArray[np.intp],
                  ordinary: npt.NDArray[np.bool_], synack: npt.NDArray[np.bool_],
                  awaiting: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
    """Which ``ordinary`` rows (Ethernet/IPv4 TCP frames without IP options, ``head`` their
    first bytes) carry data and may be sent on a connection awaiting its first client payload
    at their turn: its key is among the hashes ``awaiting`` (when the batch starts) or is the
    client side of a SYN-ACK of the batch. A hash collision only holds back a segment more (it
    then counts per packet)."""
    held = np.zeros(len(head), dtype=np.bool_)
    if not len(awaiting) and not synack.any():
        return held
    total = (head[:, 16].astype(np.intp) << 8) | head[:, 17]
    end = np.where(total > 0, np.minimum(total + 14, caplen), caplen)
    rows = np.flatnonzero(ordinary & (end > 34 + (head[:, 46] >> 4).astype(np.intp) * 4))
    if not len(rows):
        return held
    words = np.ascontiguousarray(head[rows, 26:38]).view(">u4").astype(np.uint64)
    server = np.ascontiguousarray(head[synack, 26:38]).view(">u4").astype(np.uint64)
    client = np.empty_like(server)
    client[:, 0] = server[:, 1]
    client[:, 1] = server[:, 0]
    client[:, 2] = ((server[:, 2] & np.uint64(0xFFFF)) << np.uint64(16)) | (
        server[:, 2] >> np.uint64(16))
    known = np.sort(np.concatenate((awaiting, key_hashes(client))))
    hashes = key_hashes(words)
    at = np.minimum(np.searchsorted(known, hashes), len(known) - 1)
    held[rows] = known[at] == hashes
    return held


def _reverse(key: bytes) -> bytes:
    half = (len(key) - 4) // 2
    return key[half:2 * half] + key[:half] + key[2 * half + 2:] + key[2 * half:2 * half + 2]


class ServiceProbeAnalyzer(Analyzer):
    name: ClassVar[str] = "service_probes"
    protocols: ClassVar[tuple[int, ...]] = (PROTO_TCP,)
    bulk_kinds: ClassVar[tuple[int, ...]] = (REFUSED_SYNACK,)
    """SYN-ACKs refused by the budgets may be counted in bulk: :meth:`refused_synack` starts
    their wait in packet order (before the TCP analyzer learns the connection, as in
    :meth:`packet`); there is nothing to add up later."""

    def __init__(self, state: TrafficState) -> None:
        super().__init__(state)
        self.awaiting: OrderedDict[bytes, int] = OrderedDict()
        """Connections awaiting their first client payload (client → server key, as the
        client sends) → the second of their SYN-ACK; oldest first."""

    def awaiting_hashes(self) -> npt.NDArray[np.uint64]:
        """:func:`key_hash` of every awaiting IPv4 connection (for the bulk classification:
        one vectorised pass a batch rather than a hash per SYN-ACK)."""
        keys = b"".join(k for k in self.awaiting if len(k) == 12)
        return key_hashes(np.frombuffer(keys, dtype=">u4").reshape(-1, 3).astype(np.uint64))

    def packet(self, out: list[Event], pkt: Packet) -> None:
        flags = pkt.flags
        if flags & 0x12 == 0x02:  # a SYN (the cheap case of a flood)
            return
        awaiting = self.awaiting
        if flags & 0x12 == 0x12:  # SYN-ACK: its receiver is the client
            key = pkt.dst + pkt.src + _PORTS(pkt.dport, pkt.sport)
            # (Known either way round; asked before the TCP analyzer learns it.)
            if key not in awaiting and not self.state.connection_known(key):
                self._await(key, int(pkt.ts))
            return
        if not awaiting:
            return
        key = connection_key(pkt)
        if key not in awaiting:
            if flags & 0x04:  # the server's RST
                awaiting.pop(_reverse(key), None)
            return
        if pkt.end > pkt.l4 and not flags & 0x04:
            del awaiting[key]
            shape = classify(bytes(pkt.data[pkt.l4:min(pkt.end, pkt.l4 + SCAN_BYTES)]))
            if shape is not None:
                self._event(out, pkt, shape)
        elif flags & 0x04:  # the client's RST before any data
            del awaiting[key]

    def refused_synack(self, ts: float, key: bytes, wire: int) -> None:
        """A refused SYN-ACK (``key`` as the server sent it), at its turn: what :meth:`packet`
        does for it."""
        client_key = _reverse(key)
        if client_key not in self.awaiting and not self.state.connection_known(client_key):
            self._await(client_key, int(ts))

    def _await(self, key: bytes, second: int) -> None:
        awaiting = self.awaiting
        if awaiting and next(iter(awaiting.values())) <= second - AWAIT_SECONDS:
            self._expire(second)
        if len(awaiting) >= MAX_AWAITING:
            overflow = len(awaiting) - MAX_AWAITING + 1
            self.state.stats.table_overflows["service_probes"] += overflow
            for _ in range(overflow):
                awaiting.popitem(last=False)
        awaiting[key] = second

    def _expire(self, second: int) -> None:
        """Stop waiting for connections whose SYN-ACK is :data:`AWAIT_SECONDS` old."""
        awaiting = self.awaiting
        while awaiting:
            key, since = next(iter(awaiting.items()))
            if since > second - AWAIT_SECONDS:
                break
            del awaiting[key]

    def expire(self, now: float) -> list[Event]:
        self._expire(int(now))
        return []

    def _event(self, out: list[Event], pkt: Packet, shape: str) -> None:
        state = self.state
        if not state.budgets.admit(pkt.src, pkt.dst, pkt.dport):
            return
        state.stats.events["packet"] += 1
        out.append(records.tcp_packet(
            pkt.ts, pkt.family, pkt.src, pkt.dst, pkt.sport, pkt.dport, pkt.flags,
            state.direction.of(pkt.src, pkt.dst), pkt.wire, pkt.interface,
            {"network.service_probe": shape},
        ))
