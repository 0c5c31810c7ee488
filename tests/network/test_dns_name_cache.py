"""The question-name cache of agent/netdecode/dns.py gives what reading the name gives."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.netdecode import dns

HEADER = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0)
LABEL = st.binary(min_size=0, max_size=70)


def _reference(data: bytes) -> tuple[str, tuple[int, ...], int] | str:
    return dns.read_name(data, 0, 12, len(data))


def _wire(labels: list[bytes], tail: bytes) -> bytes:
    return HEADER + b"".join(bytes([len(x) & 0xFF]) + x for x in labels) + tail


@settings(max_examples=400, deadline=None)
@given(labels=st.lists(LABEL, max_size=8), tail=st.binary(max_size=8), cut=st.integers(0, 40))
def test_cached_name_equals_read_name(labels: list[bytes], tail: bytes, cut: int) -> None:
    data = _wire(labels, tail)
    data = data[:max(12, len(data) - cut)]
    expected = _reference(data)
    for _ in range(2):  # the second parse is served from the cache when the first filled it
        got = dns.parse(data, 0, len(data))
        if isinstance(expected, str):
            assert got == expected
            continue
        if isinstance(got, str):
            assert got == dns.TRUNCATED and expected[2] + 4 > len(data)
            continue
        assert (got.name, got.labels) == expected[:2]


def test_cached_names_are_escaped_and_lower_cased_and_bounded() -> None:
    msg = _wire([b"WWW", b"Ex\x00mple", b"com"], b"\x00\x00\x01\x00\x01")
    first = dns.parse(msg, 0, len(msg))
    again = dns.parse(msg, 0, len(msg))
    assert not isinstance(first, str) and not isinstance(again, str)
    assert first.name == again.name == "www.ex\\000mple.com"
    assert first.labels == (3, 7, 3)
    long_name = _wire([b"a" * 63] * 4, b"\x00\x00\x01\x00\x01")  # 256 octets: too long
    assert dns.parse(long_name, 0, len(long_name)) == dns.NAME_TOO_LONG
    for i in range(5000):  # more names than the cache holds: it is cleared, never grows past
        m = _wire([b"n%d" % i, b"example"], b"\x00\x00\x01\x00\x01")
        parsed = dns.parse(m, 0, len(m))
        assert not isinstance(parsed, str) and parsed.name == f"n{i}.example"
    assert len(dns._NAMES) <= dns._NAMES_LIMIT
