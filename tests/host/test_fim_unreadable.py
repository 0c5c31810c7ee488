"""FIM that cannot read some watched paths says so once and marks itself degraded."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from agent.collectors.host.fim.baseline import WatchList
from agent.collectors.host.fim.collector import FimCollector
from agent.metrics import AgentMetrics


def run_once(tmp_path: Path, files: list[str]) -> float | None:
    """Run FIM until its baseline is in place; the value of vedette_collector_degraded{fim}."""
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    watch = WatchList(tmp_path, files, [], user_homes=False)
    fim = FimCollector(watch, tmp_path / "baseline.json", metrics, use_inotify=False)
    stop = threading.Event()
    thread = threading.Thread(target=fim.run, args=(lambda events: None, stop))
    thread.start()
    assert fim.ready.wait(10)
    stop.set()
    thread.join(10)
    return registry.get_sample_value("vedette_collector_degraded", {"collector": "fim"})


def test_unreadable_watched_paths_degrade_fim_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "afile").write_text("x")
    (tmp_path / "ok").write_text("y")
    # lstat of a path below a regular file fails (ENOTDIR) even for root: unreadable here
    with caplog.at_level(logging.WARNING):
        degraded = run_once(tmp_path, ["/ok", "/afile/child"])
    assert degraded == 1
    warnings = [r for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(warnings) == 1 and "1 watched path(s)" in warnings[0].getMessage()


def test_readable_paths_leave_fim_healthy(tmp_path: Path) -> None:
    (tmp_path / "ok").write_text("y")
    assert run_once(tmp_path, ["/ok", "/missing-is-fine"]) == 0
