"""One rule whose condition raises must not blind the other rules to that event."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agent.metrics import AgentMetrics
from tests.detection.helpers import T0, engine_for, proc, rule_doc

BROKEN = "6f1d1b0e-6c57-4a0e-9a37-000000000001"
HEALTHY = "6f1d1b0e-6c57-4a0e-9a37-000000000002"


def _boom(fields: Any, low: Any) -> bool:
    raise TypeError("crafted value")


def test_a_raising_predicate_skips_only_its_rule(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    metrics = AgentMetrics(CollectorRegistry())
    engine = engine_for(
        tmp_path,
        rule_doc({"sel": {"Image|endswith": "/curl"}, "condition": "sel"}, id=BROKEN,
                 title="broken"),
        rule_doc({"sel": {"Image|endswith": "/curl"}, "condition": "sel"}, id=HEALTHY,
                 title="healthy"),
        metrics=metrics,
    )
    broken = engine.ruleset.by_id[BROKEN]
    object.__setattr__(broken, "predicate", _boom)
    caplog.set_level(logging.ERROR, logger="agent.detection.engine")
    seen: list[str] = []
    for i in range(3):  # identical events: a cached result must not hide later errors
        ev = proc(T0 + i, process__executable="/usr/bin/curl")
        seen += [a.rule.id for a in engine.process(ev)]
    assert seen and set(seen) == {HEALTHY}
    assert engine.predicate_errors == {BROKEN: 3}
    value = metrics.registry.get_sample_value("vedette_rule_errors_total", {"rule": BROKEN})
    assert value == 3
    logged = [r for r in caplog.records if BROKEN in r.getMessage()]
    assert len(logged) == 1  # first error logged, the rest counted
    assert "TypeError" in logged[0].getMessage()
