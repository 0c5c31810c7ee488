"""Who is reporting: host and agent identity stamped on every alert."""

from __future__ import annotations

import platform
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from agent import __version__


@dataclass(frozen=True, slots=True)
class Identity:
    host_name: str
    host_id: str
    agent_id: str
    agent_name: str
    ephemeral_id: str
    version: str = __version__
    os_name: str = "Linux"
    os_kernel: str = ""
    host_ips: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)


def _machine_id(etc: Path) -> str:
    for candidate in (etc / "machine-id", Path("/var/lib/dbus/machine-id")):
        try:
            value = candidate.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if value:
            return value
    return ""


def _agent_id(state_dir: Path, host_id: str) -> str:
    """Stable per installation: kept in the state dir, else derived from the machine id."""
    path = state_dir / "agent-id"
    try:
        value = path.read_text(encoding="ascii").strip()
        if value:
            return value
    except (OSError, UnicodeDecodeError):
        pass
    value = str(uuid.uuid5(uuid.NAMESPACE_OID, host_id)) if host_id else str(uuid.uuid4())
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n", encoding="ascii")
    except OSError:
        pass
    return value


def _host_ips() -> tuple[str, ...]:
    try:
        ips = [
            a.address.split("%")[0]
            for name, addrs in psutil.net_if_addrs().items()
            if name != "lo"
            for a in addrs
            if a.family in (socket.AF_INET, socket.AF_INET6)
        ]
    except Exception:
        return ()
    return tuple(sorted(set(ips)))[:16]


def detect_identity(
    state_dir: Path,
    agent_name: str | None = None,
    labels: dict[str, str] | None = None,
    etc: Path = Path("/etc"),
) -> Identity:
    host_name = socket.gethostname()
    host_id = _machine_id(etc)
    return Identity(
        host_name=host_name,
        host_id=host_id,
        agent_id=_agent_id(state_dir, host_id),
        agent_name=agent_name or host_name,
        ephemeral_id=str(uuid.uuid4()),
        os_kernel=platform.release(),
        host_ips=_host_ips(),
        labels=dict(labels or {}),
    )
