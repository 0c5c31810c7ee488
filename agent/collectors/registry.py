"""Which collectors the daemon runs: the builders of every collector package, by config section.

Each package lists its own builders (:data:`agent.collectors.host.BUILDERS`,
:data:`agent.collectors.logs.BUILDERS`, :data:`agent.capture.builder.NETWORK_BUILDERS`); this
module only merges them, in that order, and refuses two builders for one section name. The
types a builder needs (:class:`~agent.collectors.base.CollectorContext`,
:data:`~agent.collectors.base.Builder`) live in :mod:`agent.collectors.base`, so nothing a builder
imports leads back here.
"""

from __future__ import annotations

from agent.capture.builder import NETWORK_BUILDERS
from agent.collectors.base import Builder
from agent.collectors.host import BUILDERS as HOST_BUILDERS
from agent.collectors.logs import BUILDERS as LOG_BUILDERS


def _merge(*groups: dict[str, Builder]) -> dict[str, Builder]:
    merged: dict[str, Builder] = {}
    for group in groups:
        for name, builder in group.items():
            if name in merged:
                raise RuntimeError(f"two collector builders for {name!r}")
            merged[name] = builder
    return merged


BUILDERS: dict[str, Builder] = _merge(HOST_BUILDERS, LOG_BUILDERS, NETWORK_BUILDERS)
