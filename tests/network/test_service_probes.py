"""First client payloads against nmap's service probes (agent/netevents/analyzers/service_probes.py)
and the ``nmap_version_scan`` rule on the real ``nmap -sV`` capture."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from agent.config import NetworkSection
from agent.events import Event
from agent.netdecode.columns import PacketColumns
from agent.netevents.analyzers import service_probes
from agent.netevents.analyzers.service_probes import (
    EXACT,
    PREFIXES,
    SCAN_BYTES,
    classify,
    key_hash,
    key_hashes,
)
from agent.netevents.processor import PacketProcessor

REPO = Path(__file__).resolve().parents[2]
CAPTURE = REPO / "tests" / "fixtures" / "pcap" / "tools" / "nmap_version_scan.pcap"
ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
CLIENT, SERVER = "198.18.0.20", "198.18.0.10"

BENIGN_FIRST = [
    b"GET / HTTP/1.1\r\nHost: www.example.org\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
    b"GET / HTTP/1.0\r\nHost: www.example.org\r\n\r\n",
    b"GET /index.html HTTP/1.1\r\nHost: a.example\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64"
    b"; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\r\n",
    b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",
    b"EHLO mail.example.org\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(32)) + b"\x00\x00\x04\x13\x01",
    b"\x16\x03\x00\x00S\x01\x00\x00O\x03\x00" + bytes(64),  # SSLv3 hello, another random
    b"OPTIONS / HTTP/1.1\r\nHost: a.example\r\n\r\n",
]


def test_every_probe_constant_is_recognised() -> None:
    for payload, name in EXACT.items():
        assert classify(payload) == name
    for prefix, name in PREFIXES.items():
        assert classify(prefix + b"anything after") == name
    nse = (b"GET /HNAP1 HTTP/1.1\r\nUser-Agent: Mozilla/5.0 (compatible; Nmap Scripting "
           b"Engine; https://nmap.org/book/nse.html)\r\nHost: 198.18.0.10\r\n\r\n")
    assert classify(nse) == "nse_http"


@pytest.mark.parametrize("payload", BENIGN_FIRST)
def test_ordinary_first_payloads_are_not_probes(payload: bytes) -> None:
    assert classify(payload) is None


def test_classification_is_bounded() -> None:
    """Only SCAN_BYTES are looked at: a marker past them is not found, and a huge payload
    costs what a short one does."""
    far = b"GET / HTTP/1.1\r\nX: " + b"a" * SCAN_BYTES + b"Nmap Scripting Engine;"
    assert classify(far) is None
    assert classify(b"GET / HTTP/1.0\r\n\r\n" + b"x" * 10_000_000) is None
    start = time.perf_counter()
    for _ in range(1000):
        classify(b"(" * 100_000)
    assert time.perf_counter() - start < 2.0


def test_key_hash_matches_its_vectorised_form() -> None:
    rng = np.random.default_rng(4)
    keys = [rng.bytes(12) for _ in range(50)]
    words = np.frombuffer(b"".join(keys), dtype=">u4").reshape(-1, 3).astype(np.uint64)
    assert key_hashes(words).tolist() == [key_hash(k) for k in keys]


def _frames(steps: list[tuple[str, str, int, int, str, bytes]], t0: float = 1000.0
            ) -> PacketColumns:
    frames = []
    for i, (src, dst, sport, dport, flags, payload) in enumerate(steps):
        packet = ETH / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags)
        raw = bytes(packet / payload) if payload else bytes(packet)
        frames.append((t0 + i * 0.001, 1, raw, len(raw)))
    return PacketColumns.from_frames(frames)


def _probes(events: list[Event]) -> list[tuple[str, str, str]]:
    return [(e.fields["source.ip"], e.fields["destination.ip"], e.fields["network.service_probe"])
            for e in events if "network.service_probe" in e.fields]


def _handshake(cport: int, sport: int = 8080) -> list[tuple[str, str, int, int, str, bytes]]:
    return [(CLIENT, SERVER, cport, sport, "S", b""), (SERVER, CLIENT, sport, cport, "SA", b""),
            (CLIENT, SERVER, cport, sport, "A", b"")]


@pytest.mark.parametrize("bulk", [True, False])
def test_only_the_clients_first_payload_counts(bulk: bool) -> None:
    get = b"GET / HTTP/1.0\r\n\r\n"
    steps = [
        *_handshake(40001), (CLIENT, SERVER, 40001, 8080, "PA", get),  # a probe
        (CLIENT, SERVER, 40001, 8080, "PA", b"OPTIONS / HTTP/1.0\r\n\r\n"),  # not first
        *_handshake(40002), (SERVER, CLIENT, 8080, 40002, "PA", get),  # the server's bytes
        (CLIENT, SERVER, 40002, 8080, "PA", b"SSH-2.0-x\r\n"),  # its first: not a probe
        (CLIENT, SERVER, 40003, 8080, "PA", get),  # mid-stream: no SYN-ACK seen
        *_handshake(40004), (CLIENT, SERVER, 40004, 8080, "R", b""),
        (CLIENT, SERVER, 40004, 8080, "PA", get),  # after its RST
        *_handshake(40005), (SERVER, CLIENT, 8080, 40005, "SA", b""),  # SYN-ACK again
        (CLIENT, SERVER, 40005, 8080, "PA", b"\r\n\r\n"),
    ]
    proc = PacketProcessor(NetworkSection())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("agent.netevents.bulk.BULK_MIN_PACKETS", 1)
        out = proc.process_columns(_frames(steps), bulk=bulk) + proc.flush()
    assert _probes(out) == [(CLIENT, SERVER, "get_request"), (CLIENT, SERVER, "generic_lines")]


def test_awaiting_connections_are_bounded_and_expire() -> None:
    proc = PacketProcessor(NetworkSection())
    analyzer = next(a for a in proc.analyzers
                    if isinstance(a, service_probes.ServiceProbeAnalyzer))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(service_probes, "MAX_AWAITING", 10)
        steps = [(SERVER, CLIENT, 8080, 30000 + i, "SA", b"") for i in range(25)]
        proc.process_columns(_frames(steps))
    assert len(analyzer.awaiting) == 10
    assert proc.stats.table_overflows["service_probes"] == 15
    later = _frames([(SERVER, CLIENT, 8080, 50000, "SA", b"")],
                    t0=1000.0 + service_probes.AWAIT_SECONDS + 1)
    proc.process_columns(later)
    assert len(analyzer.awaiting) == 1  # the 10 older ones expired at the next SYN-ACK


def _replay(pcap: Path) -> list[dict[str, object]]:
    done = subprocess.run([str(REPO / ".venv" / "bin" / "vedette"), "replay", "--json",
                           "--rules", str(REPO / "rules" / "network"), str(pcap)],
                          capture_output=True, text=True, timeout=120, cwd=REPO, check=True)
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_replay_of_the_real_nmap_version_scan() -> None:
    """`nmap -sV -p 22,8080` (tests/fixtures/pcap/tools/README.md): exactly this alert."""
    alerts = _replay(CAPTURE)
    assert [(a["rule"]["name"], a["source"]["ip"], a["destination"]["ip"],  # type: ignore[index]
             a["threat"]["technique"]["id"]) for a in alerts] == [  # type: ignore[index]
        ("Service version scan (nmap -sV probe set)", CLIENT, SERVER, ["T1046"])]


def test_a_probe_after_the_null_probes_wait_is_still_first() -> None:
    """nmap's NULL probe waits 6 s for a banner, then sends GetRequest on the same connection;
    live capture expires state with wall time in between (PacketProcessor.advance)."""
    proc = PacketProcessor(NetworkSection())
    proc.process_columns(_frames(_handshake(40010)))
    proc.advance(1006.5)
    probe = _frames([(CLIENT, SERVER, 40010, 8080, "PA", b"GET / HTTP/1.0\r\n\r\n")], t0=1006.6)
    assert _probes(proc.process_columns(probe)) == [(CLIENT, SERVER, "get_request")]
