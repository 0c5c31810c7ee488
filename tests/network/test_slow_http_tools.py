"""Slow HTTP DoS with the real ``slowhttptest`` (Debian), live and by replay: slowloris (``-H``)
and slow read (``-X``) against a threaded-enough HTTP server in the target namespace (asyncio,
written here: ``python -m http.server`` serves one request at a time and dies early). The
daemon capturing in the target namespace and ``vedette replay`` of the target-side pcap must
both raise ``slowloris_client`` naming the attacker as source, with ATT&CK T1499.002.

Each mode gets its own lab and agent: both come from the attacker's one address, and one live
alert per (rule, group) would otherwise hide a second run's miss.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.network.toolrun import ATK, PYTHON, TGT, ToolLab, missing_tools

pytestmark = [pytest.mark.netns, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("the network lab needs root (namespaces, raw sockets)", allow_module_level=True)
if missing_tools() or shutil.which("slowhttptest") is None:
    pytest.skip("lab tools or slowhttptest missing", allow_module_level=True)

SERVER = """
import asyncio, sys
BODY = b"x" * 262144
async def serve(reader, writer):
    try:
        while True:  # headers until the blank line (slowloris never sends it)
            line = await asyncio.wait_for(reader.readline(), 90)
            if not line:
                return
            if line in (b"\\r\\n", b"\\n"):
                break
        writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(BODY) + BODY)
        await asyncio.wait_for(writer.drain(), 90)
    except (asyncio.TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
async def main():
    server = await asyncio.start_server(serve, sys.argv[1], int(sys.argv[2]), backlog=1024)
    async with server:
        await asyncio.sleep(110)
asyncio.run(main())
"""

MODES = {
    "slowloris": ("-H", "-i", "4"),
    "slow_read": ("-X", "-w", "16", "-y", "32", "-n", "2", "-z", "32"),
}


@pytest.fixture
def tl(tmp_path: Path) -> Iterator[ToolLab]:
    tl = ToolLab(tmp_path)
    try:
        yield tl.up([])
    finally:
        tl.down()


@pytest.mark.parametrize("mode", sorted(MODES))
def test_slowhttptest_is_caught_live_and_by_replay(tl: ToolLab, mode: str) -> None:
    port = free_port()
    tl.lab.spawn("tgt", "timeout", "120", PYTHON, "-c", SERVER, TGT, str(port),
                 log="http.log")
    tl.lab.run("atk", "bash", "-c", f"for i in $(seq 50); do (exec 3<>/dev/tcp/{TGT}/{port}) "
               "2>/dev/null && break; sleep 0.1; done", timeout=15)
    run = tl.record(ATK, "slowhttptest", *MODES[mode], "-c", "300", "-r", "150", "-l", "25",
                    "-u", f"http://{TGT}:{port}/", timeout=40, settle=6)
    live, replayed = run.compare(timeout=20)
    assert ("slowloris_client", ATK, TGT) in replayed, (replayed, tl.lab.workdir)
    assert ("slowloris_client", ATK, TGT) in live, live
    assert live == replayed
    assert "T1499" in run.techniques("slowloris_client")
    subtechniques = {sub for doc in tl.agent.alerts() if doc.get("source", {}).get("ip") == ATK
                     for sub in doc.get("threat", {}).get("technique", {})
                     .get("subtechnique", {}).get("id", [])}
    assert "T1499.002" in subtechniques, subtechniques
