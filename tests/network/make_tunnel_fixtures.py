"""Fixtures of ``icmp_tunnel_volume`` (benign side; the attack side is the real ptunnel-ng
capture copied from tests/fixtures/pcap/tools) and ``syn_flood_sustained``.

Regenerate: ``.venv/bin/python -m tests.network.make_tunnel_fixtures``. The SYN captures are
written frame by frame (19 200 frames; scapy per packet would take minutes)."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

from scapy.layers.inet import ICMP, IP
from scapy.packet import Packet, Raw

from tests.network import craft

RULES = Path(__file__).resolve().parents[2] / "rules" / "network"
T0 = 1_700_000_000.0
PATTERN = bytes(range(56))  # ping's default payload size


def _pair(src: str, dst: str, ident: int, seq: int, payload: bytes, ts: float) -> list[Packet]:
    return [craft.at(craft.eth() / IP(src=src, dst=dst) / ICMP(type=8, id=ident, seq=seq)
                     / Raw(payload), ts),
            craft.at(craft.eth() / IP(src=dst, dst=src) / ICMP(type=0, id=ident, seq=seq)
                     / Raw(payload), ts + 0.001)]


def benign_pings() -> list[Packet]:
    """Monitoring pings to 6 hosts every second for 2 min, ``ping -s 1400 -c 5`` three times,
    and ``ping -i 0.05 -c 200`` (20 a second, default size) to one host; with replies."""
    pkts: list[Packet] = []
    for s in range(120):
        for h in range(6):
            pkts += _pair("198.18.0.5", f"198.18.1.{10 + h}", 7, s, PATTERN, T0 + s + h * 0.01)
    for r in range(3):
        for i in range(5):
            pkts += _pair("198.18.0.5", "198.18.1.10", 9, i, b"\x00" * 1400, T0 + 10 + r * 30 + i)
    for i in range(200):
        pkts += _pair("198.18.0.5", "198.18.1.11", 11, i, PATTERN, T0 + 60 + i * 0.05)
    pkts.sort(key=lambda p: float(p.time))
    return pkts


def write_frames(path: Path, frames: Iterable[tuple[float, bytes]]) -> None:
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ts, frame in frames:
            sec = int(ts)
            usec = round((ts - sec) * 1e6)
            f.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)


def main() -> None:
    craft.write(RULES / "icmp_tunnel_volume.tests" / "benign.pcap", benign_pings())
    syn = RULES / "syn_flood_sustained.tests"
    # 60 SYNs a second toward one service (under syn_flood_low's 100) for 320 s; 240 s benign
    write_frames(syn / "attack.pcap",
                 craft.syn_frames(60 * 320, craft.ATTACKER, craft.SERVER, 8080, craft.T0, 1 / 60))
    write_frames(syn / "benign.pcap",
                 craft.syn_frames(60 * 240, craft.ATTACKER, craft.SERVER, 8080, craft.T0, 1 / 60))
    # the same rate at a 40 % duty cycle (4 s on, 6 s off) for 800 s: 320 elevated seconds
    duty: list[tuple[float, bytes]] = []
    for burst in range(80):
        duty += craft.syn_frames(60 * 4, craft.ATTACKER, craft.SERVER, 8080,
                                 craft.T0 + burst * 10, 1 / 60)
    write_frames(syn / "duty_cycle.pcap", duty)


if __name__ == "__main__":
    main()
