"""Fair budgets: a spoofed flood spends the new-sources pool only; a scanner keeps its events."""

from __future__ import annotations

import random

from agent.config import NetworkSection
from agent.netevents.budgets import Budgets
from agent.netevents.summaries import ProcessorStats


def test_a_scanner_inside_a_spoofed_flood_keeps_its_events() -> None:
    stats = ProcessorStats()
    budgets = Budgets(NetworkSection(), stats)  # 20 000 a second: 5000 new, 15 000 known
    rng = random.Random(3)
    dst = bytes([198, 18, 0, 10])
    scanner = bytes([203, 0, 113, 66])
    admitted = 0
    for i in range(50_000):  # one second of a 50 k packets/s spoofed flood to random ports
        budgets.admit(rng.getrandbits(32).to_bytes(4, "big"), dst, rng.randrange(65536))
        if i % 50 == 0:  # 1000 probes of one scanner spread over the second
            admitted += budgets.admit(scanner, dst, 1 + i // 50)
    assert admitted >= 999  # only its first probe may meet a spent new-sources pool
    assert budgets.new == budgets.max_new == 5000
    assert budgets.known - admitted < 500  # flood packets taken for known sources (sketch)
    assert stats.over_budget_pools["new_sources"] > 40_000


def test_dns_and_arp_have_their_own_class() -> None:
    stats = ProcessorStats()
    budgets = Budgets(NetworkSection(max_events_per_second=100), stats)
    for i in range(1000):
        budgets.admit(i.to_bytes(4, "big"), b"\x0a\x00\x00\x01", i)
    assert budgets.admit_aux(b"dns\x0a\x00\x00\x02", 200)
    budgets.reset()
    assert budgets.new == budgets.known == budgets.aux == 0
