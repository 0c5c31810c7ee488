"""Crafted pcaps of the held-connection rules (``rules/network/slow_connections.tests/``).

Run from the repository root::

    .venv/bin/python -m tests.network.make_session_fixtures rules/network/slow_connections.tests

- ``slow_service.pcap``: 995 connections to one web server from 5 clients (199 each, under the
  per-client rule's 200 of before), each sending 8 bytes every 4 s for 20 s and never answered
  (slowloris spread over a few addresses);
- ``slowloris_fast.pcap``: one client holding 250 connections, each sending a 1500-byte header
  block every second for 6 s (about 1.6 KB/s, over the 1 KB/s "slow" of before), never
  answered;
- ``benign.pcap``: a reverse proxy holding 100 keep-alive connections to one backend (one small
  request and answer every 5 s on each), a load-balancer health check opening a connection
  every 0.2 s for 60 s, one SSH backup moving ~14 KB/s for 60 s, and a NAT'd office: 250
  keep-alive connections from one address, two requests answered 5 s apart on each, then idle
  until the server closes them at its 60 s keep-alive timeout (:func:`keep_alive_office`).

``half_open_flood(...)`` writes ``rules/network/syn_flood_half_open.tests/attack.pcap``: 400
spoofed SYNs a second for 10 s toward one web server, each answered with a SYN-ACK (SYN
cookies) that nobody completes, diluted with two junk ACKs (to no connection) per SYN so the
SYN ratio stays at 0.33, under the SYN-flood rules' 0.5; then a health check a second for 20 s
(half-open connections are counted 10 s after their SYN-ACK).

The real single-client slowloris capture is ``tests/fixtures/pcap/tools/slowloris_400.pcap``.
"""

from __future__ import annotations

import random
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
    for c in range(5):
        client = f"198.51.100.{10 + c}"
        for i in range(199):
            pkts += held(client, SERVER, 40000 + i, 80, T0 + (c * 199 + i) * 0.004, 4.0, 6,
                         b"X-a: b\r\n")
    return pkts


def slowloris_fast() -> list[Packet]:
    pkts: list[Packet] = []
    for i in range(250):
        pkts += held("198.51.100.8", SERVER, 42000 + i, 80, T0 + i * 0.004, 1.0, 6,
                     b"X-" + b"a" * 1494 + b"\r\n")
    return pkts


def keep_alive_office(client: str, server: str, count: int, start: float) -> list[Packet]:
    """``count`` browser keep-alive connections from one (NAT) address: two requests answered
    5 s apart, then idle until the server closes at its 60 s keep-alive timeout."""
    request = b"GET /app/page HTTP/1.1\r\nHost: intranet\r\nConnection: keep-alive\r\n\r\n"
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n" + b"p" * 200
    pkts: list[Packet] = []
    for i in range(count):
        t, sport = start + i * 0.01, 43000 + i
        pkts += [tcp(t, client, server, sport, 443, "S"),
                 tcp(t + 0.001, server, client, 443, sport, "SA"),
                 tcp(t + 0.002, client, server, sport, 443, "A")]
        for r in (0.01, 5.01):
            pkts += [tcp(t + r, client, server, sport, 443, "PA", request),
                     tcp(t + r + 0.002, server, client, 443, sport, "PA", answer),
                     tcp(t + r + 0.004, client, server, sport, 443, "A")]
        end = t + 65.01
        pkts += [tcp(end, server, client, 443, sport, "FA"),
                 tcp(end + 0.001, client, server, sport, 443, "FA"),
                 tcp(end + 0.002, server, client, 443, sport, "A")]
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
    pkts += keep_alive_office("10.1.0.50", SERVER, 250, T0)
    return pkts


def half_open_flood() -> list[Packet]:
    rng = random.Random(16)
    pkts: list[Packet] = []
    for i in range(4000):
        t = T0 + i / 400
        src = f"198.19.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        sport = 1024 + rng.randrange(60000)
        pkts += [tcp(t, src, SERVER, sport, 80, "S"),
                 tcp(t + 0.0001, SERVER, src, 80, sport, "SA")]
        for j in range(2):
            junk = f"198.19.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            pkts.append(tcp(t + 0.0002 + j * 0.0001, junk, SERVER, 1024 + rng.randrange(60000),
                            80, "A"))
    for i in range(20):  # the capture goes on: a health check a second for 20 s after
        pkts += handshake(T0 + 10 + i, "10.1.0.2", SERVER, 50000 + i, 80, data=1)
    return pkts


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path("rules/network/slow_connections.tests")
    write(out / "slow_service.pcap", slow_service())
    write(out / "slowloris_fast.pcap", slowloris_fast())
    write(out / "benign.pcap", benign())
    write(out.parent / "syn_flood_half_open.tests" / "attack.pcap", half_open_flood())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
