"""AlertRouter: sinks isolated from each other, retries on flush, bounded retry buffer."""

from __future__ import annotations

import pytest
from foundation_helpers import RecordingSink, fresh_metrics, make_alert, value

from agent.alerts import Status
from agent.metrics import AgentMetrics
from agent.sinks.router import AlertRouter


@pytest.fixture
def metrics() -> AgentMetrics:
    return fresh_metrics()


def test_failing_sink_does_not_block_the_other(
    metrics: AgentMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    good, bad = RecordingSink("good"), RecordingSink("bad", failing=True)
    router = AlertRouter([bad, good], metrics)
    router.dispatch([make_alert(rule_id="r1"), make_alert(rule_id="r2")])
    assert [a.rule.id for a in good.emitted] == ["r1", "r2"]
    assert router.pending("bad") == 2
    assert router.pending("good") == 0
    assert value(metrics, "vedette_sink_deliveries_total", sink="good") == 2
    assert value(metrics, "vedette_sink_failures_total", sink="bad") == 1  # then queued behind
    assert bad.emit_attempts == 1  # order kept: later alerts wait behind the failed one
    assert any(getattr(r, "sink", None) == "bad" for r in caplog.records)


def test_failed_alerts_are_retried_in_order_on_flush(metrics: AgentMetrics) -> None:
    sink = RecordingSink("es", failing=True)
    router = AlertRouter([sink], metrics)
    router.dispatch([make_alert(rule_id=f"r{i}") for i in range(3)])
    router.flush()
    assert router.pending("es") == 3
    assert sink.flushes == 1  # flush is still called on a sink whose emit fails
    sink.failing = False
    router.flush()
    assert [a.rule.id for a in sink.emitted] == ["r0", "r1", "r2"]
    assert router.pending("es") == 0
    assert value(metrics, "vedette_sink_deliveries_total", sink="es") == 3
    assert value(metrics, "vedette_sink_failures_total", sink="es") == 2


def test_retry_buffer_is_bounded_and_drops_the_oldest(metrics: AgentMetrics) -> None:
    sink = RecordingSink("es", failing=True)
    router = AlertRouter([sink], metrics, retry_buffer=3)
    router.dispatch([make_alert(rule_id=f"r{i}") for i in range(5)])
    assert router.pending("es") == 3
    assert value(metrics, "vedette_sink_dropped_total", sink="es") == 2
    sink.failing = False
    router.flush()
    assert [a.rule.id for a in sink.emitted] == ["r2", "r3", "r4"]


def test_failing_flush_is_counted_and_others_still_flush(
    metrics: AgentMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    broken, fine = RecordingSink("broken"), RecordingSink("fine")
    broken.fail_flush = True
    router = AlertRouter([broken, fine], metrics)
    router.flush()
    assert fine.flushes == 1
    assert value(metrics, "vedette_sink_failures_total", sink="broken") == 1
    assert "sink flush failed" in caplog.text


def test_close_counts_undelivered_and_closes_every_sink(metrics: AgentMetrics) -> None:
    down, up = RecordingSink("down", failing=True), RecordingSink("up")
    router = AlertRouter([down, up], metrics)
    router.dispatch([make_alert(), make_alert(rule_id="r2")])
    router.close()
    assert down.closed and up.closed
    assert value(metrics, "vedette_sink_dropped_total", sink="down") == 2
    assert value(metrics, "vedette_sink_dropped_total", sink="up") == 0


def test_close_survives_a_sink_whose_close_raises(metrics: AgentMetrics) -> None:
    class Exploding(RecordingSink):
        def close(self) -> None:
            raise OSError("boom")

    other = RecordingSink("other")
    router = AlertRouter([Exploding("x"), other], metrics)
    router.close()
    assert other.closed


def test_alert_counters_by_rule_severity_and_status(metrics: AgentMetrics) -> None:
    router = AlertRouter([RecordingSink()], metrics)
    router.dispatch(
        [
            make_alert(rule_id="ssh", level="high"),
            make_alert(rule_id="ssh", level="high", status=Status.UPDATED, revision=1),
            make_alert(rule_id="ssh", level="high", status=Status.CLOSED, revision=2),
            make_alert(rule_id="scan", level="low"),
        ]
    )
    assert value(metrics, "vedette_alerts_total", rule="ssh", severity="high") == 1
    assert value(metrics, "vedette_alerts_total", rule="scan", severity="low") == 1
    assert value(metrics, "vedette_alert_updates_total", status="open") == 2
    assert value(metrics, "vedette_alert_updates_total", status="updated") == 1
    assert value(metrics, "vedette_alert_updates_total", status="closed") == 1
    assert value(metrics, "vedette_rule_info", rule="ssh", title="Rule ssh") == 1
    assert value(metrics, "vedette_rule_info", rule="scan", title="Rule scan") == 1


def test_no_sinks_is_fine(metrics: AgentMetrics) -> None:
    router = AlertRouter([], metrics)
    router.dispatch([make_alert()])
    router.flush()
    router.close()
    assert router.sinks == []
    assert router.pending("nothing") == 0
