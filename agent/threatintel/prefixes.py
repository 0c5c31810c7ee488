"""Longest-prefix matching of IP addresses against many networks.

One hash table per prefix length and address family: a lookup shifts the address once per
distinct prefix length present (at most 33 for IPv4, 129 for IPv6; real blocklists use a
handful) and probes a dict, so its cost does not depend on the number of networks. This is the
same idea as a level-compressed radix trie walked from the longest length down, with less
Python per step. Used for threat-intel blocklists and for the "local networks" that decide a
packet's direction.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Generic, TypeVar

V = TypeVar("V")


class PrefixTable(Generic[V]):
    """Map IPv4/IPv6 networks to values; :meth:`lookup` returns the longest match."""

    def __init__(self) -> None:
        self._tables: dict[int, dict[int, dict[int, V]]] = {32: {}, 128: {}}
        self._lengths: dict[int, list[int]] = {32: [], 128: []}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, network: ipaddress.IPv4Network | ipaddress.IPv6Network, value: V) -> None:
        bits = network.max_prefixlen
        plen = network.prefixlen
        table = self._tables[bits].setdefault(plen, {})
        key = int(network.network_address) >> (bits - plen)
        if key not in table:
            self._size += 1
        table[key] = value
        self._lengths[bits] = sorted(self._tables[bits], reverse=True)

    def lookup_bytes(self, address: bytes) -> tuple[int, V] | None:
        """``(prefix length, value)`` of the longest network holding the raw address."""
        bits = 32 if len(address) == 4 else 128
        number = int.from_bytes(address, "big")
        tables = self._tables[bits]
        for plen in self._lengths[bits]:
            hit = tables[plen].get(number >> (bits - plen))
            if hit is not None:
                return plen, hit
        return None

    def lookup(self, address: str) -> tuple[int, V] | None:
        return self.lookup_bytes(ipaddress.ip_address(address).packed)

    def __contains__(self, address: object) -> bool:
        if isinstance(address, bytes):
            return self.lookup_bytes(address) is not None
        if isinstance(address, str):
            return self.lookup(address) is not None
        return False


def table_of(networks: Iterable[str], value: V) -> PrefixTable[V]:
    """A table holding every network of ``networks`` (CIDR or bare address) mapped to ``value``."""
    table: PrefixTable[V] = PrefixTable()
    for text in networks:
        table.add(ipaddress.ip_network(text, strict=False), value)
    return table
