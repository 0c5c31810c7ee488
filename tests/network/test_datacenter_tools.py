"""Ordinary data-center traffic with real tools between namespaces must raise nothing, live and
by replay of the target-side capture: load-balancer health checks every 0.2 s (every other one
closed with a reset, as HAProxy does), a busy resolver client (2,000 lookups of 200 names),
a 60 MB scp of a backup over SSH, monitoring pings to and from several hosts, NTP polls.

Shorter than the crafted corpus (tests/fixtures/pcap/benign_datacenter.pcap: minutes of
health checks, 400 MB of rsync), which tests/network/test_benign_corpus.py replays.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator

import pytest

from tests.network.lab import ADDRESSES
from tests.network.toolrun import PYTHON, TGT, ToolLab, missing_tools

pytestmark = [pytest.mark.netns, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("the network lab needs root (namespaces, raw sockets)", allow_module_level=True)
if missing_tools() or not shutil.which("sshd") or not shutil.which("hping3"):
    pytest.skip("lab tools missing", allow_module_level=True)

GW, CLI, ATK = ADDRESSES["gw"], ADDRESSES["cli"], ADDRESSES["atk"]

HEALTH_CHECKS = f"""
import socket, struct, time
for i in range(150):
    s = socket.create_connection(({TGT!r}, 8080), timeout=2)
    s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
    while s.recv(4096):
        pass
    if i % 2:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    time.sleep(0.2)
"""

LOOKUPS = """
import random, socket, time
names = [f"api-{i}.svc.lab.test" for i in range(100)]
names += [f"checkout-api-{i}.prod.internal.lab.test" for i in range(100)]
rng = random.Random(7)
for i in range(2000):
    socket.getaddrinfo(names[rng.randrange(200)], None, socket.AF_INET)
    time.sleep(0.02)
"""

NTP_SERVER = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(({GW!r}, 123))
s.settimeout(90)
for _ in range(40):
    data, peer = s.recvfrom(512)
    s.sendto(b"\\x24" + b"\\0" * 47, peer)
"""

NTP_CLIENT = f"""
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 123))
s.settimeout(2)
for _ in range(8):
    s.sendto(b"\\x23" + b"\\0" * 47, ({GW!r}, 123))
    s.recvfrom(512)
    time.sleep(1)
"""


@pytest.fixture(scope="module")
def tl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToolLab]:
    tl = ToolLab(tmp_path_factory.mktemp("datacenter"))
    try:
        yield tl.up([])
    finally:
        tl.down()


def test_datacenter_traffic_raises_nothing_live_or_replayed(tl: ToolLab) -> None:
    lab = tl.lab
    keys = tl.sshd()
    backup = tl.workdir / "backup.bin"
    with backup.open("wb") as f:
        f.write(os.urandom(60 * 1024 * 1024))
    lab.spawn("gw", PYTHON, "-m", "tests.network.labdns", GW, log="dns.log")
    lab.spawn("gw", "timeout", "120", PYTHON, "-c", NTP_SERVER, log="ntpd.log")
    lab.spawn("tgt", "timeout", "120", PYTHON, "-m", "http.server", "8080", "--bind", TGT,
              log="http.log")
    for _ in range(100):  # the web server and sshd are up (bounded: 10 s)
        if lab.run("cli", "curl", "-s", "-o", "/dev/null", f"http://{TGT}:8080/").returncode == 0 \
                and "listening" in (tl.workdir / "sshd.log").read_text(errors="replace"):
            break
        time.sleep(0.1)
    ssh_opts = ("-i", str(keys / "user"), "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes")
    with tl.capture(TGT, settle=2.0) as run:
        checks = lab.spawn("cli", "timeout", "90", PYTHON, "-c", HEALTH_CHECKS, log="lb.log")
        lookups = lab.spawn("tgt", "timeout", "90", PYTHON, "-c", LOOKUPS, log="lookups.log")
        ntp = lab.spawn("tgt", "timeout", "60", PYTHON, "-c", NTP_CLIENT, log="ntp.log")
        copy = lab.run("cli", "scp", *ssh_opts, f"root@{TGT}:{backup}", "/dev/null",
                       timeout=120)
        assert copy.returncode == 0, copy.stderr + (tl.workdir / "sshd.log").read_text()
        for peer in (GW, CLI, ATK):
            lab.run("tgt", "hping3", "-q", "--icmp", "-c", "10", "-i", "u200000", peer)
        lab.run("cli", "hping3", "-q", "--icmp", "-c", "10", "-i", "u200000", TGT)
        for proc, name in ((checks, "lb"), (lookups, "lookups"), (ntp, "ntp")):
            assert proc.wait(100) == 0, (tl.workdir / f"{name}.log").read_text()
    replayed = run.replay()
    assert replayed == []
    assert tl.agent.alerts() == []
    assert tl.agent.proc is not None and tl.agent.proc.poll() is None
    assert run.pcap.stat().st_size > 50 * 1024 * 1024 // 10  # the traffic really was captured
