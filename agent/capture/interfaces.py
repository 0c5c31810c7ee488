"""Which interfaces to capture on, read from ``/sys/class/net`` (of the agent's network namespace).

An interface qualifies when it is administratively up, is not a loopback, matches the configured
list (empty = all) and none of the exclude patterns, and has a link type the decoder reads:
Ethernet-like devices (veth, bridges, bonds, VLANs, wifi) and header-less tunnels (tun, wg).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from agent.netdecode.layers import LINKTYPE_ETHERNET, LINKTYPE_RAW

IFF_UP = 0x1
IFF_LOOPBACK = 0x8
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
ARPHRD_NONE = 65534
_LINKTYPES = {ARPHRD_ETHER: LINKTYPE_ETHERNET, ARPHRD_NONE: LINKTYPE_RAW}


@dataclass(frozen=True)
class Interface:
    name: str
    linktype: int
    """pcap link type of what an AF_PACKET SOCK_RAW socket returns on it."""


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip(), 0)
    except (OSError, ValueError):
        return None


def discover(
    wanted: list[str], exclude: list[str], sys_net: Path = Path("/sys/class/net")
) -> tuple[list[Interface], list[str]]:
    """``(interfaces to capture, names skipped because their link type is unsupported)``."""
    found: list[Interface] = []
    unsupported: list[str] = []
    try:
        names = sorted(p.name for p in sys_net.iterdir())
    except OSError:
        return [], []
    for name in names:
        if wanted and name not in wanted:
            continue
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude):
            continue
        flags = _read_int(sys_net / name / "flags")
        arphrd = _read_int(sys_net / name / "type")
        if flags is None or arphrd is None:
            continue
        if not flags & IFF_UP or flags & IFF_LOOPBACK or arphrd == ARPHRD_LOOPBACK:
            continue
        linktype = _LINKTYPES.get(arphrd)
        if linktype is None:
            unsupported.append(name)
            continue
        found.append(Interface(name, linktype))
    return found, unsupported
