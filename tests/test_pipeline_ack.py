"""End-to-end acknowledgement: a block's ``ack`` runs only after its events were evaluated,
their alerts taken by every sink, the sinks flushed and the checkpoint written — in order."""

from __future__ import annotations

import threading
from pathlib import Path

from foundation_helpers import RecordingSink, fresh_metrics, make_alert, wait_until

from agent.alerts import Alert, RuleRef
from agent.detection.checkpoint import AlertCheckpoint
from agent.detection.lifecycle import AlertBook
from agent.detection.rule import RuleOptions
from agent.events import HOST_METRICS, Event
from agent.pipeline import Pipeline
from agent.sinks.router import AlertRouter


class Detector:
    def __init__(self) -> None:
        self.seen: list[int] = []

    def process(self, ev: Event) -> list[Alert]:
        self.seen.append(ev.fields["n"])
        return [make_alert(rule_id=f"rule-{ev.fields['n']}", first_seen=ev.timestamp)]

    def advance(self, now: float) -> list[Alert]:
        return []


def _event(n: int) -> Event:
    return Event(1_700_000_000.0 + n, HOST_METRICS, {"n": n})


def test_acks_follow_evaluation_flush_and_checkpoint_in_order() -> None:
    sink = RecordingSink()
    order: list[str] = []
    detector = Detector()
    pipeline = Pipeline(detector, AlertRouter([sink], fresh_metrics()), fresh_metrics(),
                        tick_seconds=0.05, checkpoint=lambda: order.append("checkpoint"))
    stop = threading.Event()

    def commit() -> None:
        order.append("commit")

    pipeline.start()
    try:
        for block in range(5):
            events = [_event(block * 10 + i) for i in range(10)]

            def ack(b: int = block) -> None:
                # everything published before is evaluated and in the sink already
                assert len(detector.seen) >= (b + 1) * 10
                assert len(sink.emitted) >= (b + 1) * 10 and sink.flushes > 0
                order.append(f"ack{b}")

            assert pipeline.publish_acked(events, "t", ack, commit, stop)
        assert wait_until(lambda: "ack4" in order, 5)
    finally:
        pipeline.stop()
    acks = [o for o in order if o.startswith("ack")]
    assert acks == [f"ack{b}" for b in range(5)]
    assert order[0] == "checkpoint"  # the checkpoint precedes every acknowledgement
    first_ack = order.index("ack0")
    assert "checkpoint" in order[:first_ack]
    assert order.count("commit") <= order.count("checkpoint")  # once per tick, not per block


def test_no_ack_while_a_sink_holds_alerts_for_retry() -> None:
    sink = RecordingSink(failing=True)
    acked: list[int] = []
    pipeline = Pipeline(Detector(), AlertRouter([sink], fresh_metrics()), fresh_metrics(),
                        tick_seconds=0.05)
    pipeline.start()
    try:
        pipeline.publish_acked([_event(1)], "t", lambda: acked.append(1), None,
                               threading.Event())
        assert not wait_until(lambda: bool(acked), 0.5)  # the alert is not durable anywhere
        sink.failing = False  # the router's retry on the next flush succeeds
        assert wait_until(lambda: acked == [1], 5)
    finally:
        pipeline.stop()


def test_a_full_queue_waits_instead_of_dropping_and_stop_leaves_blocks_unacked() -> None:
    pipeline = Pipeline(Detector(), AlertRouter([], fresh_metrics()), fresh_metrics(),
                        queue_size=4)  # not started: nothing drains
    stop = threading.Event()
    acked: list[int] = []
    assert pipeline.publish_acked([_event(1)], "t", lambda: acked.append(1), None, stop)
    assert pipeline.publish_acked([_event(2)], "t", lambda: acked.append(2), None, stop)
    threading.Timer(0.2, stop.set).start()
    assert not pipeline.publish_acked([_event(3)], "t", lambda: acked.append(3), None, stop)
    assert acked == []
    pipeline.start()
    pipeline.stop()
    assert acked == [1, 2]  # the queued blocks are drained and acknowledged at the stop


def test_open_alerts_survive_a_restart_and_close_afterwards(tmp_path: Path) -> None:
    ref = RuleRef(id="r1", title="t")
    options = RuleOptions(quiet_period=60.0)
    book = AlertBook(ref, options)
    (opened,) = book.trigger(("198.18.0.9",), {"source.ip": "198.18.0.9"}, 1000.0, 1000.0, 1,
                             {"source.ip": "198.18.0.9"}, {"message": "x"})
    book.grow(("198.18.0.9",), book.open[("198.18.0.9",)], 1010.0, 3, None)
    checkpoint = AlertCheckpoint(tmp_path / "alert-state.json")
    checkpoint.save({"r1": book, "other": AlertBook(RuleRef(id="other", title="o"), options)})

    fresh = AlertBook(ref, options)  # the agent after kill -9
    assert checkpoint.restore({"r1": fresh}) == 1
    (closed,) = fresh.tick(2000.0)
    assert closed.id == opened.id and closed.status == "closed"
    assert closed.revision == opened.revision + 1 and closed.count == 4
    assert closed.rule is ref and closed.evidence == [{"message": "x"}]


def test_a_damaged_checkpoint_restores_nothing(tmp_path: Path) -> None:
    path = tmp_path / "alert-state.json"
    path.write_text('{"version": 1, "rules": {"r1": [{"key": 1}]}')
    book = AlertBook(RuleRef(id="r1", title="t"), RuleOptions())
    assert AlertCheckpoint(path).restore({"r1": book}) == 0 and len(book) == 0
    path.write_text('{"version": 1, "rules": {"r1": [{"key": ["a"], "alert": {}}]}}')
    assert AlertCheckpoint(path).restore({"r1": book}) == 0 and len(book) == 0
