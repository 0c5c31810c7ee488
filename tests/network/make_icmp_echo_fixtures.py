"""Crafted pcaps of ``icmp_tunnel_shape`` (``rules/network/icmp_tunnel_shape.tests/``).

Regenerate: ``.venv/bin/python -m tests.network.make_icmp_echo_fixtures``.

- ``slow_download.pcap``: a tunnel client (198.18.0.20) asking its proxy (198.18.0.10) once a
  second for 4 minutes with 28-byte requests, the data in replies of 300 to 1000 bytes (about
  650 B/s, an eighth of the volume rule's 5 KB/s);
- ``slow_mirrored.pcap``: a client whose requests carry 200 to 1200 bytes that the peer
  mirrors back (an echo-shaped C2 channel), 2 a second for 3 minutes: sizes, not asymmetry;
- ``benign.pcap``: monitoring pings (56 bytes) to 6 hosts every second for 10 minutes, a
  ``ping -s 1000`` every second for 10 minutes with 5 % of replies lost, ``ping -s 1400 -c 5``
  three times, a path-MTU bisection (11 sizes, 3 tries each) and ``ping -i 0.05 -c 200``.
"""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import ICMP, IP
from scapy.packet import Packet, Raw

from tests.network import craft

OUT = Path(__file__).resolve().parents[2] / "rules" / "network" / "icmp_tunnel_shape.tests"
T0 = 1_700_000_000.0
CLIENT, PROXY = "198.18.0.20", "198.18.0.10"


def _echo(ts: float, src: str, dst: str, reply: bool, ident: int, seq: int,
          payload: bytes) -> Packet:
    return craft.at(craft.eth() / IP(src=src, dst=dst)
                    / ICMP(type=0 if reply else 8, id=ident, seq=seq & 0xFFFF) / Raw(payload), ts)


def _size(i: int, low: int, high: int) -> int:
    return low + (i * 7919) % (high - low)


def slow_download() -> list[Packet]:
    pkts: list[Packet] = []
    for i in range(240):
        t = T0 + i
        pkts.append(_echo(t, CLIENT, PROXY, False, 5, i, b"\x01" * 28))
        pkts.append(_echo(t + 0.01, PROXY, CLIENT, True, 5, i, b"d" * _size(i, 300, 1000)))
    return pkts


def slow_mirrored() -> list[Packet]:
    pkts: list[Packet] = []
    for i in range(360):
        t = T0 + i * 0.5
        payload = b"c" * _size(i, 200, 1200)
        pkts.append(_echo(t, CLIENT, PROXY, False, 6, i, payload))
        pkts.append(_echo(t + 0.01, PROXY, CLIENT, True, 6, i, payload))
    return pkts


def _ping(pkts: list[Packet], src: str, dst: str, ident: int, seq: int, size: int, ts: float,
          lost: bool = False) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    pkts.append(_echo(ts, src, dst, False, ident, seq, payload))
    if not lost:
        pkts.append(_echo(ts + 0.001, dst, src, True, ident, seq, payload))


def benign() -> list[Packet]:
    pkts: list[Packet] = []
    mon = "198.18.0.5"
    for s in range(600):
        for h in range(6):
            _ping(pkts, mon, f"198.18.1.{10 + h}", 7, s, 56, T0 + s + h * 0.01)
        _ping(pkts, mon, "198.18.1.20", 8, s, 1000, T0 + s + 0.5, lost=s % 20 == 0)
    for r in range(3):
        for i in range(5):
            _ping(pkts, mon, "198.18.1.10", 9, i, 1400, T0 + 10 + r * 30 + i + 0.2)
    for k, size in enumerate((1472, 1000, 1236, 1354, 1413, 1442, 1457, 1464, 1468, 1470, 1471)):
        for i in range(3):
            _ping(pkts, mon, "198.18.1.30", 10, k * 3 + i, size, T0 + 200 + k * 3 + i + 0.3)
    for i in range(200):
        _ping(pkts, mon, "198.18.1.11", 11, i, 56, T0 + 60 + i * 0.05 + 0.002)
    return pkts


def main() -> None:
    craft.write(OUT / "slow_download.pcap", slow_download())
    craft.write(OUT / "slow_mirrored.pcap", slow_mirrored())
    craft.write(OUT / "benign.pcap", benign())


if __name__ == "__main__":
    main()
