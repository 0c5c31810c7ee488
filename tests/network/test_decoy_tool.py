"""Real ``nmap -n -sS -D <5 decoys>,ME`` between lab namespaces: the live agent (capturing in
the target namespace) and a replay of the target's capture raise the same decoy-scan alert,
naming the scanner's MAC, with ATT&CK T1046.

The decoys 198.18.0.51 to .55 are secondary addresses of the attacker's interface, as in
tests/network/capture_tool_fixtures.py (so the target's SYN-ACKs to them reach the attacker's
kernel, which resets them: decoys and the real address behave alike on the wire).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.network.toolrun import NAMES, TGT, ToolLab, missing_tools

pytestmark = [pytest.mark.netns, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("the network lab needs root (namespaces, raw sockets)", allow_module_level=True)
if missing_tools():
    pytest.skip(f"lab tools missing: {', '.join(missing_tools())}", allow_module_level=True)

DECOYS = [f"198.18.0.{i}" for i in range(51, 56)]


@pytest.fixture(scope="module")
def tl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToolLab]:
    tl = ToolLab(tmp_path_factory.mktemp("decoys"))
    try:
        yield tl.up(DECOYS)
    finally:
        tl.down()


def decoy_alerts(docs: list[dict[str, Any]]) -> set[tuple[str, tuple[str, ...]]]:
    """``(source.mac, ATT&CK techniques)`` of the decoy-scan alerts."""
    return {(doc.get("source", {}).get("mac", ""),
             tuple(sorted(doc.get("threat", {}).get("technique", {}).get("id", []))))
            for doc in docs if NAMES.get(doc["rule"]["id"]) == "tcp_decoy_scan"}


def test_nmap_decoy_scan_live_and_replayed(tl: ToolLab) -> None:
    run = tl.record(TGT, "nmap", "-n", "-Pn", "-sS", "-D", ",".join(DECOYS) + ",ME", "-e", "e0",
                    "-p", "1-100", TGT)
    replayed = decoy_alerts(run.replay())
    assert len(replayed) == 1, replayed
    [(mac, techniques)] = replayed
    scanner_mac = tl.lab.run("atk", "cat", "/sys/class/net/e0/address", check=True).stdout
    assert mac == scanner_mac.strip().replace(":", "-").upper()
    assert techniques == ("T1046",)
    deadline = time.monotonic() + 10
    live = decoy_alerts(tl.agent.alerts())
    while live != replayed and time.monotonic() < deadline:
        time.sleep(0.2)
        live = decoy_alerts(tl.agent.alerts())
    assert live == replayed
