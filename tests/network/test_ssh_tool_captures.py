"""The real-tool SSH captures of tests/fixtures/pcap/tools/ replayed with the network rules:
hydra ``-t 1``/``-t 4``, ncrack at polite timing (``-T2``) and medusa ``-t 1`` are each one
``ssh_wire_bruteforce`` alert naming the guesser (198.18.0.20) as source and the server as
destination, ATT&CK T1110.001; 30 key-based logins in about a minute raise nothing.

The live side (the same tools against a real sshd, the daemon capturing in the server's
namespace) is tests/network/test_lab_ssh.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tests" / "fixtures" / "pcap" / "tools"
GUESSER, SERVER = "198.18.0.20", "198.18.0.10"


def replay(name: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "agent.cli", "replay", "--json", "--rules",
         str(REPO / "rules" / "network"), str(TOOLS / name)],
        capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert out.returncode in (0, 1), out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("name", ["hydra_ssh_t1.pcap", "hydra_ssh_t4.pcap",
                                  "ncrack_ssh_polite.pcap", "medusa_ssh_t1.pcap"])
def test_real_guessing_tool_capture_is_one_wire_bruteforce_alert(name: str) -> None:
    docs = replay(name)
    assert [(d["rule"]["name"], d["source"]["ip"], d["destination"]["ip"]) for d in docs] == [
        ("SSH password guessing seen on the wire", GUESSER, SERVER)], docs
    threat = json.dumps(docs[0]["threat"])
    assert "T1110.001" in threat and "T1110" in threat


def test_thirty_key_logins_in_a_minute_capture_raises_nothing() -> None:
    assert replay("ssh_30_key_logins.pcap") == []
