"""Kernel modules loaded or removed since the previous run (``/proc/modules`` diff).

The first run records the baseline. Later runs report ``vedette``/``kernel_module`` events,
``event.action`` ``loaded`` or ``unloaded``, with the module name, size, state and the taint
flags the kernel prints (``(OE)`` marks an out-of-tree, unsigned module: the usual rootkit).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from agent.collectors.base import AnyCollector, CollectorContext
from agent.errors import CollectorError
from agent.events import Event, LogSource

KERNEL_MODULE = LogSource("vedette", "kernel_module")


class Module(NamedTuple):
    name: str
    size: int
    state: str
    taints: str


def parse_modules(text: str) -> dict[str, Module]:
    """``/proc/modules`` → name → module; malformed lines are skipped."""
    out: dict[str, Module] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 5 or not (parts[1].isascii() and parts[1].isdigit()):
            continue
        taints = parts[6].strip("()") if len(parts) > 6 and parts[6].startswith("(") else ""
        out[parts[0]] = Module(parts[0], int(parts[1]), parts[4], taints)
    return out


class KernelModuleCollector:
    name = "kernel_modules"

    def __init__(self, interval_seconds: float = 30.0, proc_root: Path = Path("/proc"),
                 host_name: str = "", clock: Callable[[], float] = time.time) -> None:
        self.interval_seconds = interval_seconds
        self._path = proc_root / "modules"
        self._host = host_name
        self._clock = clock
        self._known: dict[str, Module] | None = None

    def collect(self) -> list[Event]:
        try:
            current = parse_modules(self._path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            return []
        previous, self._known = self._known, current
        if previous is None:
            return []
        now = self._clock()
        events = [self._event(now, m, "loaded") for n, m in current.items() if n not in previous]
        events += [self._event(now, m, "unloaded") for n, m in previous.items()
                   if n not in current]
        return events

    def _event(self, now: float, module: Module, action: str) -> Event:
        fields: dict[str, Any] = {
            "event.kind": "event", "event.category": "driver", "event.action": action,
            "event.dataset": "vedette.kernel_modules", "kernel_module.name": module.name,
            "kernel_module.size": module.size, "kernel_module.state": module.state,
            "kernel_module.taints": module.taints,
            "kernel_module.out_of_tree": "O" in module.taints,
            "kernel_module.unsigned": "E" in module.taints,
        }
        if self._host:
            fields["host.name"] = self._host
        return Event(now, KERNEL_MODULE, fields)


def build(ctx: CollectorContext) -> list[AnyCollector]:
    """The ``kernel_modules`` section's collector; CollectorError without ``/proc/modules``."""
    section = ctx.config.kernel_modules
    if not section.enabled:
        return []
    proc = Path("/proc")
    if not (proc / "modules").exists():
        raise CollectorError("/proc/modules does not exist (no module support or a sandbox)")
    return [KernelModuleCollector(section.interval_seconds, proc, ctx.identity.host_name)]
