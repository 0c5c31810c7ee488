"""Real ``nmap -n -O`` between lab namespaces: the live agent (capturing in the target
namespace) and a replay of the target's capture raise the same ``nmap_os_detection`` alert,
source the scanner, destination the target, ATT&CK T1046."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import free_port
from tests.network.toolrun import ATK, PYTHON, TGT, ToolLab, missing_tools

pytestmark = [pytest.mark.netns, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("the network lab needs root (namespaces, raw sockets)", allow_module_level=True)
if missing_tools():
    pytest.skip(f"lab tools missing: {', '.join(missing_tools())}", allow_module_level=True)


@pytest.fixture(scope="module")
def tl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToolLab]:
    tl = ToolLab(tmp_path_factory.mktemp("osdetect"))
    try:
        yield tl.up([])
    finally:
        tl.down()


def test_nmap_os_detection_live_and_replayed(tl: ToolLab) -> None:
    port = free_port()
    tl.lab.spawn("tgt", "timeout", "90", PYTHON, "-m", "http.server", str(port), "--bind", TGT,
                 log="http.log")
    run = tl.record(TGT, "nmap", "-n", "-Pn", "-O", "--max-os-tries", "1", "-p",
                    f"{port},{port + 1}", TGT, timeout=60, settle=2.0)
    live, replayed = run.compare(timeout=15)
    expected = ("nmap_os_detection", ATK, TGT)
    assert expected in replayed, replayed
    assert expected in live, live
    assert run.techniques("nmap_os_detection") == {"T1046"}
