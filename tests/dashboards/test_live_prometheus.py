"""Every dashboard query and alert rule, executed by a real Prometheus scraping a live agent.

One `vedette run` (event-file input, two small rules of our own) and one `prometheus` (1 s
scrapes, the alert rules loaded) run for the whole module. The fixture feeds events that open,
update, close, suppress and evict alerts, then every PromQL expression of every panel, variable,
annotation and alert rule goes through ``/api/v1/query``: each must parse, and each panel query
must return data unless its panel carries the documented ``vedetteAllowEmpty`` flag. The last
test floods the agent with spoofed source addresses and shows the series count stays flat.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from generator.grafana import ALLOW_EMPTY
from generator.promql import usage

from agent.config import Config
from agent.events import format_timestamp

from .helpers import GRAFANA, RULES, iter_panels
from .netns import VethPair, veth_into_netns
from .prometheus_server import PROMETHEUS, PrometheusServer

try:  # the root conftest and the fake Elasticsearch, whichever way pytest imported tests/
    from tests.conftest import AgentProcess, base_config, deep_merge, free_port
    from tests.es_server import FakeElasticsearch
except ImportError:  # pragma: no cover - tests/ is not a package
    from conftest import AgentProcess, base_config, deep_merge, free_port  # type: ignore
    from es_server import FakeElasticsearch  # type: ignore

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(PROMETHEUS is None, reason="the prometheus Debian package is not installed"),
]
pytest.importorskip("agent.daemon", reason="the daemon is not there yet")

JOB = "vedette"
RANGE = "5m"
# More sources than max_groups (100) and than the suppression meta-alert threshold (1000), so
# evictions, suppression and the meta-alert all happen before the series are counted.
WARMUP_SOURCES = 1500
FLOOD_SOURCES = 20_000

RULE_TEXT = """\
title: Dashboard probe
id: 5d0c7a53-5e43-4a49-9a55-1f0d2b7c0001
name: dashboard_probe
status: test
description: Test rule - one alert per probing source.
author: Vedette tests
logsource: {product: linux, service: sshd}
detection:
  probe: {event.action: dashboard_probe}
  condition: probe
level: high
vedette: {group_by: [source.ip], quiet_period: 2, update_interval: 1, max_groups: 100}
---
title: Dashboard auth failure
id: 5d0c7a53-5e43-4a49-9a55-1f0d2b7c0002
name: dashboard_auth_failure
status: test
description: Test rule - one failed login (silent, counted by the correlation).
author: Vedette tests
logsource: {product: linux, service: sshd}
detection:
  failure: {event.outcome: failure}
  condition: failure
level: informational
---
title: Dashboard brute force
id: 5d0c7a53-5e43-4a49-9a55-1f0d2b7c0003
name: dashboard_bruteforce
status: test
description: Test rule - five failures from one source within a minute.
author: Vedette tests
correlation:
  type: event_count
  rules: [dashboard_auth_failure]
  group-by: [source.ip]
  timespan: 60s
  condition: {gte: 5}
level: medium
vedette: {max_groups: 100, quiet_period: 2, update_interval: 1}
"""


def _event(action: str, outcome: str, ip: str) -> str:
    return json.dumps({
        "@timestamp": format_timestamp(time.time()),
        "logsource": {"product": "linux", "service": "sshd"},
        "event.action": action, "event.outcome": outcome, "source.ip": ip,
        "user.name": "root", "process.name": "sshd",
    })


def _auth_line(ok: bool, ip: str) -> str:
    stamp = time.strftime("%b %d %H:%M:%S", time.localtime())
    what = "Accepted password" if ok else "Failed password"
    return f"{stamp} web1 sshd[4242]: {what} for root from {ip} port 50022 ssh2"


def _spoofed(i: int) -> str:
    """Distinct addresses in 198.18.0.0/15 (documentation benchmark range, never routed)."""
    return f"198.{18 + (i >> 16) % 2}.{(i >> 8) & 255}.{i & 255}"


class Live:
    def __init__(
        self, agent: AgentProcess, prom: PrometheusServer, feed: Path, veth: VethPair | None
    ) -> None:
        self.agent, self.prom, self.feed, self.veth = agent, prom, feed, veth
        self.written = 0

    def feed_lines(self, lines: list[str], malformed: int = 0) -> None:
        with self.feed.open("a") as out:
            out.write("\n".join(lines) + "\n")
        self.written += len(lines) - malformed

    def wait_processed(self, timeout: float = 60.0) -> None:
        def done() -> bool:
            published = self.agent.sample(
                "vedette_events_published_total", {"collector": "event_files"}) or 0
            depth = self.agent.sample("vedette_queue_depth", {"queue": "events"})
            return published >= self.written and depth == 0
        self.agent.wait_for(done, timeout, what=f"{self.written} events through detection")

    def capture_traffic(self, port: int) -> None:
        """UDP to a closed port of the veth peer (ARP, UDP, ICMP unreachable) until the
        capture collector has counted UDP and ICMP: its ring opens a moment after start."""
        assert self.veth is not None
        veth = self.veth

        def seen() -> bool:
            veth.udp_to_closed_port(port, 5)
            return all(
                (self.agent.sample("vedette_capture_packets_total", {"protocol": p}) or 0) > 0
                for p in ("udp", "icmp")
            )
        self.agent.wait_for(seen, 30, what="UDP and ICMP counted by the capture collector")
        veth.tcp_to_closed_port(port, 3)
        assert veth.dns_exchange(3) == 3, "the NXDOMAIN responder in the namespace answers"

        def counted() -> bool:
            sample = self.agent.sample
            return ((sample("vedette_capture_tcp_control_total", {"kind": "syn"}) or 0) >= 3
                    and (sample("vedette_capture_tcp_control_total", {"kind": "rst"}) or 0) >= 3
                    and (sample("vedette_capture_dns_queries_total") or 0) >= 3
                    and (sample("vedette_capture_dns_responses_total",
                                {"rcode": "nxdomain"}) or 0) >= 3
                    # Flows are accounted when their interval ends: wait for the TCP ones, or
                    # their protocol/direction series would appear during the flood test.
                    and (sample("vedette_capture_packets_total", {"protocol": "tcp"}) or 0) > 0)
        self.agent.wait_for(counted, 30, what="SYN, RST and DNS counted by the capture collector")

    def variables(self) -> dict[str, str]:
        instance = self.prom.targets[0]
        return {
            "job": JOB, "instance": instance,
            "interface": ".+",  # the variable's "All"
            "rules": ".*", "__rate_interval": "5s", "__interval": "1s", "__range": RANGE,
        }


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with veth_into_netns() as veth:
        yield from _live(tmp_path_factory.mktemp("live"), veth)


def _live(work: Path, veth: VethPair | None) -> Iterator[Live]:
    rules = work / "rules"
    rules.mkdir()
    (rules / "dashboard_test.yml").write_text(RULE_TEXT)
    # A broken rule file: the agent starts on the valid rules and counts one load error,
    # which the VedetteRuleLoadErrors alert must turn into a firing alert.
    (rules / "broken.yml").write_text(
        "title: Broken\nid: 5d0c7a53-5e43-4a49-9a55-1f0d2b7c00ff\n"
        "logsource: {product: linux, service: sshd}\n"
        "detection: {selection: {event.action: x}, condition: missing_selection}\n"
    )
    feed = work / "events.jsonl"
    feed.touch()
    port = free_port()
    agent_dir = work / "agent"
    agent_dir.mkdir()
    auth_log = work / "auth.log"
    auth_log.touch()
    watched = work / "fim" / "sshd_config"
    watched.parent.mkdir()
    watched.write_text("PermitRootLogin no\n")
    blocklist = work / "blocklist.netset"
    blocklist.write_text("# test feed\n198.18.99.0/24\n198.19.99.0/24\n")
    es = FakeElasticsearch().start()
    config = deep_merge(base_config(agent_dir, port), {
        "detection": {"shipped_rules": False, "rule_paths": [str(rules)], "watch_rules": True,
                      "watch_interval_seconds": 1.0},
        "inputs": {"event_files": [str(feed)], "event_files_interval_seconds": 0.2},
        "elasticsearch": {"hosts": [es.url], "batch_max_age_seconds": 0.2},
        "threat_intel": {"files": [str(blocklist)]},
    })
    udp_port = free_port()
    config = deep_merge(config, _collectors(auth_log, watched, veth))
    agent = AgentProcess(agent_dir, config, port)
    prom = PrometheusServer(work / "prom", free_port(), [f"127.0.0.1:{port}"], [RULES], JOB)
    prom.workdir.mkdir()
    agent.start()
    try:
        prom.start()
        state = Live(agent, prom, feed, veth)
        # A probe per source opens, updates and (after 2 s quiet) closes alerts; five failures
        # from one source fire the correlation; one malformed line is counted and skipped.
        state.feed_lines(
            [_event("dashboard_probe", "success", f"198.18.9.{i}") for i in range(1, 4)] * 2
            + [_event("ssh_login", "failure", "198.18.7.7") for _ in range(6)]
            + ["{not json"],
            malformed=1,
        )
        state.wait_processed()
        with auth_log.open("a") as out:
            out.write(f"{_auth_line(False, '198.18.3.3')}\n{_auth_line(True, '198.18.3.4')}\n")
        watched.write_text("PermitRootLogin yes\n")
        if veth is not None:
            state.capture_traffic(udp_port)
        time.sleep(3)  # quiet period passes: alerts close
        # Warm-up flood: more sources than max_groups (evictions) and than the per-minute cap
        # (suppression), so every label value the big flood could touch already exists.
        state.feed_lines(
            [_event("dashboard_probe", "success", _spoofed(i)) for i in range(WARMUP_SOURCES)]
            + [_event("ssh_login", "failure", _spoofed(i)) for i in range(WARMUP_SOURCES)]
        )
        state.wait_processed()
        prom.wait_scrapes(4)
        yield state
    finally:
        prom.stop()
        agent.kill()
        es.stop()


def _collectors(auth_log: Path, watched: Path, veth: VethPair | None) -> dict[str, Any]:
    """Auth log and file integrity on test files, capture on our own veth (IPv4 and ARP only:
    IPv6 neighbour discovery would add a protocol at an unpredictable moment); the
    machine-wide collectors off (their events depend on what else runs on this machine, which
    would make series counts drift)."""
    capture: dict[str, Any] = {"enabled": False}
    if veth is not None:
        capture = {"enabled": True, "interfaces": [veth.host_if], "ring_blocks": 4,
                   "health_interval_seconds": 1.0, "bpf_filter": "ip or arp"}
    wanted: dict[str, Any] = {
        "capture": capture,
        "auth_logs": {"paths": [str(auth_log)], "journal": "off", "start_at_end": False,
                      "poll_interval_seconds": 0.2},
        "fim": {"default_watch_list": False, "paths": [str(watched)]},
        "process": {"enabled": False}, "sockets": {"enabled": False},
        "web_logs": {"enabled": False}, "auditd": {"enabled": False},
        "kernel_modules": {"enabled": False},
    }
    return {k: v for k, v in wanted.items() if k in Config.model_fields}


def _substitute(expr: str, variables: dict[str, str]) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name.isdigit():
            return m.group(0)  # a regex group of label_replace: Grafana leaves it alone too
        if name not in variables:
            raise AssertionError(f"no test value for Grafana variable ${name} in {expr}")
        return variables[name]
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, expr)


def _dashboards() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(GRAFANA.glob("*.json"))]


def _panel_targets() -> list[tuple[str, str, str, str | None]]:
    """(dashboard, panel, expr, allow-empty reason) for every Prometheus query."""
    out = []
    for dash in _dashboards():
        for panel in iter_panels(dash["panels"]):
            for t in panel.get("targets", []):
                if "expr" in t:
                    out.append((dash["title"], panel["title"], t["expr"], panel.get(ALLOW_EMPTY)))
    return out


@pytest.mark.parametrize(
    ("expr", "why"),
    [
        ('sum(vedette_alert_updates_total{status="open"})', "alerts opened"),
        ('sum(vedette_alert_updates_total{status="closed"})', "alerts closed after quiet period"),
        ('sum(vedette_alerts_total{rule="5d0c7a53-5e43-4a49-9a55-1f0d2b7c0003"})',
         "correlation fired"),
        ('sum(vedette_alerts_suppressed_total{reason="dropped"})', "per-minute cap hit"),
        ("sum(vedette_correlation_group_evictions_total)", "max_groups evictions"),
        ('sum(vedette_input_errors_total{source="event_file"})', "malformed line counted"),
        ('sum(vedette_logins_total{outcome="failure"})', "auth log parsed"),
        ("sum(vedette_fim_changes_total)", "file change seen"),
        ('sum(vedette_es_docs_shipped_total{stream="alerts"})', "alerts shipped to ES"),
        ("sum(vedette_es_reachable)", "ES reachable"),
        ("sum(vedette_threat_intel_networks)", "threat-intel feed loaded"),
        ('count(vedette_job_runs_total{task="collect_host_metrics"})',
         "scheduler jobs arrive labelled task, as the panels and rules expect"),
        ('sum(vedette_capture_packets_total{protocol="udp"})', "UDP captured on the veth"),
        ('sum(vedette_capture_packets_total{protocol="icmp"})', "ICMP unreachable captured"),
        ('sum(vedette_capture_packets_total{protocol="arp"})', "ARP captured"),
        ("sum(vedette_capture_ring_packets_total)", "kernel ring statistics read"),
        ('sum(vedette_capture_tcp_control_total{kind="syn"})', "SYNs to a closed port"),
        ('sum(vedette_capture_tcp_control_total{kind="rst"})', "the peer's RSTs"),
        ("sum(vedette_capture_dns_queries_total)", "DNS queries captured"),
        ('sum(vedette_capture_dns_responses_total{rcode="nxdomain"})', "NXDOMAIN answers"),
    ],
)
def test_the_activity_behind_the_panels_happened(live: Live, expr: str, why: str) -> None:
    """The panels' zero fallbacks must not hide missing activity: each of these is real."""
    if "logins" in expr and "auth_logs" not in Config.model_fields:
        pytest.skip("auth log collector not configured in this build")
    if "fim" in expr and "fim" not in Config.model_fields:
        pytest.skip("file integrity collector not configured in this build")
    if "capture" in expr and live.veth is None:
        pytest.skip("no capturable interface (needs root and iproute2)")
    assert (live.prom.value(expr) or 0) > 0, why


def test_every_panel_query_parses_and_returns_data(live: Live) -> None:
    variables = live.variables()
    empty, failed = [], []
    for dash, panel, expr, allow_empty in _panel_targets():
        try:
            result = live.prom.query(_substitute(expr, variables))
        except AssertionError as exc:
            failed.append(f"{dash} / {panel}: {exc}")
            continue
        if not result and not allow_empty:
            if "vedette_capture_" in expr and live.veth is None:
                continue  # no veth without root: only CI/root runs check these
            empty.append(f"{dash} / {panel}: {expr}")
    assert not failed, "queries Prometheus rejected:\n" + "\n".join(failed)
    assert not empty, "panel queries without data:\n" + "\n".join(empty)


def test_rule_panels_show_titles_not_ids(live: Live) -> None:
    """Legends of the by-rule panels come from vedette_rule_info: the test rules' titles."""
    variables = live.variables()
    exprs = [expr for dash, panel, expr, _ in _panel_targets()
             if (dash, panel) == ("Vedette / Fleet overview", "Top rules (range)")]
    assert exprs, "the Fleet overview's Top rules panel"
    titles = {r["metric"].get("title") for r in live.prom.query(_substitute(exprs[0], variables))}
    assert {"Dashboard probe", "Dashboard brute force"} <= titles, titles


def test_every_metric_a_panel_names_is_exposed_by_the_agent(live: Live) -> None:
    """Catches a typo hidden behind an `or ... * 0` fallback: the family must be scraped."""
    meta = live.prom.api("/api/v1/targets/metadata", {"match_target": f'{{job="{JOB}"}}'})
    families = {m["metric"] for m in meta}
    synthetic = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
    missing = set()
    for _, _, expr, allow_empty in _panel_targets():
        if allow_empty:
            continue
        for name in usage(expr).metrics - synthetic:
            base = re.sub(r"_(total|info|bucket|sum|count|created)$", "", name)
            if name not in families and base not in families:
                missing.add(name)
    assert not missing, f"catalogued but not exposed by the running agent: {sorted(missing)}"


def test_variable_and_annotation_queries(live: Live) -> None:
    variables = live.variables()
    for dash in _dashboards():
        for var in dash["templating"]["list"]:
            if var["type"] != "query":
                continue
            m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", var["query"])
            assert m, var["query"]
            values = live.prom.api(f"/api/v1/label/{m.group(2)}/values",
                                   {"match[]": _substitute(m.group(1), variables)})
            assert values, f"{dash['title']}: variable {var['name']} has no values"
        for ann in dash["annotations"]["list"]:
            if "expr" in ann:
                live.prom.query(_substitute(ann["expr"], variables))  # must parse


def test_every_alert_rule_parses_and_is_healthy(live: Live, alert_rules) -> None:
    groups = live.prom.api("/api/v1/rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert sorted(r["name"] for r in rules) == sorted(r["alert"] for r in alert_rules)
    for rule in rules:
        live.prom.query(rule["query"])  # parses as an instant query too
    live.prom.wait_scrapes(2)  # at least one evaluation round after the activity
    rules = [r for g in live.prom.api("/api/v1/rules")["groups"] for r in g["rules"]]
    unhealthy = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not unhealthy, unhealthy


def test_an_alert_rule_fires_against_the_live_agent(live: Live) -> None:
    """The broken rule file of the fixture fires VedetteRuleLoadErrors in the real Prometheus."""
    assert (live.prom.value(f'sum(vedette_rule_load_errors_total{{job="{JOB}"}})') or 0) >= 1
    deadline = time.monotonic() + 30
    firing: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not firing:
        firing = [a for a in live.prom.api("/api/v1/alerts")["alerts"]
                  if a["labels"]["alertname"] == "VedetteRuleLoadErrors"
                  and a["state"] == "firing"]
        time.sleep(0.5)
    assert firing, "VedetteRuleLoadErrors did not fire"
    assert firing[0]["labels"]["instance"] == live.prom.targets[0]
    assert firing[0]["annotations"]["summary"].endswith(live.prom.targets[0])


CAPTURE_TRAFFIC = ("vedette_capture_packets_", "vedette_capture_bytes_")


def _series(live: Live) -> set[str]:
    # Host telemetry is excluded: interfaces and mounts come and go with other work on the box.
    # So are the capture packet/byte series: their labels are only protocol and direction (a
    # bounded set), and one appears when the capture first sees that kind of packet, whenever
    # the box's own traffic brings it.
    result = live.prom.query(
        f'{{job="{JOB}", __name__!~"vedette_host_.*|vedette_capture_(packets|bytes)_.*"}}')
    assert result
    return {json.dumps(r["metric"], sort_keys=True) for r in result}


def test_series_stay_flat_under_a_spoofed_source_flood(live: Live) -> None:
    before = _series(live)
    lines_before = [s for s in live.agent.scrape().splitlines()
                    if s and not s.startswith(("#", "vedette_host_", *CAPTURE_TRAFFIC))]
    live.feed_lines(
        [_event("dashboard_probe", "success", _spoofed(i))
         for i in range(WARMUP_SOURCES, WARMUP_SOURCES + FLOOD_SOURCES // 2)]
        + [_event("ssh_login", "failure", _spoofed(i))
           for i in range(WARMUP_SOURCES, WARMUP_SOURCES + FLOOD_SOURCES // 2)]
    )
    live.wait_processed(timeout=120)
    live.prom.wait_scrapes(3)
    after = _series(live)
    lines_after = [s for s in live.agent.scrape().splitlines()
                   if s and not s.startswith(("#", "vedette_host_", *CAPTURE_TRAFFIC))]
    assert after == before, (
        f"series {len(before)} -> {len(after)} under the flood; new: {sorted(after - before)}, "
        f"gone: {sorted(before - after)}"
    )
    assert len(lines_after) == len(lines_before)
    leaked = [s for s in lines_after if re.search(r'"198\.1[89]\.', s)]
    assert not leaked, f"source addresses leaked into labels: {leaked[:3]}"
    evicted = live.prom.value(f'sum(vedette_correlation_group_evictions_total{{job="{JOB}"}})')
    assert (evicted or 0) >= FLOOD_SOURCES // 2, "the flood did not reach the correlation engine"
