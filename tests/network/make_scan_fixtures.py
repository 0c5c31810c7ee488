"""Regenerate the fixtures of the scan-variant rules and the data-center benign corpus.

``python -m tests.network.make_scan_fixtures`` writes, with fixed seeds (identical files on every
run):

* ``rules/network/<rule>.tests/`` for the rules added for issue #16 (ACK/Window/Maimon,
  contradictory flags, paced, very slow and distributed scans, low-rate SYN flood): an attack
  capture, a look-alike benign capture and ``expect.yml``;
* ``tests/fixtures/pcap/benign_datacenter.pcap``: data-center traffic that must raise nothing
  (``tests/network/test_benign_corpus.py``).

Kept apart from ``make_rule_fixtures.py`` (the older rules' fixtures and the mixed corpus) so
that regenerating one never rewrites the other's files. Addresses follow ``craft.py``.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import yaml
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, UDP
from scapy.packet import Packet

from tests.network import craft as c
from tests.network.craft import ATTACKER, CLIENT, SERVER, T0
from tests.network.make_rule_fixtures import Case, expect

RULES = Path(__file__).resolve().parents[2] / "rules" / "network"
DATACENTER = Path(__file__).resolve().parents[1] / "fixtures" / "pcap" / "benign_datacenter.pcap"
LB = "10.1.0.5"          # the load balancer in front of SERVER
RESOLVER = "10.1.0.53"
BACKUP = "10.1.0.40"     # the backup server on the LAN
MONITOR = "10.1.0.7"     # the monitoring server
NTP_SERVERS = ("10.1.0.123", "10.1.0.124", "192.0.2.123", "198.51.100.123")


# ---------------------------------------------------------------- scans


def ack_window_maimon_scan() -> list[Packet]:
    """nmap -sA then -sM over 40 ports; the target answers the ACK probes with bare resets."""
    pkts = []
    for i, port in enumerate(range(1, 41)):
        ts = T0 + i * 0.01
        pkts.append(c.tcp(ts, ATTACKER, SERVER, 51000, port, "A"))
        pkts.append(c.tcp(ts + 0.0005, SERVER, ATTACKER, port, 51000, "R"))
        pkts.append(c.tcp(ts + 1, "203.0.113.67", SERVER, 51001, port, "FA"))
    return pkts


def preexisting_connections() -> list[Packet]:
    """The capture starts on a database server with 30 pooled connections from one client
    already open: their first pure ACKs (both ways) belong to no connection the capture saw."""
    pkts = []
    for i in range(30):
        ts = T0 + i * 0.1
        pkts.append(c.tcp(ts, SERVER, CLIENT, 5432, 40000 + i, "A"))       # to ephemeral ports
        pkts.append(c.tcp(ts + 0.01, CLIENT, SERVER, 40000 + i, 5432, "A"))  # one service port
        pkts.append(c.tcp(ts + 0.02, CLIENT, SERVER, 40000 + i, 5432, "PA", b"q" * 60))
    return pkts


def contradictory_flags_scan() -> list[Packet]:
    pkts = [c.tcp(T0 + i * 0.02, ATTACKER, SERVER, 52000, 20 + i, "SF") for i in range(10)]
    pkts += [c.tcp(T0 + 1 + i * 0.02, "203.0.113.67", SERVER, 52001, 20 + i, "SR")
             for i in range(10)]
    return pkts


def ordinary_connections() -> list[Packet]:
    pkts = []
    for i in range(60):
        pkts += c.handshake(T0 + i * 0.5, CLIENT, SERVER, 30000 + i, (80, 443, 22)[i % 3])
    return pkts


def paced_scan() -> list[Packet]:
    """nmap -sS --scan-delay 5s over 12 ports (closed ports answer with resets)."""
    pkts = []
    for i, port in enumerate((21, 22, 23, 25, 53, 80, 110, 139, 143, 443, 445, 3389)):
        ts = T0 + i * 5.0
        pkts.append(c.tcp(ts, ATTACKER, SERVER, 53000, port, "S"))
        pkts.append(c.tcp(ts + 0.0005, SERVER, ATTACKER, port, 53000, "RA"))
    return pkts


def monitoring_round() -> list[Packet]:
    """A monitoring server checks six TCP services of the host every 30 s for 10 minutes."""
    pkts = []
    for r in range(20):
        for j, port in enumerate((22, 80, 443, 5432, 6379, 9100)):
            pkts += c.handshake(T0 + r * 30 + j * 0.1, MONITOR, SERVER, 30000 + r * 10 + j, port,
                                data=1)
    return pkts


def one_probe_a_minute() -> list[Packet]:
    """One SYN a minute to a new port, 30 ports (nmap -T0-like pacing, no answers)."""
    return [c.tcp(T0 + i * 60.0, ATTACKER, SERVER, 54000, 1000 + i * 7, "S") for i in range(30)]


def app_server_half_hour() -> list[Packet]:
    """An application server's half hour: web, databases, caches, a queue - eight ports."""
    ports = (80, 443, 5432, 6379, 5672, 9200, 11211, 8080)
    return [c.tcp(T0 + i * 4.0, CLIENT, SERVER, 20000 + i, ports[i % len(ports)], "S")
            for i in range(450)]


def distributed_scan() -> list[Packet]:
    """100 sources, each probing its own 10 ports of the server within 60 s."""
    pkts = []
    for s in range(100):
        src = f"198.51.100.{s + 1}"
        for j in range(10):
            port = 1 + s * 10 + j
            pkts.append(c.tcp(T0 + s * 0.55 + j * 0.05, src, SERVER, 55000, port, "S"))
    return pkts


def many_clients_few_services() -> list[Packet]:
    """500 clients within a minute, each to one of four services."""
    pkts = []
    for i in range(500):
        src = f"198.51.100.{i % 250 + 1}" if i < 250 else f"192.0.2.{i % 250 + 1}"
        pkts.append(c.tcp(T0 + i * 0.12, src, SERVER, 30000 + i, (80, 443, 8443, 22)[i % 4],
                          "S"))
    return pkts


def low_rate_syn_flood() -> list[Packet]:
    """hping3 -S -i u5000: 200 SYNs a second to one port for 10 s, none answered."""
    return [c.tcp(T0 + i * 0.005, ATTACKER, SERVER, 1024 + i, 80, "S") for i in range(2000)]


def steady_web_load() -> list[Packet]:
    """150 complete connections a second for 10 s: SYNs are a small share of the packets."""
    pkts = []
    for i in range(1500):
        pkts += c.handshake(T0 + i / 150, f"198.51.100.{i % 200 + 1}", SERVER, 20000 + i, 80,
                            data=1)
    return pkts


CASES: dict[str, list[Case]] = {
    "tcp_untracked_scan": [
        ("ACK and Maimon probes to 40 ports", ack_window_maimon_scan,
         [expect("tcp_untracked_scan", source__ip=ATTACKER, destination__ip=SERVER),
          expect("tcp_untracked_scan", source__ip="203.0.113.67", destination__ip=SERVER)]),
        ("30 pooled connections already open when the capture starts",
         preexisting_connections, []),
    ],
    "tcp_invalid_flags": [
        ("SYN+FIN and SYN+RST probes to 10 ports", contradictory_flags_scan,
         [expect("tcp_invalid_flags_scan", source__ip=ATTACKER, destination__ip=SERVER),
          expect("tcp_invalid_flags_scan", source__ip="203.0.113.67", destination__ip=SERVER)]),
        ("ordinary connections", ordinary_connections, []),
    ],
    "port_scan_paced": [
        ("nmap --scan-delay 5s over 12 ports", paced_scan,
         [expect("port_scan_paced", source__ip=ATTACKER, destination__ip=SERVER)]),
        ("a monitoring server checking six services every 30 s", monitoring_round, []),
    ],
    "port_scan_very_slow": [
        ("one probe a minute over 30 ports", one_probe_a_minute,
         [expect("port_scan_very_slow", source__ip=ATTACKER, destination__ip=SERVER)]),
        ("an application server's half hour on eight ports", app_server_half_hour, []),
    ],
    "syn_flood_low": [
        ("200 SYNs a second for 10 s", low_rate_syn_flood,
         [expect("syn_flood_low", destination__ip=SERVER, destination__port="80")]),
        ("150 complete connections a second", steady_web_load, []),
    ],
    "port_scan_distributed": [
        ("100 sources x 10 ports in 60 s", distributed_scan,
         [expect("port_scan_distributed", destination__ip=SERVER)]),
        ("500 clients of four services in a minute", many_clients_few_services, []),
    ],
}


# ---------------------------------------------------------------- data-center corpus


def lb_health_checks(seconds: float = 300.0, every: float = 0.2) -> list[Packet]:
    """A load balancer opens a TCP connection to the server every 0.2 s (HAProxy-style check):
    handshake, one request and answer, then it closes - every other check with a reset
    (SO_LINGER 0, as HAProxy does), the others with FIN."""
    pkts = []
    for i in range(int(seconds / every)):
        ts = T0 + i * every
        sport = 32768 + i % 28000
        pkts += [
            c.tcp(ts, LB, SERVER, sport, 8080, "S"),
            c.tcp(ts + 0.0002, SERVER, LB, 8080, sport, "SA"),
            c.tcp(ts + 0.0004, LB, SERVER, sport, 8080, "A"),
            c.tcp(ts + 0.0005, LB, SERVER, sport, 8080, "PA", b"GET /health HTTP/1.0\r\n\r\n"),
            c.tcp(ts + 0.0009, SERVER, LB, 8080, sport, "PA", b"HTTP/1.0 200 OK\r\n\r\nok"),
        ]
        if i % 2:
            pkts.append(c.tcp(ts + 0.0011, LB, SERVER, sport, 8080, "RA"))
        else:
            pkts += [c.tcp(ts + 0.0011, LB, SERVER, sport, 8080, "FA"),
                     c.tcp(ts + 0.0013, SERVER, LB, 8080, sport, "FA"),
                     c.tcp(ts + 0.0015, LB, SERVER, sport, 8080, "A")]
    return pkts


def busy_resolver_client(start: float = T0 + 30) -> list[Packet]:
    """2,000 lookups of 200 names of one internal zone within a minute, every one answered:
    short service names and long readable ones."""
    rng = random.Random(16)
    names = [f"{rng.choice(('api', 'db', 'cache', 'queue', 'auth'))}{i}.svc.example.com"
             for i in range(100)]
    names += [f"{rng.choice(('checkout', 'payments', 'inventory', 'search'))}-api-{i}"
              f".{rng.choice(('prod', 'staging'))}.internal.example.com" for i in range(100)]
    pkts = []
    for i in range(2000):
        ts = start + i * 0.03
        name = names[rng.randrange(200)]
        sport = 20000 + i
        q = c.at(c.eth(c.MAC_SERVER, c.MAC_GATEWAY) / IP(src=SERVER, dst=RESOLVER)
                 / UDP(sport=sport, dport=53) / DNS(id=i, rd=1, qd=DNSQR(qname=name)), ts)
        a = c.at(c.eth() / IP(src=RESOLVER, dst=SERVER) / UDP(sport=53, dport=sport)
                 / DNS(id=i, qr=1, rd=1, ra=1, qd=DNSQR(qname=name),
                       an=DNSRR(rrname=name, rdata=f"10.2.{i % 200}.{i % 250 + 1}")),
                 ts + 0.0008)
        pkts += [q, a]
    return pkts


def ssh_backup(start: float = T0 + 60, total: int = 400_000_000, seconds: float = 120.0
               ) -> list[Packet]:
    """rsync over SSH of 400 MB to the LAN backup server: one connection, GSO-sized segments
    (64 KB on the wire, snap-truncated), the server's ACKs."""
    sport = 45000
    pkts = c.handshake(start, SERVER, BACKUP, sport, 22, data=3)[:-3]
    count = total // 65_000
    for i in range(count):
        ts = start + 0.1 + i * seconds / count
        p = c.tcp(ts, SERVER, BACKUP, sport, 22, "PA", b"x" * 32)
        p.wirelen = 65_000
        pkts.append(p)
        if i % 4 == 0:
            pkts.append(c.tcp(ts + 0.0003, BACKUP, SERVER, 22, sport, "A"))
    end = start + seconds + 0.2
    pkts += [c.tcp(end, SERVER, BACKUP, sport, 22, "FA"),
             c.tcp(end + 0.001, BACKUP, SERVER, 22, sport, "FA"),
             c.tcp(end + 0.002, SERVER, BACKUP, sport, 22, "A")]
    return pkts


def monitoring_pings(seconds: float = 300.0) -> list[Packet]:
    """The monitoring server pings the host every 5 s; the host pings eight neighbours every
    10 s."""
    pkts = []
    for k in range(int(seconds / 5)):
        ts = T0 + k * 5
        pkts.append(c.at(c.eth() / IP(src=MONITOR, dst=SERVER) / ICMP(type=8, id=9, seq=k), ts))
        pkts.append(c.at(c.eth(c.MAC_SERVER, c.MAC_GATEWAY) / IP(src=SERVER, dst=MONITOR)
                         / ICMP(type=0, id=9, seq=k), ts + 0.0002))
        if k % 2 == 0:
            for h in range(8):
                peer = f"10.1.0.{100 + h}"
                pkts.append(c.at(c.eth(c.MAC_SERVER, c.MAC_GATEWAY) / IP(src=SERVER, dst=peer)
                                 / ICMP(type=8, id=10 + h, seq=k), ts + 0.5 + h * 0.01))
                pkts.append(c.at(c.eth() / IP(src=peer, dst=SERVER)
                                 / ICMP(type=0, id=10 + h, seq=k), ts + 0.5 + h * 0.01 + 0.0003))
    return pkts


def ntp(seconds: float = 300.0) -> list[Packet]:
    """chrony polling four servers every 16 s, and the host serving time to 40 LAN clients."""
    pkts = []
    body = b"\x23" + b"\x00" * 47
    for k in range(int(seconds / 16)):
        for j, srv in enumerate(NTP_SERVERS):
            ts = T0 + k * 16 + j * 0.2
            pkts.append(c.at(c.eth(c.MAC_SERVER, c.MAC_GATEWAY) / IP(src=SERVER, dst=srv)
                             / UDP(sport=123, dport=123) / body, ts))
            pkts.append(c.at(c.eth() / IP(src=srv, dst=SERVER) / UDP(sport=123, dport=123)
                             / (b"\x24" + b"\x00" * 47), ts + 0.002))
    for k in range(int(seconds / 64)):
        for j in range(40):
            client = f"10.1.0.{150 + j}"
            ts = T0 + k * 64 + j * 0.5
            pkts.append(c.at(c.eth() / IP(src=client, dst=SERVER) / UDP(sport=123, dport=123)
                             / body, ts))
            pkts.append(c.at(c.eth(c.MAC_SERVER, c.MAC_GATEWAY) / IP(src=SERVER, dst=client)
                             / UDP(sport=123, dport=123) / (b"\x24" + b"\x00" * 47), ts + 0.001))
    return pkts


def datacenter_corpus() -> list[Packet]:
    return (lb_health_checks() + busy_resolver_client() + ssh_backup() + monitoring_pings()
            + ntp())


def main() -> int:
    for rule, cases in CASES.items():
        tdir = RULES / f"{rule}.tests"
        tdir.mkdir(exist_ok=True)
        doc_cases: list[dict[str, Any]] = []
        for n, (name, scenario, expected) in enumerate(cases):
            fname = ("attack" if expected else "benign") + (f"{n}" if n > 1 else "") + ".pcap"
            c.write(tdir / fname, scenario())
            doc_cases.append({"name": name, "input": fname, "expect": expected})
        (tdir / "expect.yml").write_text(yaml.safe_dump({"cases": doc_cases}, sort_keys=False))
        print(f"{rule}: {len(cases)} cases", file=sys.stderr)
    c.write(DATACENTER, datacenter_corpus())
    return 0


if __name__ == "__main__":
    sys.exit(main())
