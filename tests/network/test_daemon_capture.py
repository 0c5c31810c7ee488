"""The real daemon without CAP_NET_RAW: one clear warning, a degraded gauge, the rest runs."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import AgentProcess

pytestmark = pytest.mark.e2e


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to drop CAP_NET_RAW from the bounding set")
def test_without_cap_net_raw_capture_is_degraded_and_the_rest_runs(
    agent_factory: Callable[..., AgentProcess],
) -> None:
    overrides: dict[str, Any] = {
        "process": {"enabled": False}, "sockets": {"enabled": False},
        "auth_logs": {"enabled": False}, "web_logs": {"enabled": False},
        "fim": {"enabled": False}, "kernel_modules": {"enabled": False},
        "auditd": {"enabled": False}, "capture": {"enabled": True},
    }
    agent = agent_factory(overrides, command_prefix=["setpriv", "--bounding-set", "-net_raw"])
    agent.start()
    try:
        agent.wait_for(
            lambda: agent.sample("vedette_collector_degraded",
                                 {"collector": "packet_capture"}) == 1.0,
            what="packet_capture marked degraded",
        )
        agent.wait_for(
            lambda: (agent.sample("vedette_host_collect_timestamp_seconds") or 0) > 0,
            what="host metrics still collected",
        )
        logs = agent.logs()
        assert logs.count("CAP_NET_RAW") == 1, logs
        assert "network rules receive no packets" in logs
    finally:
        assert agent.stop() == 0
