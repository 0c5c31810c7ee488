"""Regenerate the pcap fixtures of rules/network/ (``python -m tests.network.make_rule_fixtures``).

Every rule gets a positive capture (the attack) and a negative one (look-alike benign traffic),
crafted with scapy and written next to the rule in ``<rule>.tests/`` with its ``expect.yml``.
Random choices use fixed seeds, so regenerating gives identical files.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from scapy.layers.dns import DNS, DNSQR
from scapy.packet import Packet

from tests.network import craft as c
from tests.network.craft import ATTACKER, CLIENT, GATEWAY, LAN_ATTACKER, SERVER, T0

RULES = Path(__file__).resolve().parents[2] / "rules" / "network"
Scenario = Callable[[], list[Packet]]


def vertical_scan() -> list[Packet]:
    pkts = []
    for i, port in enumerate(range(1, 101)):
        ts = T0 + i * 0.01
        pkts.append(c.tcp(ts, ATTACKER, SERVER, 41000, port, "S"))
        if port in (22, 80):
            pkts.append(c.tcp(ts + 0.0005, SERVER, ATTACKER, port, 41000, "SA"))
            pkts.append(c.tcp(ts + 0.0008, ATTACKER, SERVER, 41000, port, "R"))
        else:
            pkts.append(c.tcp(ts + 0.0005, SERVER, ATTACKER, port, 41000, "RA"))
    return pkts


def busy_client() -> list[Packet]:
    """300 ordinary web connections and a closed port hit by a retrying client."""
    pkts = []
    for i in range(300):
        port = (80, 443, 443)[i % 3]
        pkts += c.handshake(T0 + i * 0.2, CLIENT, SERVER, 30000 + i, port)
    for i in range(5):
        pkts.append(c.tcp(T0 + i, "10.1.0.21", SERVER, 31000 + i, 8080, "S"))
        pkts.append(c.tcp(T0 + i + 0.001, SERVER, "10.1.0.21", 8080, 31000 + i, "RA"))
    return pkts


def horizontal_scan() -> list[Packet]:
    return [c.tcp(T0 + i * 0.05, SERVER, f"10.2.0.{i + 1}", 42000, 445, "S") for i in range(60)]


def few_servers() -> list[Packet]:
    pkts = []
    for i in range(100):
        pkts += c.handshake(T0 + i * 0.3, SERVER, f"10.2.0.{i % 5 + 1}", 33000 + i, 443)
    return pkts


def slow_scan() -> list[Packet]:
    return [c.tcp(T0 + i * 7.0, ATTACKER, SERVER, 43000, 1000 + i, "S") for i in range(120)]


def slow_busy_client() -> list[Packet]:
    pkts = []
    ports = (80, 443, 8080, 5432, 6379)  # an application server: web and databases
    for i in range(900):
        pkts.append(c.tcp(T0 + i, CLIENT, SERVER, 20000 + i, ports[i % 5], "S"))
        pkts.append(c.tcp(T0 + i + 0.001, SERVER, CLIENT, ports[i % 5], 20000 + i, "SA"))
    return pkts


def stealth_scan() -> list[Packet]:
    pkts = []
    for i, flags in enumerate(("F", "", "FPU")):
        for j in range(15):
            pkts.append(c.tcp(T0 + i * 2 + j * 0.05, ATTACKER, SERVER, 44000 + i, 100 + j, flags))
    return pkts


def normal_closes() -> list[Packet]:
    pkts = []
    for i in range(40):
        pkts += c.handshake(T0 + i * 0.5, CLIENT, SERVER, 34000 + i, (443, 8443)[i % 2])
    return pkts


def udp_scan() -> list[Packet]:
    pkts = []
    for i in range(30):
        port = 100 + i * 7
        pkts.append(c.udp(T0 + i * 0.05, ATTACKER, SERVER, 45000, port))
        pkts.append(c.port_unreachable(T0 + i * 0.05 + 0.001, SERVER, ATTACKER, 45000, port))
    return pkts


def traceroute_and_timeouts() -> list[Packet]:
    pkts = []
    for i in range(3):  # one UDP traceroute reaching this host: three probes, three ports
        port = 33434 + 27 + i
        pkts.append(c.udp(T0 + i * 0.1, ATTACKER, SERVER, 46000 + i, port))
        pkts.append(c.port_unreachable(T0 + i * 0.1 + 0.001, SERVER, ATTACKER, 46000 + i, port))
    for i in range(4):  # late DNS answers to closed client ports
        pkts.append(c.port_unreachable(T0 + 5 + i * 10, SERVER, "10.1.0.53", 53, 50000 + i))
    return pkts


def ping_sweep() -> list[Packet]:
    return [c.echo(T0 + i * 0.05, ATTACKER, f"10.1.0.{i + 1}", i) for i in range(40)]


def monitoring_pings() -> list[Packet]:
    return [c.echo(T0 + s + h * 0.01, "10.1.0.5", f"10.1.0.{h + 10}", s)
            for s in range(60) for h in range(3)]


def arp_sweep() -> list[Packet]:
    return [c.arp(T0 + i * 0.02, 1, c.MAC_ATTACKER, LAN_ATTACKER, f"10.1.0.{i + 100}")
            for i in range(60)]


def arp_routine() -> list[Packet]:
    pkts = []
    for i in range(20):
        pkts.append(c.arp(T0 + i * 3, 1, c.MAC_SERVER, SERVER, GATEWAY))
        pkts.append(c.arp(T0 + i * 3 + 0.001, 2, c.MAC_GATEWAY, GATEWAY, SERVER, c.MAC_SERVER,
                          c.MAC_SERVER))
        pkts.append(c.arp(T0 + i * 3 + 1, 1, c.MAC_SERVER, SERVER, f"10.1.0.{20 + i % 4}"))
    return pkts


def syn_flood() -> list[Packet]:
    rng = random.Random(1)
    pkts = []
    for i in range(4000):
        ts = T0 + i * 0.0005
        sport = rng.randint(1024, 65535)
        pkts.append(c.tcp(ts, ATTACKER, SERVER, sport, 80, "S"))
        if i % 4 == 0:
            pkts.append(c.tcp(ts + 0.0001, SERVER, ATTACKER, 80, sport, "SA"))
    return pkts


def busy_web() -> list[Packet]:
    """400 complete connections per second for 8 s: 3200 SYNs, one inbound packet in four."""
    pkts = []
    for i in range(3200):
        pkts += c.handshake(T0 + i * 0.0025, f"198.51.100.{i % 200 + 1}", SERVER, 20000 + i, 80,
                            data=0)
    return pkts


def spoofed_flood() -> list[Packet]:
    rng = random.Random(2)
    return [c.tcp(T0 + i * 0.0005, c.random_ip(rng), SERVER, rng.randint(1024, 65535), 80, "S")
            for i in range(3000)]


def many_clients() -> list[Packet]:
    """200 regular clients each opening a connection every second (few new sources); the
    connections complete (a SYN-only version would be a 200-SYN/s flood on the wire)."""
    pkts = []
    for s in range(8):
        for h in range(200):
            ts = T0 + s + h * 0.004
            pkts += c.handshake(ts, f"198.51.100.{h + 1}", SERVER, 20000 + s, 443, data=0)
    return pkts


def icmp_flood() -> list[Packet]:
    return [c.echo(T0 + i * 0.0003, ATTACKER, SERVER, i) for i in range(6000)]


def ping_burst() -> list[Packet]:
    pkts = [c.echo(T0 + s, "10.1.0.5", SERVER, s) for s in range(30)]
    pkts += [c.echo(T0 + 10 + i * 0.01, "10.1.0.5", SERVER, i) for i in range(100)]
    return pkts


def udp_flood() -> list[Packet]:
    rng = random.Random(3)
    return [c.udp(T0 + i * 0.00015, ATTACKER, SERVER, rng.randint(1024, 65535),
                  rng.randint(1, 65535)) for i in range(12000)]


def dns_server_load() -> list[Packet]:
    return [c.udp(T0 + i * 0.003, f"10.1.{i % 50}.{i % 200 + 1}", SERVER, 40000 + i % 20000, 53,
                  b"\x00" * 30) for i in range(3000)]


def arp_new_mac() -> list[Packet]:
    return [
        c.arp(T0, 2, c.MAC_CLIENT, CLIENT, SERVER, c.MAC_SERVER, c.MAC_SERVER),
        c.arp(T0 + 30, 1, c.MAC_SERVER, SERVER, CLIENT),
        c.arp(T0 + 30.001, 2, c.MAC_CLIENT, CLIENT, SERVER, c.MAC_SERVER, c.MAC_SERVER),
        c.arp(T0 + 60, 2, c.MAC_ATTACKER, CLIENT, SERVER, c.MAC_SERVER, c.MAC_SERVER),
        c.arp(T0 + 62, 2, c.MAC_ATTACKER, CLIENT, SERVER, c.MAC_SERVER, c.MAC_SERVER),
    ]


def arp_gateway_spoof() -> list[Packet]:
    pkts = [c.arp(T0, 2, c.MAC_GATEWAY, GATEWAY, SERVER, c.MAC_SERVER, c.MAC_SERVER)]
    pkts += [c.arp(T0 + 10 + i * 2, 2, c.MAC_ATTACKER, GATEWAY, SERVER, c.MAC_SERVER,
                   c.MAC_SERVER) for i in range(5)]
    return pkts


def arp_probe_and_stable() -> list[Packet]:
    pkts = arp_routine()
    pkts.append(c.arp(T0 + 70, 1, "02:00:00:00:00:77", "0.0.0.0", "10.1.0.77"))  # RFC 5227 probe
    pkts.append(c.arp(T0 + 71, 1, "02:00:00:00:00:77", "10.1.0.77", "10.1.0.77"))  # announce
    return pkts


def garp_storm() -> list[Packet]:
    return [c.arp(T0 + i * 0.1, 2, c.MAC_ATTACKER, GATEWAY, GATEWAY) for i in range(50)]


def garp_boot() -> list[Packet]:
    return [c.arp(T0 + i, 1, c.MAC_CLIENT, CLIENT, CLIENT) for i in range(3)]


def dns_tunnel() -> list[Packet]:
    """An iodine-like client: NULL queries, each a fresh base32 chunk under t.tunnel-example.com."""
    rng = random.Random(4)
    pkts = []
    for i in range(150):
        chunk = c.random_label(rng, 52)
        name = f"{chunk}.{c.random_label(rng, 10)}.t.tunnel-example.com"
        pkts.append(c.dns_query(T0 + i * 0.2, SERVER, name, "NULL", sport=50000 + i))
    return pkts


def dns_browsing() -> list[Packet]:
    names = ["www.google.com", "fonts.gstatic.com", "e1234.dscb.akamaiedge.net",
             "security.debian.org", "deb.debian.org", "api.github.com",
             "this-is-a-rather-long-but-perfectly-readable-hostname.example.org",
             "_dmarc.example.com", "example.com", "selector1._domainkey.example.com",
             "ec2-198-51-100-7.eu-west-1.compute.amazonaws.com"]
    pkts = []
    for i in range(300):
        name = names[i % len(names)]
        qtype = "TXT" if name.startswith(("_", "selector", "example.com")) else "A"
        pkts.append(c.dns_query(T0 + i * 0.1, SERVER, name, qtype, sport=40000 + i))
    for i in range(60):  # a mail server checking 60 hosts of one domain
        pkts.append(c.dns_query(T0 + 31 + i * 0.2, SERVER, f"mx{i}.mail.example.net", "A",
                                sport=41000 + i))
    return pkts


def zone_transfer() -> list[Packet]:
    """An outsider asks the server's DNS for a full zone transfer over TCP, then an IXFR."""
    pkts = []
    for i, qtype in enumerate(("AXFR", "IXFR")):
        query = DNS(id=100 + i, qd=DNSQR(qname="example.org", qtype=qtype))
        answer = DNS(id=100 + i, qr=1, rcode=5, qd=DNSQR(qname="example.org", qtype=qtype))
        pkts += [*c.handshake(T0 + i, ATTACKER, SERVER, 41000 + i, 53, data=0),
                 c.dns_tcp(T0 + i + 0.004, ATTACKER, SERVER, 41000 + i, 53, query),
                 c.dns_tcp(T0 + i + 0.006, SERVER, ATTACKER, 53, 41000 + i, answer)]
    return pkts


def dns_over_tcp_lookups() -> list[Packet]:
    """Ordinary lookups retried over TCP after a truncated UDP answer (large TXT, DNSKEY)."""
    pkts = []
    for i, (name, qtype) in enumerate((("example.com", "TXT"), ("example.org", "DNSKEY"),
                                       ("deb.debian.org", "A"))):
        query = DNS(id=200 + i, rd=1, qd=DNSQR(qname=name, qtype=qtype))
        answer = DNS(id=200 + i, qr=1, rd=1, ra=1, qd=DNSQR(qname=name, qtype=qtype))
        pkts += [c.dns_tcp(T0 + i, SERVER, "10.1.0.53", 42000 + i, 53, query),
                 c.dns_tcp(T0 + i + 0.01, "10.1.0.53", SERVER, 53, 42000 + i, answer)]
    return pkts


def rdp_bruteforce() -> list[Packet]:
    """SSH is judged by its authentication outcome (ssh_wire_bruteforce), not connections."""
    pkts = []
    for i in range(30):
        ts = T0 + i * 1.0
        pkts.append(c.tcp(ts, ATTACKER, SERVER, 50000 + i, 3389, "S"))
        pkts.append(c.tcp(ts + 0.001, SERVER, ATTACKER, 3389, 50000 + i, "SA"))
        pkts.append(c.tcp(ts + 0.002, ATTACKER, SERVER, 50000 + i, 3389, "A"))
    return pkts


def ssh_admin(port: int = 22) -> list[Packet]:
    pkts = []
    for i in range(8):
        pkts += c.handshake(T0 + i * 4, CLIENT, SERVER, 51000 + i, port)
    for i in range(5):  # one connection retransmitting its SYN: the same source port
        pkts.append(c.tcp(T0 + 40 + i, "10.1.0.30", SERVER, 52000, port, "S"))
    return pkts


def rdp_admin() -> list[Packet]:
    return ssh_admin(3389)


def mining() -> list[Packet]:
    return [c.tcp(T0 + i * 5, SERVER, "198.51.100.7", 53000 + i, 3333, "S") for i in range(3)]


def not_mining() -> list[Packet]:
    pkts = [c.tcp(T0, SERVER, "198.51.100.7", 54000, 443, "S")]
    pkts.append(c.tcp(T0 + 1, "198.51.100.9", SERVER, 54001, 3333, "S"))  # inbound, to us
    pkts.append(c.tcp(T0 + 2, SERVER, "10.1.0.40", 54002, 4444, "S"))  # internal
    return pkts


def intel_hit() -> list[Packet]:
    pkts = c.handshake(T0, SERVER, "192.0.2.66", 55000, 443)
    pkts += c.handshake(T0 + 5, "198.51.100.77", SERVER, 55001, 22)
    return pkts


def intel_clean() -> list[Packet]:
    return c.handshake(T0, SERVER, "192.0.3.1", 55000, 443) + c.handshake(
        T0 + 1, "198.51.100.1", SERVER, 55001, 22)


def _bulk(total: int, seconds: float, dst: str) -> list[Packet]:
    """Outbound segments of 200 000 bytes on the wire (GRO/BIG TCP), snap-truncated."""
    count = total // 200_000
    pkts = []
    for i in range(count):
        p = c.tcp(T0 + i * seconds / count, SERVER, dst, 56000, 443, "PA", b"x" * 10)
        p.wirelen = 200_000
        pkts.append(p)
    return pkts


def exfil() -> list[Packet]:
    return _bulk(600_000_000, 200.0, "198.51.100.99")


def backup_sized() -> list[Packet]:
    return _bulk(100_000_000, 200.0, "198.51.100.99") + _bulk(600_000_000, 200.0, "10.1.0.200")


Case = tuple[str, Scenario, list[dict[str, Any]]]


def expect(rule: str, **group: str) -> dict[str, Any]:
    out: dict[str, Any] = {"rule": rule}
    if group:
        out["group"] = {k.replace("__", "."): v for k, v in group.items()}
    return out


SIDECARS: dict[str, dict[str, Any]] = {
    "arp_gateway_mac_change": {"network": {"gateways": [GATEWAY]}},
    "arp_spoofing": {"network": {"gateways": [GATEWAY]}},
    "threat_intel_match": {"threat_intel": {"files": ["blocklist.netset", "drop.txt"]}},
}

CASES: dict[str, list[Case]] = {
    "port_scan_vertical": [
        ("100 ports in one second", vertical_scan,
         [expect("port_scan_vertical", source__ip=ATTACKER, destination__ip=SERVER)]),
        ("300 ordinary web connections", busy_client, []),
    ],
    "tcp_closed_port_resets": [
        ("closed ports answer a scan with resets", vertical_scan,
         [expect("tcp_closed_port_resets", source__ip=ATTACKER, destination__ip=SERVER)]),
        ("ordinary traffic and one closed port", busy_client, []),
    ],
    "port_scan_horizontal": [
        ("port 445 on 60 hosts", horizontal_scan,
         [expect("port_scan_horizontal", source__ip=SERVER, destination__port="445")]),
        ("repeated connections to five servers", few_servers, []),
    ],
    "port_scan_slow": [
        ("one port every 7 seconds", slow_scan,
         [expect("port_scan_slow", source__ip=ATTACKER, destination__ip=SERVER)]),
        ("a busy client for 15 minutes", slow_busy_client, []),
    ],
    "tcp_stealth_scan": [
        ("FIN, NULL and Xmas probes", stealth_scan,
         [expect("tcp_stealth_scan", source__ip=ATTACKER, destination__ip=SERVER)]),
        ("normal FIN-ACK closes", normal_closes, []),
    ],
    "udp_scan": [
        ("30 closed UDP ports answer", udp_scan,
         [expect("udp_scan", source__ip=SERVER, destination__ip=ATTACKER)]),
        ("a traceroute and late DNS answers", traceroute_and_timeouts, []),
    ],
    "ping_sweep": [
        ("40 hosts pinged", ping_sweep, [expect("ping_sweep", source__ip=ATTACKER)]),
        ("monitoring pings three hosts", monitoring_pings, []),
    ],
    "arp_sweep": [
        ("60 neighbours resolved", arp_sweep, [expect("arp_sweep", arp__sender_ip=LAN_ATTACKER)]),
        ("routine ARP", arp_routine, []),
    ],
    "syn_flood": [
        ("4000 SYNs in 2 s, one in four answered", syn_flood,
         [expect("syn_flood", destination__ip=SERVER, destination__port="80")]),
        ("400 complete connections per second for 8 s", busy_web, []),
    ],
    "spoofed_source_flood": [
        ("3000 SYNs from random sources", spoofed_flood,
         [expect("spoofed_source_flood", destination__ip=SERVER)]),
        ("200 regular clients", many_clients, []),
    ],
    "icmp_flood": [
        ("6000 echo requests in 1.8 s", icmp_flood, [expect("icmp_flood", destination__ip=SERVER)]),
        ("pings and a short burst", ping_burst, []),
    ],
    "udp_flood": [
        ("12000 UDP packets in 1.8 s", udp_flood, [expect("udp_flood", destination__ip=SERVER)]),
        ("a DNS server at 300 queries/s", dns_server_load, []),
    ],
    "arp_spoofing": [
        ("a client's IP claimed by another MAC", arp_new_mac,
         [expect("arp_spoofing", arp__sender_ip=CLIENT)]),
        ("routine ARP, a probe and an announcement", arp_probe_and_stable, []),
    ],
    "arp_gateway_mac_change": [
        ("the gateway's IP claimed by the attacker", arp_gateway_spoof,
         [expect("arp_gateway_mac_change", arp__sender_ip=GATEWAY)]),
        ("the gateway answers with its own MAC", arp_routine, []),
    ],
    "arp_gratuitous_storm": [
        ("50 gratuitous replies in 5 s", garp_storm,
         [expect("arp_gratuitous_storm", arp__sender_mac="02-00-00-00-00-66")]),
        ("three announcements at boot", garp_boot, []),
    ],
    "dns_tunnel_long_names": [
        ("iodine-like NULL queries", dns_tunnel,
         [expect("dns_tunnel_long_names", source__ip=SERVER,
                 dns__question__registered_domain="tunnel-example.com")]),
        ("browsing, CDN names, one long readable name", dns_browsing, []),
    ],
    "dns_tunnel_volume": [
        ("150 fresh names under one domain", dns_tunnel,
         [expect("dns_tunnel_volume", source__ip=SERVER,
                 dns__question__registered_domain="tunnel-example.com")]),
        ("browsing and a mail server's 60 lookups", dns_browsing, []),
    ],
    "dns_tunnel_txt_null": [
        ("NULL queries", dns_tunnel,
         [expect("dns_tunnel_txt_null", source__ip=SERVER,
                 dns__question__registered_domain="tunnel-example.com")]),
        ("repeated SPF/DMARC/DKIM TXT lookups", dns_browsing, []),
    ],
    "dns_zone_transfer": [
        ("AXFR then IXFR over TCP from the internet", zone_transfer,
         [expect("dns_zone_transfer", source__ip=ATTACKER)]),
        ("lookups retried over TCP (TXT, DNSKEY, A)", dns_over_tcp_lookups, []),
    ],
    "login_port_bruteforce": [
        ("30 RDP connections in 30 s", rdp_bruteforce,
         [expect("login_port_bruteforce", source__ip=ATTACKER, destination__ip=SERVER,
                 destination__port="3389")]),
        ("an admin's sessions and a retransmitting client", rdp_admin, []),
    ],
    "mining_pool_port": [
        ("outbound to port 3333", mining,
         [expect("mining_pool_port", source__ip=SERVER, destination__ip="198.51.100.7",
                 destination__port="3333")]),
        ("HTTPS out, 3333 inbound, 4444 internal", not_mining, []),
    ],
    "threat_intel_match": [
        ("a listed destination and a listed source", intel_hit, [
            expect("threat_intel_match", threat__indicator__ip="192.0.2.66"),
            expect("threat_intel_match", threat__indicator__ip="198.51.100.77"),
        ]),
        ("unlisted neighbours of listed networks", intel_clean, []),
    ],
    "outbound_volume": [
        ("600 MB out in 200 s", exfil, [expect("outbound_volume", source__ip=SERVER)]),
        ("100 MB out, 600 MB to the LAN", backup_sized, []),
    ],
}

INTEL_FILES = {
    "blocklist.netset":
        "#\n# FireHOL-style netset (test fixture)\n#\n192.0.2.64/28\n203.0.113.0/24\n",
    "drop.txt": "; Spamhaus DROP List (test fixture)\n198.51.100.77/32 ; SBL000001\nnot-an-ip\n",
}


BENIGN_CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "pcap" / "benign_mixed.pcap"


def benign_corpus() -> list[Packet]:
    """Every negative scenario, staggered over 20 minutes: one busy but ordinary server."""
    parts: list[tuple[float, Scenario]] = [
        (0, slow_busy_client), (0, arp_routine), (0, monitoring_pings), (5, busy_web),
        (20, dns_browsing), (60, ssh_admin), (90, normal_closes), (120, few_servers),
        (160, many_clients), (180, dns_server_load), (200, ping_burst), (240, intel_clean),
        (300, backup_sized), (520, traceroute_and_timeouts), (600, garp_boot),
        (640, arp_probe_and_stable), (700, not_mining), (760, busy_client),
        (800, dns_over_tcp_lookups),
    ]
    pkts: list[Packet] = []
    for offset, scenario in parts:
        for p in scenario():
            p.time = float(p.time) + offset
            pkts.append(p)
    return pkts


def main() -> int:
    for rule, cases in CASES.items():
        tdir = RULES / f"{rule}.tests"
        tdir.mkdir(exist_ok=True)
        for old in tdir.glob("*.jsonl"):
            old.unlink()
        doc_cases = []
        for n, (name, scenario, expected) in enumerate(cases):
            fname = ("attack" if expected else "benign") + (f"{n}" if n > 1 else "") + ".pcap"
            c.write(tdir / fname, scenario())
            if rule in SIDECARS:
                (tdir / (fname + ".network.yml")).write_text(yaml.safe_dump(SIDECARS[rule]))
            doc_cases.append({"name": name, "input": fname, "expect": expected})
        if rule == "threat_intel_match":
            for fname, text in INTEL_FILES.items():
                (tdir / fname).write_text(text)
        (tdir / "expect.yml").write_text(yaml.safe_dump({"cases": doc_cases}, sort_keys=False))
        print(f"{rule}: {len(cases)} cases", file=sys.stderr)
    _health_fixture()
    c.write(BENIGN_CORPUS, benign_corpus())
    return 0


def _health_fixture() -> None:
    tdir = RULES / "capture_degraded.tests"
    tdir.mkdir(exist_ok=True)

    def health(ts: float, drops: int, packets: int) -> str:
        return json.dumps({
            "@timestamp": ts, "logsource": {"product": "vedette", "category": "capture_health"},
            "observer.ingress.interface.name": "eth0", "capture.packets": packets,
            "capture.drops": drops, "capture.drop_ratio": round(drops / max(packets + drops, 1), 4),
        })

    (tdir / "dropping.jsonl").write_text("\n".join(
        health(T0 + i * 10, d, 100000) for i, d in enumerate((0, 50, 20000, 30000, 0))) + "\n")
    (tdir / "healthy.jsonl").write_text("\n".join(
        health(T0 + i * 10, d, 500000) for i, d in enumerate((0, 900, 3000, 0))) + "\n")
    (tdir / "expect.yml").write_text(yaml.safe_dump({"cases": [
        {"name": "a ring dropping 17 % of packets", "input": "dropping.jsonl",
         "expect": [expect("capture_degraded", observer__ingress__interface__name="eth0")]},
        {"name": "a few drops well under 1 %", "input": "healthy.jsonl", "expect": []},
    ]}, sort_keys=False))


if __name__ == "__main__":
    if sys.argv[1:] == ["--benign-only"]:
        c.write(BENIGN_CORPUS, benign_corpus())
        sys.exit(0)
    sys.exit(main())
