"""Traffic direction (inbound/outbound/internal/external) from the configured local networks."""

from __future__ import annotations

import socket
from collections.abc import Iterable

from agent.threatintel.prefixes import table_of

DEFAULT_LOCAL_NETWORKS = (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8",
    "fc00::/7", "fe80::/10", "::1/128",
)
_CACHE_LIMIT = 65536


class Direction:
    """ECS ``network.direction`` of a packet, with a bounded per-address cache."""

    def __init__(self, local_networks: Iterable[str]) -> None:
        self._table = table_of(local_networks, True)
        self._cache: dict[bytes, bool] = {}

    def is_local(self, address: bytes) -> bool:
        hit = self._cache.get(address)
        if hit is None:
            hit = self._table.lookup_bytes(address) is not None
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[address] = hit
        return hit

    def of(self, src: bytes, dst: bytes) -> str:
        s = self.is_local(src)
        d = self.is_local(dst)
        if s:
            return "internal" if d else "outbound"
        return "inbound" if d else "external"


def ip_text(address: bytes) -> str:
    """Printable form of a raw 4- or 16-byte address."""
    if len(address) == 4:
        return socket.inet_ntop(socket.AF_INET, address)
    return socket.inet_ntop(socket.AF_INET6, address)


def mac_text(address: bytes) -> str:
    """ECS MAC form: upper-case hex pairs joined by dashes (``00-00-5E-00-53-23``)."""
    return address.hex("-").upper()
