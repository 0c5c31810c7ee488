"""Real ``nmap -n -Pn -sV`` between lab namespaces against a web server, a silent TCP service
and sshd: the live agent (capturing in the target namespace) and a replay of the target's
capture raise the same ``nmap_version_scan`` alert, source the scanner, destination the target,
ATT&CK T1046."""

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
    tl = ToolLab(tmp_path_factory.mktemp("versionscan"))
    try:
        yield tl.up([])
    finally:
        tl.down()


def test_nmap_version_scan_live_and_replayed(tl: ToolLab) -> None:
    web, silent = free_port(), free_port()
    tl.lab.spawn("tgt", "timeout", "150", PYTHON, "-m", "http.server", str(web), "--bind", TGT,
                 log="http.log")
    tl.lab.spawn("tgt", "timeout", "150", "ncat", "-l", "-k", TGT, str(silent), log="ncat.log")
    tl.sshd()
    run = tl.record(TGT, "nmap", "-n", "-Pn", "-sV", "--version-light", "-p",
                    f"22,{web},{silent}", TGT, timeout=120, settle=2.0)
    live, replayed = run.compare(timeout=15)
    expected = ("nmap_version_scan", ATK, TGT)
    assert expected in replayed, replayed
    assert expected in live, live
    assert run.techniques("nmap_version_scan") == {"T1046"}
