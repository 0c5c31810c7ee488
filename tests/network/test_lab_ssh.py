"""SSH password guessing and scripted logins against a real sshd, and IPv6 neighbour-discovery
spoofing sent with scapy from the segment, the agent capturing live in the server's namespace
(rules/network only).

30 scripted logins in under a minute (key and password) must raise nothing; hydra ``-t 4``
(from the attacker) and ``-t 1`` (from the client namespace, so it is a new alert group), ncrack
``-T2`` and medusa ``-t 1`` (each from an address of its own) must raise ``ssh_wire_bruteforce``
naming the guesser as ``source``. The replay side of the same
traffic is the rule fixture (rules/network/ssh_wire_bruteforce.tests/, captured by
tests/network/make_ssh_fixtures.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.network.lab import ADDRESSES, Lab, missing_tools
from tests.network.make_ssh_fixtures import (
    WORDS,
    key_login,
    lab_user,
    password_login,
    start_sshd,
)
from tests.network.test_lab import PYTHON, Agent

pytestmark = [pytest.mark.netns, pytest.mark.slow]

TGT, ATK, CLI = ADDRESSES["tgt"], ADDRESSES["atk"], ADDRESSES["cli"]

if missing_tools() or shutil.which("hydra") is None or shutil.which("sshpass") is None:
    pytest.skip("lab tools missing (hydra, sshpass, openssh-server …)", allow_module_level=True)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    workdir = tmp_path_factory.mktemp("sshlab")
    lab = Lab(workdir)
    # sshd reads the authorized keys as the lab user: a directory every user can traverse
    with lab_user(), tempfile.TemporaryDirectory(prefix="vd-sshkeys-") as keydir:
        os.chmod(keydir, 0o755)
        try:
            lab.up()
            start_sshd(lab, Path(keydir))
            (workdir / "keys").symlink_to(keydir)
            yield lab
        finally:
            lab.down()


@pytest.fixture(scope="module")
def agent(lab: Lab) -> Agent:
    agent = Agent(lab, lab.workdir)
    agent.wait_capturing()
    time.sleep(0.5)
    return agent


def test_thirty_scripted_logins_in_a_minute_raise_nothing(lab: Lab, agent: Agent) -> None:
    keys = lab.workdir / "keys"
    started = time.monotonic()
    codes = [key_login(lab, "cli", keys) if i % 2 else
             password_login(lab, "cli", WORDS[20]) for i in range(30)]
    took = time.monotonic() - started
    assert codes == [0] * 30, (lab.workdir / "sshd.log").read_text()[-2000:]
    assert took < 60
    time.sleep(3)
    assert agent.alerts() == []
    assert agent.proc.poll() is None


def _hydra(lab: Lab, role: str, tasks: int) -> None:
    wordlist = lab.workdir / "words.txt"
    wordlist.write_text("\n".join(WORDS) + "\n")
    # hydra writes ./hydra.restore when it is stopped: keep it in the lab's folder
    lab.spawn(role, "env", "-C", str(lab.workdir), "timeout", "150", "hydra", "-l", "vdsshlab",
              "-P", str(wordlist), "-t", str(tasks), "-I", f"ssh://{TGT}",
              log=f"hydra-{role}.log")


@pytest.mark.parametrize(("role", "source", "tasks"), [("atk", ATK, 4), ("cli", CLI, 1)])
def test_hydra_guessing_is_caught_on_the_wire(lab: Lab, agent: Agent, role: str, source: str,
                                              tasks: int) -> None:
    started = time.monotonic()
    _hydra(lab, role, tasks)
    doc, took = agent.wait_alert("ssh_wire_bruteforce", started,
                                 lambda d: d["source"]["ip"] == source, timeout=90)
    assert doc["destination"]["ip"] == TGT
    assert "T1110.001" in json.dumps(doc)
    names = {d["rule"]["name"] for d in agent.alerts()}
    assert not any("connection rate" in n for n in names), names
    print(f"hydra -t {tasks}: alert after {took:.1f} s")



@contextlib.contextmanager
def _from_address(lab: Lab, address: str) -> Iterator[None]:
    """The attacker's connections to the target leave from ``address`` (its own alert group)."""
    lab.run("atk", "ip", "addr", "add", f"{address}/24", "dev", "e0", check=True)
    lab.run("atk", "ip", "route", "replace", f"{TGT}/32", "dev", "e0", "src", address, check=True)
    try:
        yield
    finally:
        lab.run("atk", "ip", "route", "del", f"{TGT}/32")
        lab.run("atk", "ip", "addr", "del", f"{address}/24", "dev", "e0")


GUESSERS = {
    "ncrack -T2": ("198.18.0.81", ["ncrack", "-T2", "--user", "vdsshlab", "-P", "{words}",
                                   f"ssh://{TGT}"]),
    "medusa -t 1": ("198.18.0.82", ["medusa", "-h", TGT, "-u", "vdsshlab", "-P", "{words}",
                                    "-M", "ssh", "-t", "1"]),
}


@pytest.mark.skipif(shutil.which("ncrack") is None or shutil.which("medusa") is None,
                    reason="ncrack or medusa missing")
@pytest.mark.parametrize("tool", sorted(GUESSERS))
def test_ncrack_and_medusa_guessing_is_caught_on_the_wire(lab: Lab, agent: Agent,
                                                          tool: str) -> None:
    """The live side of tests/fixtures/pcap/tools/{ncrack_ssh_polite,medusa_ssh_t1}.pcap (their
    replay: tests/network/test_ssh_tool_captures.py)."""
    source, argv = GUESSERS[tool]
    wordlist = lab.workdir / "words.txt"
    wordlist.write_text("\n".join(WORDS) + "\n")
    with _from_address(lab, source):
        started = time.monotonic()
        proc = lab.spawn("atk", "timeout", "150",
                         *[a.replace("{words}", str(wordlist)) for a in argv],
                         log=f"{tool.split(maxsplit=1)[0]}.log")
        try:
            doc, took = agent.wait_alert("ssh_wire_bruteforce", started,
                                         lambda d: d["source"]["ip"] == source, timeout=140)
        finally:
            lab.stop(proc)
    assert doc["destination"]["ip"] == TGT
    assert "T1110.001" in json.dumps(doc)
    print(f"{tool}: alert after {took:.1f} s")


_ND_SEND = """
import sys
from scapy.all import Ether, IPv6, ICMPv6ND_NA, ICMPv6ND_RA, ICMPv6NDOptDstLLAddr, \\
    ICMPv6NDOptSrcLLAddr, ICMPv6NDOptPrefixInfo, get_if_hwaddr, sendp
mac = get_if_hwaddr("e0")
kind, arg = sys.argv[1], sys.argv[2]
ip6 = IPv6(src="fe80::" + sys.argv[3], dst="ff02::1", hlim=255)
if kind == "na":
    pkt = ip6 / ICMPv6ND_NA(tgt=arg, R=1, S=0, O=1) / ICMPv6NDOptDstLLAddr(lladdr=mac)
else:
    pkt = ip6 / ICMPv6ND_RA() / ICMPv6NDOptSrcLLAddr(lladdr=mac) / \\
        ICMPv6NDOptPrefixInfo(prefix=arg, prefixlen=64)
sendp(Ether(src=mac, dst="33:33:00:00:00:01") / pkt, iface="e0", count=2, verbose=False)
"""


def _nd(lab: Lab, role: str, *args: str) -> None:
    r = lab.run(role, PYTHON, "-c", _ND_SEND, *args, timeout=60)
    assert r.returncode == 0, r.stderr


def test_ipv6_nd_spoofing_and_rogue_router_from_the_segment(lab: Lab, agent: Agent) -> None:
    """scapy on the lab bridge: the gateway's advertisements first, then the attacker's."""
    started = time.monotonic()
    _nd(lab, "gw", "ra", "2001:db8:1::", "1")
    _nd(lab, "gw", "na", "2001:db8:1::1", "1")
    time.sleep(0.5)
    _nd(lab, "atk", "na", "2001:db8:1::1", "66")
    doc, _ = agent.wait_alert("ipv6_nd_spoofing", started, timeout=15)
    assert "2001:db8:1::1" in json.dumps(doc)
    _nd(lab, "atk", "ra", "2001:db8:bad::", "66")
    agent.wait_alert("ipv6_rogue_router", started, timeout=15)
