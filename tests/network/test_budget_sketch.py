"""The fair-budget sketch's keyed hash: numpy (a whole batch) agrees with the per-packet one,
slots stay in range, the key is random per process, and the batch count equals the sequential
one (property tests)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import NetworkSection
from agent.netevents.budgets import SKETCH_BITS, Budgets, sketch_slots, sketch_slots_v4
from agent.netevents.summaries import ProcessorStats

_V4 = st.integers(min_value=0, max_value=(1 << 32) - 1)


@given(st.lists(_V4, max_size=200))
def test_batch_slots_equal_the_per_packet_slots(addresses: list[int]) -> None:
    i, j = sketch_slots_v4(np.array(addresses, dtype=np.uint32))
    expected = [sketch_slots(a.to_bytes(4, "big")) for a in addresses]
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == expected


@given(st.binary(min_size=0, max_size=40))
def test_slots_are_in_range_for_any_key(key: bytes) -> None:
    i, j = sketch_slots(key)
    assert 0 <= i < 1 << SKETCH_BITS
    assert 0 <= j < 1 << SKETCH_BITS


def test_ipv6_addresses_differing_in_any_word_spread() -> None:
    """Every 32-bit word of an IPv6 address has its own multiplier: flipping one word moves
    the slots (an xor-fold would let an attacker pick colliding addresses)."""
    base = bytes(range(16))
    moved = 0
    for word in range(4):
        for value in range(1, 51):
            other = bytearray(base)
            other[4 * word:4 * word + 4] = value.to_bytes(4, "big")
            moved += sketch_slots(bytes(other)) != sketch_slots(base)
    assert moved >= 195


def test_the_key_is_random_per_process() -> None:
    code = ("from agent.netevents.budgets import sketch_slots;"
            "print(sketch_slots(bytes([198, 18, 0, 1])))")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout for _ in range(3)}
    assert len(runs) == 3


@settings(max_examples=60)
@given(st.lists(st.integers(min_value=0, max_value=300), max_size=400),
       st.integers(min_value=0, max_value=399))
def test_batch_count_equals_the_sequential_count(picks: list[int], split: int) -> None:
    """:meth:`Budgets.seen_v4` tells, for each address in turn, what the per-packet ``seen``
    tells, and leaves the same sketch (repeats, saturation past 255, a batch after packets)."""
    pool = [(0xC6120000 + k * 7919) & 0xFFFFFFFF for k in range(301)]
    addresses = [pool[p] for p in picks] + [pool[0]] * 300  # saturates one slot pair
    split = min(split, len(addresses))
    one = Budgets(NetworkSection(), ProcessorStats())
    many = Budgets(NetworkSection(), ProcessorStats())
    expected = [one.seen(a.to_bytes(4, "big")) for a in addresses]
    head = [many.seen(a.to_bytes(4, "big")) for a in addresses[:split]]
    tail = many.seen_v4(np.array(addresses[split:], dtype=np.uint32)).tolist()
    assert head + tail == expected
    assert one.sketch() == many.sketch()
    many.reset()
    assert not any(b"".join(many.sketch()))
