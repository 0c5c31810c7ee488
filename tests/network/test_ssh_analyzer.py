"""The SSH analyzer: authentication inferred from real captures (openssh-server, sshpass, ssh,
hydra; tests/network/make_ssh_fixtures.py) and from crafted hostile streams."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.packet import Packet
from scapy.utils import rdpcap

from agent.config import NetworkSection
from agent.events import Event
from agent.netdecode.pcapfile import RawPacket
from agent.netevents.analyzers.ssh_session import MAX_BANNER_SHOWN
from agent.netevents.processor import PacketProcessor
from agent.offline.pcap import fixture_config, pcap_events
from tests.network import craft as c
from tests.network.craft import ATTACKER, SERVER, T0
from tests.network.test_processor import raw

FIXTURES = Path(__file__).resolve().parents[2] / "rules" / "network" / "ssh_wire_bruteforce.tests"
LAB_CLIENT, LAB_ATTACKER, LAB_SERVER = "198.18.0.30", "198.18.0.20", "198.18.0.10"


def ssh_events(events: list[Event]) -> list[dict[str, Any]]:
    return [e.fields for e in events if e.logsource.category == "network_ssh"]


def replayed(name: str) -> list[dict[str, Any]]:
    return ssh_events(list(pcap_events(FIXTURES / name, fixture_config(FIXTURES / name))))


# ---------------------------------------------------------------------- real captures


def test_correct_password_login_is_one_success() -> None:
    [ev] = replayed("password_ok.pcap")
    assert ev["ssh.auth_outcome"] == "success" and ev["ssh.auth_success"] is True
    assert ev["ssh.auth_attempts"] == 1 and ev["ssh.auth_failures"] == 0
    assert ev["ssh.auth_inference"] == "userauth_success_size"
    assert ev["ssh.state"] == "established" and ev["ssh.key_exchange"] is True
    assert ev["source.ip"] == LAB_CLIENT and ev["destination.ip"] == LAB_SERVER
    assert ev["destination.port"] == 22
    assert ev["ssh.client"].startswith("SSH-2.0-OpenSSH_")
    assert ev["ssh.server"].startswith("SSH-2.0-OpenSSH_")
    assert ev["source.bytes"] > 2000 and ev["destination.bytes"] > 2000
    assert 0 < ev["event.duration"] < 10e9


def test_public_key_login_is_one_success() -> None:
    [ev] = replayed("key_ok.pcap")
    assert ev["ssh.auth_outcome"] == "success" and ev["ssh.auth_failures"] == 0


def test_wrong_passwords_on_one_connection_are_each_counted() -> None:
    [ev] = replayed("password_fail.pcap")
    assert ev["ssh.auth_outcome"] == "failure" and ev["ssh.auth_success"] is False
    assert ev["ssh.auth_failures"] == 3 and ev["ssh.auth_attempts"] == 3
    assert ev["ssh.state"] == "closed"


@pytest.mark.parametrize("name", ["hydra_t1.pcap", "hydra_t4.pcap"])
def test_hydra_guesses_are_counted_across_few_connections(name: str) -> None:
    events = replayed(name)
    assert all(e["source.ip"] == LAB_ATTACKER for e in events)
    assert all(e["ssh.client"].startswith("SSH-2.0-libssh") for e in events)
    assert len(events) <= 10
    assert max(e["ssh.auth_failures"] for e in events) == 6  # sshd's MaxAuthTries
    # hydra found the password after 20 wrong ones: one connection succeeded
    assert sum(e["ssh.auth_success"] for e in events) == 1


@pytest.mark.parametrize("scenario", ["password_ok", "password_fail", "key_ok", "hydra_t1",
                                      "hydra_t4", "logins_30"])
def test_inferred_counts_equal_what_sshd_logged(scenario: str) -> None:
    truth = json.loads((FIXTURES / "sshd_truth.json").read_text())[scenario]
    events = replayed(f"{scenario}.pcap")
    assert sum(e["ssh.auth_failures"] for e in events) == truth["failed"]
    assert sum(e["ssh.auth_success"] for e in events) == truth["accepted"]


@pytest.mark.parametrize("scenario", ["password_fail", "hydra_t1", "logins_30"])
def test_live_snap_length_cuts_change_nothing(scenario: str) -> None:
    """Live capture keeps 512 bytes a frame (capture.snaplen): the key-exchange reply and the
    NEWKEYS after it are cut off; sizes come from the wire length."""
    full = [(float(p.time), bytes(p)) for p in rdpcap(str(FIXTURES / f"{scenario}.pcap"))]
    cut = [RawPacket(ts, 1, frame[:512], len(frame)) for ts, frame in full]
    proc = PacketProcessor(NetworkSection())
    events = ssh_events(proc.process(cut) + proc.flush())
    assert [(e["source.port"], e["ssh.auth_failures"], e["ssh.auth_success"]) for e in events] \
        == [(e["source.port"], e["ssh.auth_failures"], e["ssh.auth_success"])
            for e in replayed(f"{scenario}.pcap")]
    assert events and all(e["ssh.key_exchange"] for e in events)


# ---------------------------------------------------------------------- crafted streams


def clear(kind: int, size: int = 32) -> bytes:
    """A cleartext binary packet of ``size`` bytes (length field included)."""
    return (size - 4).to_bytes(4, "big") + bytes((4, kind)) + bytes(size - 6)


class Conversation:
    """Segments of one TCP connection with real sequence numbers."""

    def __init__(self, client: str = ATTACKER, server: str = SERVER, sport: int = 40000,
                 dport: int = 22, ts: float = T0) -> None:
        self.client, self.server, self.sport, self.dport = client, server, sport, dport
        self.ts = ts
        self.seq = {True: 1000, False: 5000}
        self.pkts: list[Packet] = []

    def send(self, from_client: bool, payload: bytes, flags: str = "PA", seq: int | None = None,
             advance: bool = True) -> Conversation:
        self.ts += 0.01
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        sp, dp = (self.sport, self.dport) if from_client else (self.dport, self.sport)
        s = self.seq[from_client] if seq is None else seq
        self.pkts.append(c.at(c.eth() / IP(src=src, dst=dst)
                              / TCP(sport=sp, dport=dp, flags=flags, seq=s,
                                    ack=self.seq[not from_client]) / payload, self.ts))
        if advance and seq is None:
            self.seq[from_client] += len(payload)
        return self

    def up_to_auth(self, client_banner: bytes = b"SSH-2.0-OpenSSH_9.2\r\n") -> Conversation:
        self.send(False, b"SSH-2.0-OpenSSH_9.2 Debian\r\n").send(True, client_banner)
        self.send(True, clear(20, 1560)).send(False, clear(20, 1088))
        self.send(True, clear(30, 1208)).send(False, clear(31, 1232) + clear(21, 16) + bytes(316))
        self.send(True, clear(21, 16)).send(True, bytes(44))  # NEWKEYS, SERVICE_REQUEST
        return self.send(False, bytes(44)).send(True, bytes(68)).send(False, bytes(52))

    def guess(self, answer: int = 52) -> Conversation:
        return self.send(True, bytes(148)).send(False, bytes(answer))

    def close(self) -> Conversation:
        return self.send(True, b"", "FA").send(False, b"", "FA")


def run(pkts: list[Packet], settings: NetworkSection | None = None,
        flush: bool = True) -> tuple[PacketProcessor, list[dict[str, Any]]]:
    proc = PacketProcessor(settings or NetworkSection())
    events = proc.process(raw(pkts))
    if flush:
        events += proc.flush()
    return proc, ssh_events(events)


def test_crafted_failures_then_success() -> None:
    conv = Conversation().up_to_auth().guess().guess().guess(28)
    _, [ev] = run(conv.pkts)
    assert (ev["ssh.auth_failures"], ev["ssh.auth_attempts"], ev["ssh.auth_outcome"]) == (
        2, 3, "success")


def test_a_disconnect_answering_a_guess_is_a_refused_attempt() -> None:
    conv = Conversation().up_to_auth().guess().guess(76).close()
    _, [ev] = run(conv.pkts)
    assert ev["ssh.auth_failures"] == 2 and ev["ssh.state"] == "closed"


def test_retransmitted_answers_are_not_counted_twice() -> None:
    conv = Conversation().up_to_auth().guess()
    seq = conv.seq[False] - 52
    conv.send(False, bytes(52), seq=seq).send(False, bytes(52), seq=seq)
    _, [ev] = run(conv.close().pkts)
    assert ev["ssh.auth_failures"] == 1


def test_a_hole_in_the_capture_stops_the_inference() -> None:
    conv = Conversation()
    conv.send(False, b"SSH-2.0-x\r\n").send(True, b"SSH-2.0-y\r\n")
    conv.send(True, clear(20, 600), seq=conv.seq[True] + 1448)  # the segment before was lost
    _, [ev] = run(conv.close().pkts)
    assert ev["ssh.auth_outcome"] == "unknown" and ev["ssh.auth_inference"] == "capture_gap"


def test_hostile_version_lines_are_bounded_and_sanitised() -> None:
    conv = Conversation()
    conv.send(False, b"SSH-2.0-srv\x1b[31m\x00\xff" + b"A" * 400 + b"\r\n")
    conv.send(True, b"SSH-2.0-" + b"\x07" * 40 + b"\r\n")
    _, [ev] = run(conv.close().pkts)
    assert ev["ssh.client"] == "SSH-2.0-" + "?" * 40
    assert ev["ssh.server"].startswith("SSH-2.0-srv?[31m??AAA")
    assert len(ev["ssh.server"]) <= MAX_BANNER_SHOWN + 1


def test_a_line_that_never_ends_is_not_ssh() -> None:
    conv = Conversation()
    conv.send(True, b"SSH-2.0-" + b"B" * 1400)
    for _ in range(6):  # OpenSSH reads a version line up to 8192 bytes
        conv.send(True, b"B" * 1400)
    _, [ev] = run(conv.close().pkts)
    assert ev["ssh.auth_inference"] == "not_ssh2"
    assert ev["ssh.client"].startswith("SSH-2.0-BBB")  # what was read, bounded
    assert len(ev["ssh.client"]) == MAX_BANNER_SHOWN + 1


def test_ssh1_and_other_protocols() -> None:
    conv = Conversation().send(False, b"SSH-1.5-old\r\n").send(True, b"SSH-1.5-x\r\n").close()
    _, [ev] = run(conv.pkts)
    assert ev["ssh.auth_inference"] == "not_ssh2"
    http = Conversation(sport=40001).send(True, b"GET / HTTP/1.0\r\n\r\n").close()
    _, events = run(http.pkts)
    assert events == []  # never began with a version line: not followed


def test_hostile_packet_lengths_do_not_crash() -> None:
    conv = Conversation().send(False, b"SSH-2.0-x\r\n").send(True, b"SSH-2.0-y\r\n")
    conv.send(True, b"\xff\xff\xff\xff\x04\x14").send(False, b"\x00\x00\x00\x01")
    conv.send(False, b"\x00\x00")
    _, [ev] = run(conv.close().pkts)
    assert ev["ssh.auth_outcome"] == "unknown"


def test_connections_table_is_bounded_and_overflow_counted() -> None:
    pkts = []
    for i in range(20):
        pkts += Conversation(sport=41000 + i, ts=T0 + i * 0.001).send(True, b"SSH-2.0-y\r\n").pkts
    proc, events = run(pkts, NetworkSection(max_ssh_connections=16), flush=False)
    assert events == []
    assert proc.stats.table_overflows["ssh"] == 4
    assert len(proc.flush()) >= 16


def test_idle_connection_times_out() -> None:
    conv = Conversation().up_to_auth().guess()
    proc, events = run(conv.pkts, NetworkSection(ssh_idle_timeout_seconds=30), flush=False)
    assert events == []
    [ev] = ssh_events(proc.advance(conv.ts + 31))
    assert ev["ssh.state"] == "timeout" and ev["ssh.auth_failures"] == 1


def test_other_ports_are_configurable() -> None:
    conv = Conversation(dport=2222).up_to_auth().guess(28)
    assert run(conv.pkts)[1] == []
    _, [ev] = run(conv.pkts, NetworkSection(ssh_ports=[2222]))
    assert ev["destination.port"] == 2222 and ev["ssh.auth_success"] is True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(st.tuples(st.booleans(), st.binary(max_size=300)), max_size=12),
       seq_jitter=st.lists(st.integers(-3000, 3000), max_size=12))
def test_random_streams_after_version_lines_never_crash(
        chunks: list[tuple[bool, bytes]], seq_jitter: list[int]) -> None:
    conv = Conversation().send(False, b"SSH-2.0-srv\r\n").send(True, b"SSH-2.0-cli\r\n")
    for i, (from_client, payload) in enumerate(chunks):
        jitter = seq_jitter[i] if i < len(seq_jitter) else 0
        conv.send(from_client, payload, seq=(conv.seq[from_client] + jitter) % 2**32)
        conv.seq[from_client] += len(payload)
    _, events = run(conv.close().pkts)
    assert len(events) == 1
    assert 0 <= events[0]["ssh.auth_failures"] <= len(chunks)
