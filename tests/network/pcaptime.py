"""Rescale the timestamps of a capture, so a scan run live at a feasible pace can be replayed at
the pace the detection is meant for (one probe a minute for half an hour, say).

Only the record times change (every gap multiplied by the same factor, the first packet kept);
packets, order and direction are the tool's own. Small captures only (scapy reads them whole).
"""

from __future__ import annotations

from pathlib import Path

import scapy.layers.inet6
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether  # noqa: F401 - registers link type 1 for rdpcap
from scapy.utils import rdpcap, wrpcap


def probe_times(pcap: Path, source: str) -> list[float]:
    """Times of the TCP SYNs without ACK that ``source`` sent (a SYN scan's probes)."""
    out = []
    for pkt in rdpcap(str(pcap)):
        ip = pkt.getlayer(IP) or pkt.getlayer(scapy.layers.inet6.IPv6)
        tcp = pkt.getlayer(TCP)
        if ip is not None and tcp is not None and ip.src == source \
                and int(tcp.flags) & 0x12 == 0x02:
            out.append(float(pkt.time))
    return out


def rescale(src: Path, dst: Path, factor: float, keep: float | None = None) -> Path:
    """Write ``src`` to ``dst`` with every inter-packet gap multiplied by ``factor``; with
    ``keep``, only the packets of the first ``keep`` seconds (rescaled) are written."""
    if not factor > 0:
        raise ValueError(f"factor must be positive, not {factor}")
    packets = rdpcap(str(src))
    if not packets:
        raise ValueError(f"{src}: empty capture")
    t0 = float(packets[0].time)
    for pkt in packets:
        pkt.time = t0 + (float(pkt.time) - t0) * factor
    wrpcap(str(dst), [p for p in packets if keep is None or float(p.time) - t0 <= keep])
    return dst
