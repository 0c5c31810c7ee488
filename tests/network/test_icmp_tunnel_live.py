"""A real ptunnel-ng tunnel in the namespace lab, live and by replay: proxy in the target
namespace, client in the attacker's fetching 2 MB over HTTP through it. The daemon capturing
in the target namespace and ``vedette replay`` of the target-side pcap must both raise
``icmp_tunnel_volume`` naming the proxy as the sender of the tunnelled bytes and the client
as its peer (the echo replies carry the data to the client)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator

import pytest

from tests.network.toolrun import ATK, PYTHON, TGT, ToolLab, missing_tools

pytestmark = [pytest.mark.netns, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("the network lab needs root (namespaces, raw sockets)", allow_module_level=True)
if missing_tools() or shutil.which("ptunnel-ng") is None or shutil.which("curl") is None:
    pytest.skip("lab tools, ptunnel-ng or curl missing", allow_module_level=True)


@pytest.fixture(scope="module")
def tl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToolLab]:
    tl = ToolLab(tmp_path_factory.mktemp("ptunnel"))
    try:
        tl.up([])
        www = tl.workdir / "www"
        www.mkdir()
        (www / "big.bin").write_bytes(bytes(range(256)) * 8192)  # 2 MB
        tl.lab.spawn("tgt", "timeout", "120", PYTHON, "-m", "http.server", "8080", "--bind",
                     TGT, "--directory", str(www), log="http.log")
        tl.lab.spawn("tgt", "timeout", "120", "ptunnel-ng", "-m77", log="ptunnel-proxy.log")
        time.sleep(1)
        yield tl
    finally:
        tl.down()


def test_ptunnel_download_live_and_replayed(tl: ToolLab) -> None:
    out = tl.workdir / "fetched.bin"
    run = tl.record(ATK, "bash", "-c",
                    f"ptunnel-ng -m77 -p{TGT} -l2222 -r{TGT} -R8080 & sleep 2; "
                    f"curl -s -m 60 -o {out} http://127.0.0.1:2222/big.bin; kill %1",
                    timeout=80, settle=2.0)
    assert out.exists() and out.stat().st_size >= 1_000_000, "the tunnel moved too little"
    live, replayed = run.compare(timeout=15)
    assert ("icmp_tunnel_volume", TGT, ATK) in replayed, replayed
    assert ("icmp_tunnel_shape", ATK, TGT) in replayed, replayed  # the client asked
    assert live == replayed
    assert "T1095" in run.techniques("icmp_tunnel_volume")
    assert "T1095" in run.techniques("icmp_tunnel_shape")
