"""Adversarial review (s6) of agent/netdecode/defrag.py: a slow flood of never-finished first
fragments must not blind reassembly (it did: the full table refused new datagrams)."""

from __future__ import annotations

from agent.netdecode.defrag import EVICTED, Reassembled, Reassembler

SCANNER = bytes([198, 18, 0, 66])
TARGET = bytes([198, 18, 0, 1])
IPV4 = bytes([0x45, 0, 0, 0, 0, 1, 0, 0, 64, 6, 0, 0]) + SCANNER + TARGET


def _fill_with_junk(r: Reassembler, ts: float) -> None:
    """A flood of one-byte, never-completed first fragments from spoofed sources."""
    for i in range(r.max_datagrams):
        src = bytes([198, 19, (i >> 8) & 0xFF, i & 0xFF])
        r.add(ts, (src, TARGET, 6, i), 0, True, IPV4, b"x", 20)


def test_flood_really_fills_the_table() -> None:
    r = Reassembler()
    _fill_with_junk(r, 0.0)
    assert len(r) == r.max_datagrams
    # a new datagram pushes the oldest out instead of being refused
    assert r.add(1.0, (SCANNER, TARGET, 6, 9), 0, True, IPV4, b"\0" * 8, 20) is None
    assert len(r) == r.max_datagrams
    assert r.counts[EVICTED] == 1


def test_fragment_flood_does_not_hide_a_fragmented_syn() -> None:
    r = Reassembler()
    _fill_with_junk(r, 0.0)
    key = (SCANNER, TARGET, 6, 7)
    tcp = (b"\x30\x39\x00\x16" + b"\0" * 8 + b"\x50\x02\x04\x00" + b"\0" * 4)  # SYN to 22
    r.add(5.0, key, 0, True, IPV4, tcp[:8], 20)
    r.add(5.0, key, 8, True, IPV4, tcp[8:16], 20)
    whole = r.add(5.0, key, 16, False, IPV4, tcp[16:], 20)
    assert isinstance(whole, Reassembled)


def test_the_byte_bound_evicts_the_oldest_other_datagrams() -> None:
    r = Reassembler(max_bytes=100)
    first, second = (SCANNER, TARGET, 6, 1), (SCANNER, TARGET, 6, 2)
    assert r.add(0.0, first, 0, True, IPV4, b"a" * 64, 20) is None
    assert r.add(0.1, second, 0, True, IPV4, b"b" * 48, 20) is None
    assert len(r) == 1 and r.buffered_bytes == 48 and r.counts[EVICTED] == 1
    # the second datagram completes although the first was pushed out
    whole = r.add(0.2, second, 48, False, IPV4, b"c" * 8, 20)
    assert isinstance(whole, Reassembled) and whole.packet.endswith(b"b" * 48 + b"c" * 8)
    # one datagram larger than the whole budget alone is refused, not kept
    big = (SCANNER, TARGET, 6, 3)
    assert r.add(0.3, big, 0, True, IPV4, b"d" * 64, 20) is None
    assert r.add(0.4, big, 64, True, IPV4, b"e" * 64, 20) == "fragment_table_full"
    assert len(r) == 0 and r.buffered_bytes == 0
