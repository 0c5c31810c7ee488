"""Crafted pcaps of the held-connection rules (``rules/network/slow_connections.tests/``).

Run from the repository root::

    .venv/bin/python -m tests.network.make_session_fixtures rules/network/slow_connections.tests

- ``slow_service.pcap``: 1200 connections to one web server from 40 clients (30 each, under the
  per-client floor), each sending 8 bytes every 10 s for 40 s (R-U-Dead-Yet / slowloris spread
  over many clients);
- ``benign.pcap``: a reverse proxy holding 100 keep-alive connections to one backend (one small
  request and answer every 5 s on each), a load-balancer health check opening a connection
  every 0.2 s for 60 s, and one SSH backup moving ~14 KB/s for 60 s.

The real single-client slowloris capture is ``tests/fixtures/pcap/tools/slowloris_400.pcap``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from scapy.packet import Packet

from tests.network.craft import SERVER, T0, handshake, tcp, write


def held(client: str, server: str, sport: int, dport: int, start: float, every: float,
         rounds: int, request: bytes, answer: bytes = b"") -> list[Packet]:
    """A connection opened at ``start`` that sends ``request`` every ``every`` seconds (the
    server acknowledging, or answering ``answer``), then closes with FIN."""
    pkts = [tcp(start, client, server, sport, dport, "S"),
            tcp(start + 0.001, server, client, dport, sport, "SA"),
            tcp(start + 0.002, client, server, sport, dport, "A")]
    for i in range(rounds):
        t = start + 0.01 + i * every
        pkts.append(tcp(t, client, server, sport, dport, "PA", request))
        pkts.append(tcp(t + 0.001, server, client, dport, sport, "PA" if answer else "A",
                        answer))
    end = start + 0.02 + rounds * every
    pkts += [tcp(end, client, server, sport, dport, "FA"),
             tcp(end + 0.001, server, client, dport, sport, "FA"),
             tcp(end + 0.002, client, server, sport, dport, "A")]
    return pkts


def slow_service() -> list[Packet]:
    pkts: list[Packet] = []
    for c in range(40):
        client = f"198.51.100.{10 + c}"
        for i in range(30):
            pkts += held(client, SERVER, 40000 + i, 80, T0 + (c * 30 + i) * 0.004, 10.0, 5,
                         b"X-a: b\r\n")
    return pkts


def benign() -> list[Packet]:
    pkts: list[Packet] = []
    proxy, backend = "10.1.0.30", SERVER
    request = b"GET /api/item HTTP/1.1\r\nHost: backend\r\nConnection: keep-alive\r\n\r\n"
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n" + b"x" * 300
    for i in range(100):
        pkts += held(proxy, backend, 41000 + i, 8080, T0 + i * 0.05, 5.0, 12, request, answer)
    for i in range(300):  # a health check every 0.2 s
        pkts += handshake(T0 + i * 0.2, "10.1.0.2", SERVER, 50000 + i, 80, data=1)
    backup = "10.1.0.40"
    pkts += [tcp(T0, backup, SERVER, 45000, 22, "S"),
             tcp(T0 + 0.001, SERVER, backup, 22, 45000, "SA")]
    for i in range(600):  # ~14 KB/s for 60 s: a 1400-byte segment every 0.1 s
        t = T0 + 0.01 + i * 0.1
        pkts.append(tcp(t, backup, SERVER, 45000, 22, "PA", b"b" * 1400))
        pkts.append(tcp(t + 0.004, SERVER, backup, 22, 45000, "A"))
    return pkts


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path("rules/network/slow_connections.tests")
    write(out / "slow_service.pcap", slow_service())
    write(out / "benign.pcap", benign())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
