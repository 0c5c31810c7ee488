"""Adversarial review of the SSH analyzer: a client that tries to stop being followed (forged
ends, junk the server drops, long version lines) and a spoofed flood that fills the table."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from agent.config import NetworkSection
from tests.network.craft import T0, at
from tests.network.test_ssh_analyzer import Conversation, clear, run

GUESSES = 6


def kex_and_auth(conv: Conversation) -> Conversation:
    """``Conversation.up_to_auth`` after the version lines."""
    conv.send(True, clear(20, 1560)).send(False, clear(20, 1088))
    conv.send(True, clear(30, 1208)).send(False, clear(31, 1232) + clear(21, 16) + bytes(316))
    conv.send(True, clear(21, 16)).send(True, bytes(44))
    return conv.send(False, bytes(44)).send(True, bytes(68)).send(False, bytes(52))


def banners(conv: Conversation, client: bytes = b"SSH-2.0-hydra\r\n") -> Conversation:
    return conv.send(False, b"SSH-2.0-OpenSSH_9.2 Debian\r\n").send(True, client)


def guesses(conv: Conversation, n: int = GUESSES) -> Conversation:
    for _ in range(n):
        conv.guess()
    return conv


def test_a_forged_rst_from_the_client_does_not_stop_the_count() -> None:
    """The server drops a RST that is not at its next expected byte (RFC 5961); the sensor
    used to end the connection on any RST and miss every later guess on it."""
    conv = Conversation().up_to_auth()
    conv.send(True, b"", "R", seq=conv.seq[True] + 70000)
    conv.send(True, b"", "R", seq=conv.seq[True] - 1)
    proc, [ev] = run(guesses(conv).close().pkts)
    assert ev["ssh.auth_failures"] == GUESSES and ev["ssh.state"] == "closed"
    assert proc.stats.evasion["ssh_end_out_of_sequence"] == 2


def test_forged_fins_do_not_end_the_connection() -> None:
    conv = Conversation().up_to_auth()
    conv.send(True, b"", "FA", seq=conv.seq[True] + 5)
    guesses(conv)
    conv.send(True, b"", "FA", seq=conv.seq[True] + 9)
    _, [ev] = run(conv.close().pkts)
    assert ev["ssh.auth_failures"] == GUESSES and ev["ssh.state"] == "closed"


def test_a_real_rst_still_ends_the_connection() -> None:
    conv = guesses(Conversation().up_to_auth(), 2)
    conv.send(True, b"", "R")
    guesses(conv, 3)  # never reaches the server's application: not counted
    _, [ev] = run(conv.pkts)
    assert ev["ssh.state"] == "closed" and ev["ssh.auth_failures"] == 2


def test_a_client_rst_before_its_first_byte_is_checked_against_the_servers_ack() -> None:
    conv = Conversation().send(False, b"SSH-2.0-OpenSSH_9.2 Debian\r\n")
    conv.send(True, b"", "R", seq=12345)  # the server acknowledged 1000, not 12345
    conv.send(True, b"SSH-2.0-hydra\r\n")
    _, [ev] = run(guesses(kex_and_auth(conv)).close().pkts)
    assert ev["ssh.auth_failures"] == GUESSES


def test_junk_the_server_dropped_does_not_blind_the_answers() -> None:
    """A segment with a bad checksum (or an old timestamp, or an unacceptable ACK) is dropped
    by the server but read by the sensor; the client then sends the real bytes at the same
    sequence number (a 'retransmission' to the sensor). The client's parse is lost; the
    server's answers must still be counted."""
    conv = banners(Conversation())
    conv.send(True, b"\xff\xff\xff\xff\x14" + bytes(60), seq=conv.seq[True])
    _, [ev] = run(guesses(kex_and_auth(conv)).close().pkts)
    assert ev["ssh.auth_failures"] == GUESSES


def test_a_junk_packet_length_the_server_dropped_does_not_swallow_the_stream() -> None:
    """Junk announcing a 200 kB cleartext packet would make the sensor skip the client's
    NEWKEYS: the server's answers must still count."""
    conv = banners(Conversation())
    conv.send(True, (200_000).to_bytes(4, "big") + bytes((4, 20)) + bytes(58),
              seq=conv.seq[True])
    _, [ev] = run(guesses(kex_and_auth(conv)).close().pkts)
    assert ev["ssh.auth_failures"] == GUESSES


def test_a_segment_far_ahead_does_not_blind_the_answers() -> None:
    conv = banners(Conversation())
    conv.send(True, clear(20, 600), seq=conv.seq[True] + 900_000)  # out of window: dropped
    _, [ev] = run(guesses(kex_and_auth(conv)).close().pkts)
    assert ev["ssh.auth_failures"] == GUESSES


def test_a_long_version_line_is_still_followed() -> None:
    """OpenSSH accepts a version line up to 8192 bytes (SSH_MAX_BANNER_LEN); one over 255
    used to mark the connection not_ssh2 and stop the inference."""
    line = b"SSH-2.0-" + b"x" * 2000 + b"\r\n"
    conv = Conversation()
    conv.send(False, b"SSH-2.0-OpenSSH_9.2 Debian\r\n")
    conv.send(True, line[:1400]).send(True, line[1400:])
    _, [ev] = run(guesses(kex_and_auth(conv)).close().pkts)
    assert ev["ssh.auth_failures"] == GUESSES
    assert ev["ssh.client"].startswith("SSH-2.0-xxx") and len(ev["ssh.client"]) == 161


def test_a_flood_of_spoofed_version_lines_cannot_hide_a_new_connection() -> None:
    """One spoofed 'SSH-' segment per fake connection used to fill the table for the idle
    timeout (300 s), and every real connection after it went unfollowed."""
    pkts = []
    for i in range(200):
        fake = Conversation(client=f"198.19.{i // 250}.{i % 250 + 1}", sport=30000 + i)
        pkts += fake.send(True, b"SSH-2.0-x\r\n").pkts
    attacker = guesses(Conversation(sport=45000, ts=fake.ts + 1).up_to_auth()).close()
    proc, events = run(pkts + attacker.pkts, NetworkSection(max_ssh_connections=16),
                       flush=False)
    [ev] = events
    assert ev["source.port"] == 45000 and ev["ssh.auth_failures"] == GUESSES
    assert proc.stats.table_overflows["ssh"] >= 184


def test_a_full_table_of_confirmed_connections_refuses_new_ones() -> None:
    """Connections past their version lines are never pushed out by newcomers."""
    pkts = []
    for i in range(16):
        pkts += Conversation(sport=41000 + i, ts=T0 + i * 0.001).up_to_auth().guess().pkts
    late = guesses(Conversation(sport=45000, ts=T0 + 1).up_to_auth()).close()
    proc, events = run(pkts + late.pkts, NetworkSection(max_ssh_connections=16), flush=False)
    assert events == []
    events = [e.fields for e in proc.flush()
              if e.logsource.category == "network_ssh"]
    assert len(events) == 16 and all(e["ssh.auth_failures"] == 1 for e in events)


def test_a_provoked_message_of_the_success_size_no_longer_ends_the_count() -> None:
    """An unknown message type draws an UNIMPLEMENTED, which pads to the size of
    USERAUTH_SUCCESS with aes-gcm or aes-ctr: the connection used to be dropped as
    'established' and every later guess on it went unseen."""
    conv = Conversation().up_to_auth().guess()
    conv.send(True, bytes(36)).send(False, bytes(28))  # message type 200 -> UNIMPLEMENTED
    proc, [ev] = run(guesses(conv).close().pkts)
    assert ev["ssh.auth_success"] is False
    assert ev["ssh.auth_failures"] == 1 + GUESSES and ev["ssh.state"] == "closed"
    assert proc.stats.evasion["ssh_success_size_provoked"] == 1


def test_a_real_success_followed_by_openssh_hostkeys_is_established() -> None:
    conv = Conversation().up_to_auth().guess().guess(28)
    conv.send(True, bytes(112)).send(False, bytes(116))  # CHANNEL_OPEN; hostkeys-00
    conv.send(False, bytes(44)).send(False, bytes(52))  # OPEN_CONFIRMATION; exit-status
    _, [ev] = run(conv.pkts, flush=False)
    assert ev["ssh.auth_success"] is True and ev["ssh.auth_failures"] == 1
    assert ev["ssh.state"] == "established"


def test_another_server_whose_refusal_has_the_accept_size_keeps_its_success() -> None:
    """aes-gcm pads SERVICE_ACCEPT and a 'publickey,password' refusal alike; a server that
    sends no hostkeys announcement answers CHANNEL_OPEN with that size too."""
    conv = Conversation()
    conv.send(False, b"SSH-2.0-dropbear_2022.83\r\n").send(True, b"SSH-2.0-x\r\n")
    conv.send(True, clear(20, 1560)).send(False, clear(20, 1088))
    conv.send(True, clear(30, 1208)).send(False, clear(31, 1232) + clear(21, 16))
    conv.send(True, clear(21, 16)).send(True, bytes(52))
    conv.send(False, bytes(52)).send(True, bytes(68)).send(False, bytes(52))  # A = F = 52
    conv.guess(36).send(True, bytes(112)).send(False, bytes(52))  # success; OPEN_CONFIRMATION
    _, [ev] = run(conv.pkts, flush=False)
    assert ev["ssh.auth_success"] is True and ev["ssh.auth_failures"] == 0


class Conversation6(Conversation):
    """The same conversation over IPv6."""

    def send(self, from_client: bool, payload: bytes, flags: str = "PA", seq: int | None = None,
             advance: bool = True) -> Conversation:
        self.ts += 0.01
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        sp, dp = (self.sport, self.dport) if from_client else (self.dport, self.sport)
        s = self.seq[from_client] if seq is None else seq
        self.pkts.append(at(Ether() / IPv6(src=src, dst=dst)
                            / TCP(sport=sp, dport=dp, flags=flags, seq=s,
                                  ack=self.seq[not from_client]) / payload, self.ts))
        if advance and seq is None:
            self.seq[from_client] += len(payload)
        return self


def test_guessing_over_ipv6_is_counted_and_attributed() -> None:
    conv = Conversation6(client="2001:db8::66", server="2001:db8::10").up_to_auth()
    _, [ev] = run(guesses(conv).close().pkts)
    assert ev["source.ip"] == "2001:db8::66" and ev["network.type"] == "ipv6"
    assert ev["ssh.auth_failures"] == GUESSES


def test_a_connection_per_guess_is_counted_once_each() -> None:
    pkts = []
    for i in range(10):
        pkts += guesses(Conversation(sport=42000 + i, ts=T0 + i * 30).up_to_auth(), 1) \
            .close().pkts
    _, events = run(pkts)
    assert [e["ssh.auth_failures"] for e in events] == [1] * 10


@pytest.mark.xfail(strict=True, reason="not fixed: a client that sends no `none` query has its "
                   "first refusal taken for the answer to one (paramiko does this), so one "
                   "guess per connection is never counted")
def test_one_guess_per_connection_without_a_none_query_is_counted() -> None:
    pkts = []
    for i in range(10):
        conv = Conversation(sport=43000 + i, ts=T0 + i * 30)
        conv.send(False, b"SSH-2.0-OpenSSH_9.2 Debian\r\n").send(True, b"SSH-2.0-paramiko\r\n")
        kex_and_auth_without_none(conv).guess().close()
        pkts += conv.pkts
    _, events = run(pkts)
    assert sum(e["ssh.auth_failures"] for e in events) == 10


def kex_and_auth_without_none(conv: Conversation) -> Conversation:
    conv.send(True, clear(20, 1560)).send(False, clear(20, 1088))
    conv.send(True, clear(30, 1208)).send(False, clear(31, 1232) + clear(21, 16) + bytes(316))
    conv.send(True, clear(21, 16)).send(True, bytes(44))
    return conv.send(False, bytes(44))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(st.booleans(), st.binary(max_size=200),
                                st.sampled_from(["PA", "A", "R", "FA", "RA", "S", ""]),
                                st.integers(-2000, 2000)), max_size=16),
       slots=st.integers(16, 18))
def test_random_segments_flags_and_sequence_numbers_never_crash(
        steps: list[tuple[bool, bytes, str, int]], slots: int) -> None:
    pkts = []
    for i in range(3):  # a few connections competing for a tiny table
        conv = banners(Conversation(sport=44000 + i, ts=T0 + i))
        for from_client, payload, flags, jitter in steps:
            conv.send(from_client, payload, flags,
                      seq=(conv.seq[from_client] + jitter) % 2**32 if jitter % 3 else None)
        pkts += conv.pkts
    _, events = run(pkts, NetworkSection(max_ssh_connections=slots))
    assert len(events) <= 3 + len(steps)
    assert all(0 <= e["ssh.auth_failures"] <= len(steps) for e in events)


class TinyMss(Conversation):
    """The client advertised an MSS of 36: the server cuts everything it sends to that."""

    def send(self, from_client: bool, payload: bytes, flags: str = "PA", seq: int | None = None,
             advance: bool = True) -> Conversation:
        if from_client or len(payload) <= 36:
            return super().send(from_client, payload, flags, seq, advance)
        for cut in range(0, len(payload), 36):
            super().send(False, payload[cut:cut + 36], flags)
        return self


def test_a_tiny_mss_that_splits_every_server_message_does_not_hide_the_refusals() -> None:
    """Linux sends segments as small as 48 bytes of MSS (net.ipv4.tcp_min_snd_mss): a client
    that asks for it had every 52-byte refusal arrive as 36 + 16, and cleartext headers split
    between segments ended the server's parse ('capture_truncated')."""
    conv = TinyMss().up_to_auth()
    _, [ev] = run(guesses(conv).close().pkts)
    assert ev["ssh.key_exchange"] is True
    assert ev["ssh.auth_failures"] == GUESSES


def test_a_tiny_mss_login_is_still_a_success() -> None:
    conv = TinyMss().up_to_auth().guess().guess(28)
    conv.send(True, bytes(112)).send(False, bytes(116))
    _, [ev] = run(conv.pkts, flush=False)
    assert ev["ssh.auth_success"] is True and ev["ssh.auth_failures"] == 1


def test_a_full_table_freed_by_expiry_counts_no_overflow() -> None:
    pkts = []
    for i in range(16):
        pkts += Conversation(sport=41000 + i, ts=T0 + i * 0.001).up_to_auth().pkts
    late = Conversation(sport=45000, ts=T0 + 0.5).up_to_auth()  # before the periodic sweep
    proc, events = run(pkts + late.pkts, NetworkSection(max_ssh_connections=16,
                                                        ssh_idle_timeout_seconds=0.05),
                       flush=False)
    assert len(events) == 16 and all(e["ssh.state"] == "timeout" for e in events)
    assert proc.stats.table_overflows["ssh"] == 0
