"""The layering of agent/: detection depends on nothing above it (import-linter contracts).

The contracts are in pyproject.toml (``[tool.importlinter]``); import-linter builds the import
graph of the whole package (grimp), so an indirect import — detection → X → collectors — breaks
the contract as surely as a direct one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]


def test_the_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([lint, "--config", "pyproject.toml", "--no-cache"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_the_graph_sees_the_imports_the_contract_is_about() -> None:
    """A vacuous contract (a renamed package, an empty graph) would pass for nothing: the
    offline package does reach the collectors and the packet stages, detection does not."""
    graph = grimp.build_graph("agent", cache_dir=None)
    assert graph.find_shortest_chain("agent.offline.logs", "agent.collectors.parsers.decoders")
    assert graph.find_shortest_chain("agent.offline.pcap", "agent.netevents.processor")
    for above in ("agent.offline", "agent.collectors", "agent.netevents"):
        assert not graph.chain_exists("agent.detection", above, as_packages=True), above
    assert graph.chain_exists("agent.offline", "agent.detection", as_packages=True)
