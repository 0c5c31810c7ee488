"""A correlation window across ``kill -9``: 3 failed SSH logins from one address are read,
their log position acknowledged (so they are never read again), the agent is killed, 2 more
failures follow — the shipped brute-force correlation (5 within 10 minutes) fires once, and
its alert is exactly once in Elasticsearch (the project's fake server), because the window
was in the detection checkpoint written before the position moved. Without the checkpoint the
restarted agent would count 2, and nothing would fire.

The log is written fast (bursts of other addresses' failures, each below the threshold, and
accepted logins) so that the kill lands while lines are queued, not on an idle agent."""

from __future__ import annotations

import json
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.sinks.es_docs import alerts_stream, latest_index
from tests.conftest import AgentProcess
from tests.es_server import FakeElasticsearch

REPO = Path(__file__).resolve().parents[2]
ATTACKER = "198.18.7.7"
BRUTE_FORCE = "37b4f665-86db-49b5-b86f-fa53159d6c25"


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _failure(ip: str, n: int) -> str:
    return (f"{_stamp()} web1 sshd[{2000 + n}]: Failed password for root from {ip} "
            f"port {30000 + n} ssh2\n")


def _accepted(n: int) -> str:
    return (f"{_stamp()} web1 sshd[{5000 + n}]: Accepted publickey for deploy from "
            f"198.18.9.{n % 250 + 1} port {40000 + n} ssh2\n")


class Noise(threading.Thread):
    """Writes fast until stopped: each other address fails at most twice, logins succeed."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.stop = threading.Event()
        self.written = 0

    def run(self) -> None:
        with self.path.open("a", encoding="ascii") as handle:
            n = 0
            while not self.stop.is_set() and n < 40_000:
                ip = f"198.18.{10 + n // 500}.{n // 2 % 250 + 1}"  # twice each
                handle.write(_failure(ip, n) + _accepted(n))
                n += 1
                if n % 50 == 0:
                    handle.flush()
                    time.sleep(0.005)
            handle.flush()
            self.written = n


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="ascii") as handle:
        handle.write(text)


def _agent(agent_factory: Any, server: FakeElasticsearch, tmp_path: Path, log: Path
           ) -> AgentProcess:
    rules = tmp_path / "rules"
    rules.mkdir()
    shutil.copy(REPO / "rules" / "auth" / "ssh_bruteforce.yml", rules)
    return agent_factory({
        "detection": {"rule_paths": [str(rules)], "shipped_rules": False, "watch_rules": False},
        "auth_logs": {"paths": [str(log)], "journal": "off", "start_at_end": False,
                      "poll_interval_seconds": 0.05, "watch_integrity": False},
        "web_logs": {"enabled": False}, "fim": {"enabled": False},
        "elasticsearch": {"hosts": [server.url], "batch_max_age_seconds": 0.05,
                          "retry_backoff_initial_seconds": 0.05,
                          "retry_backoff_max_seconds": 0.5},
        "sinks": {"jsonl": {"enabled": False}},
    })


def _acknowledged(state: Path) -> int:
    """The acknowledged offset of the auth log (0 before the first save)."""
    try:
        data = json.loads((state / "offsets-auth-logs.json").read_text())
    except (OSError, ValueError):
        return 0
    return max((int(v["offset"]) for v in data.values()), default=0)


def _attacker_in_checkpoint(state: Path) -> bool:
    try:
        data = (state / "alert-state.json").read_bytes()
    except OSError:
        return False
    body = json.loads(data.partition(b"\n")[2] or b"{}")
    groups = body.get("windows", {}).get(BRUTE_FORCE, {}).get("groups", [])
    return any(g["k"] == {"t": [ATTACKER]} and len(g["q"]) == 3 for g in groups)


def test_a_brute_force_split_by_kill9_fires_exactly_once(
    agent_factory: Any, server: FakeElasticsearch, tmp_path: Path
) -> None:
    log = tmp_path / "auth.log"
    log.touch()
    agent = _agent(agent_factory, server, tmp_path, log)
    state = Path(agent.config["agent"]["state_dir"])
    agent.start()
    noise = Noise(log)
    noise.start()
    time.sleep(0.3)
    for n in range(3):
        _append(log, _failure(ATTACKER, n))
    third = log.stat().st_size  # the three failures end at or before this offset
    # the three are read, checkpointed and their position acknowledged: never read again
    agent.wait_for(lambda: _acknowledged(state) >= third and _attacker_in_checkpoint(state),
                   60, "the three failures acknowledged")
    agent.kill()
    noise.stop.set()
    noise.join(30)
    assert not [d for d in server.cluster.docs(latest_index("default"))
                if d.source["rule"]["id"] == BRUTE_FORCE], "fired before the kill"
    for n in range(3, 5):
        _append(log, _failure(ATTACKER, n))
    agent.start()

    def fired() -> list[Any]:
        return [d for d in server.cluster.docs(alerts_stream("default"))
                if d.source["rule"]["id"] == BRUTE_FORCE]

    agent.wait_for(lambda: bool(fired()), 60, "the brute force alert in Elasticsearch")
    time.sleep(2.0)  # anything that would fire twice has had time to
    agent.stop()
    snapshots = fired()
    assert {d.source["event"]["id"] for d in snapshots} and len(
        {d.source["event"]["id"] for d in snapshots}) == 1, "one alert"
    opened = [d for d in snapshots if d.source["vedette"]["alert"]["status"] == "open"]
    assert len(opened) == 1, "opened exactly once"
    (latest,) = [d for d in server.cluster.docs(latest_index("default"))
                 if d.source["rule"]["id"] == BRUTE_FORCE]
    assert latest.source["vedette"]["group"]["source.ip"] == ATTACKER
    assert latest.source["vedette"]["alert"]["count"] >= 5
    # no other address reached the threshold: the noise stayed below it
    others = {d.source["vedette"]["group"]["source.ip"]
              for d in server.cluster.docs(latest_index("default"))}
    assert others == {ATTACKER}
