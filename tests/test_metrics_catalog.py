"""Metric catalogue: bounded labels, Prometheus names, scrape-time specs match the collectors."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from foundation_helpers import FIXTURES, FakePsutil, RecordingSink, fresh_metrics
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from agent.collectors.host.resources import HostMetricsCollector
from agent.metrics import NAMESPACE, SCRAPE_TIME, AgentMetrics, MetricSpec, catalog
from agent.pipeline import Pipeline, QueueDepthCollector
from agent.sinks.router import AlertRouter

# A label holding one of these can take as many values as an attacker or a busy host likes.
FORBIDDEN_LABEL_WORDS = frozenset(
    {"ip", "ips", "path", "pid", "user", "username", "uid", "address", "addr", "file",
     "filename", "url", "mac", "cmdline", "hostname", "domain", "port", "query"}
)
NAME = re.compile(r"^vedette_[a-z0-9]+(_[a-z0-9]+)*$")


def instrumented() -> list[MetricWrapperBase]:
    metrics = AgentMetrics(CollectorRegistry())
    found = [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]
    assert len(found) >= 20
    return found


def all_label_sets() -> list[tuple[str, tuple[str, ...]]]:
    rows = [(m._name, tuple(m._labelnames)) for m in instrumented()]
    rows += [(spec.name, spec.labels) for spec in SCRAPE_TIME]
    return rows


@pytest.mark.parametrize(("name", "labels"), all_label_sets())
def test_no_label_carries_an_unbounded_value(name: str, labels: tuple[str, ...]) -> None:
    for label in labels:
        words = set(label.split("_"))
        assert not words & FORBIDDEN_LABEL_WORDS, f"{name}{{{label}}} looks unbounded"


def test_names_follow_prometheus_conventions() -> None:
    for metric in instrumented():
        name, kind = metric._name, metric._type
        assert NAME.match(name), name
        assert name.startswith(NAMESPACE + "_")
        assert metric._documentation.strip(), f"{name} has no help text"
        if kind == "histogram":
            assert name.endswith(("_seconds", "_bytes")), f"histogram {name} needs a base unit"
        if kind in ("gauge", "info"):
            assert not name.endswith("_total"), f"gauge {name} must not end in _total"
        check_units(name)
    for spec in SCRAPE_TIME:
        assert NAME.match(spec.name), spec.name
        assert spec.help.strip()
        if spec.type == "counter":
            assert spec.name.endswith("_total"), spec.name
        else:
            assert not spec.name.endswith("_total"), spec.name
        check_units(spec.name)


def check_units(name: str) -> None:
    base = name.removesuffix("_total")
    for unit in ("seconds", "bytes", "ratio"):
        if f"_{unit}_" in base + "_":
            assert base.endswith(f"_{unit}"), f"{name}: unit _{unit} must come last"
    for bad in ("_ms", "_milliseconds", "_percent", "_kb", "_mb", "_minutes"):
        assert bad not in name, f"{name}: use base units"


def test_scrape_time_names_are_unique_and_not_instrumented_twice() -> None:
    names = [spec.name for spec in SCRAPE_TIME]
    assert len(names) == len(set(names))
    exposed = {m._name for m in instrumented()}
    assert not {n.removesuffix("_total") for n in names} & exposed


def test_catalog_covers_every_sample_name_of_agent_metrics() -> None:
    known = catalog()
    assert known["vedette_events_dropped_total"].type == "counter"
    assert "vedette_job_duration_seconds_bucket" in known
    assert "vedette_build_info" in known
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    metrics.events_dropped.labels("queue", "queue_full").inc()
    metrics.job_duration.labels("host").observe(0.1)
    metrics.rule_matches_silenced.labels(rule="vedette.ssh_bruteforce", reason="filter").inc()
    metrics.rules_disabled.set(1)
    for family in registry.collect():
        for sample in family.samples:
            assert sample.name in known, sample.name


def full_registry() -> CollectorRegistry:
    """AgentMetrics + host collector + queue depths, as the daemon assembles them."""
    metrics = fresh_metrics()
    registry = metrics.registry
    host = HostMetricsCollector(
        exclude_interfaces=["veth*"], exclude_fstypes=["tmpfs"],
        psutil=FakePsutil(), proc_root=FIXTURES / "proc",  # type: ignore[arg-type]
    )
    host.collect()
    registry.register(host.prometheus_collector())
    router = AlertRouter([RecordingSink("jsonl")], metrics)
    registry.register(QueueDepthCollector(Pipeline(None, router, metrics)))  # type: ignore[arg-type]
    metrics.events_dropped.labels("queue", "queue_full").inc(3)
    metrics.job_duration.labels("host_metrics").observe(0.02)
    metrics.alerts.labels("vedette.ssh_bruteforce", "high").inc()
    metrics.rule_matches_silenced.labels("vedette.ssh_bruteforce", "trusted_source").inc()
    return registry


def test_scrape_time_specs_match_what_the_collectors_emit() -> None:
    specs: dict[str, MetricSpec] = {spec.name: spec for spec in SCRAPE_TIME}
    registry = full_registry()
    instrumented_names = {m._name for m in instrumented()}
    seen = set()
    for family in registry.collect():
        if family.name in instrumented_names:
            continue
        exposed = family.name + ("_total" if family.type == "counter" else "")
        spec = specs.get(exposed)
        assert spec is not None, f"{exposed} is exposed but not in SCRAPE_TIME"
        assert family.type == spec.type, exposed
        assert family.documentation == spec.help, exposed
        labels = {k for s in family.samples for k in s.labels}
        assert labels <= set(spec.labels), exposed
        seen.add(exposed)
    # the host collector and the pipeline emit every spec of theirs (other modules own the rest)
    mine = {n for n in specs if n.startswith(("vedette_host_", "vedette_queue_"))}
    assert seen == mine, f"declared but never emitted: {mine - seen}"


def test_promtool_accepts_the_exposition() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) not installed")
    text = generate_latest(full_registry())
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
