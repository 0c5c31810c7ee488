"""JSON-lines event input: good lines become Events, malformed ones are counted and skipped."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from foundation_helpers import RecordingSink, fresh_metrics, make_alert, value, wait_until

from agent.collectors.base import StreamingCollector
from agent.collectors.logs.event_files import EventFileCollector
from agent.collectors.logs.tailer import OffsetStore
from agent.events import Event, LogSource
from agent.pipeline import Pipeline
from agent.sinks.router import AlertRouter

GOOD = {
    "@timestamp": "2023-11-14T22:13:20Z",
    "logsource": {"product": "linux", "service": "sshd"},
    "source.ip": "203.0.113.5",
    "event.outcome": "failure",
}
MALFORMED = [
    b"not json at all",
    b'{"@timestamp": "2023-11-14T22:13:20Z"}',  # no logsource
    b'{"logsource": {"product": "linux"}}',  # no timestamp
    b'["a", "list"]',
    b'{"@timestamp": 1e999, "logsource": {"product": "linux"}}',
    b'{"@timestamp": 1' + b"0" * 400 + b', "logsource": {"product": "linux"}}',
    b"\xff\xfe not utf-8",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"@timestamp": 1, "logsource": {"product": {"x": 1}}}',
]


def write_lines(path: Path, lines: list[bytes]) -> None:
    with path.open("ab") as handle:
        handle.write(b"".join(line + b"\n" for line in lines))


def test_good_lines_become_events_and_bad_ones_are_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "events.jsonl"
    write_lines(path, [json.dumps(GOOD).encode(), b"", b"   ", *MALFORMED,
                       json.dumps({**GOOD, "source.ip": "198.51.100.7"}).encode()])
    metrics = fresh_metrics()
    collector = EventFileCollector([path], OffsetStore(None), metrics)
    events = collector.poll()
    assert [e.fields["source.ip"] for e in events] == ["203.0.113.5", "198.51.100.7"]
    first = events[0]
    assert isinstance(first, Event)
    assert first.timestamp == 1_700_000_000.0
    assert first.logsource == LogSource("linux", None, "sshd")
    assert first.fields == {"source.ip": "203.0.113.5", "event.outcome": "failure"}
    errors = value(metrics, "vedette_input_errors_total", source="event_file", reason="malformed")
    assert errors == len(MALFORMED)
    warnings = [r for r in caplog.records if r.getMessage() == "malformed event line skipped"]
    assert len(warnings) == len(MALFORMED)
    assert all(getattr(r, "file", None) == str(path) for r in warnings)
    assert all(len(getattr(r, "reason", "")) <= 200 for r in warnings)
    assert collector.poll() == []  # nothing new


def test_several_files_and_a_missing_one(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_lines(a, [json.dumps({**GOOD, "n": 1}).encode()])
    write_lines(b, [json.dumps({**GOOD, "n": 2}).encode()])
    collector = EventFileCollector([a, tmp_path / "missing.jsonl", b], OffsetStore(None),
                                   fresh_metrics())
    assert [e.fields["n"] for e in collector.poll()] == [1, 2]


def test_run_publishes_until_stopped_and_saves_offsets(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    state = tmp_path / "offsets.json"
    write_lines(path, [json.dumps({**GOOD, "n": 1}).encode()])
    collector = EventFileCollector([path], OffsetStore(state), fresh_metrics(),
                                   interval_seconds=0.02)
    assert isinstance(collector, StreamingCollector)
    published: list[Event] = []
    stop = threading.Event()

    def publish(events: object) -> int:
        batch = list(events)  # type: ignore[call-overload]
        published.extend(batch)
        return len(batch)

    worker = threading.Thread(target=collector.run, args=(publish, stop))
    worker.start()
    try:
        assert wait_until(lambda: len(published) == 1)
        write_lines(path, [json.dumps({**GOOD, "n": 2}).encode()])
        assert wait_until(lambda: len(published) == 2)
    finally:
        stop.set()
        worker.join(2)
    assert not worker.is_alive()
    assert [e.fields["n"] for e in published] == [1, 2]
    saved = json.loads(state.read_text())
    assert saved[str(path)]["offset"] == path.stat().st_size

    # a restarted collector does not replay what was already published
    write_lines(path, [json.dumps({**GOOD, "n": 3}).encode()])
    again = EventFileCollector([path], OffsetStore(state), fresh_metrics())
    assert [e.fields["n"] for e in again.poll()] == [3]


def test_positions_wait_for_the_pipeline_acknowledgement(tmp_path: Path) -> None:
    """Through a real pipeline whose sink fails, nothing is acknowledged: a restart reads the
    same events again; once the sink takes them, the position is saved."""
    class OneAlertPerEvent:
        def process(self, ev: Event) -> list[object]:
            return [make_alert(rule_id=f"r{ev.fields['n']}")]

        def advance(self, now: float) -> list[object]:
            return []

    path = tmp_path / "events.jsonl"
    state = tmp_path / "offsets.json"
    write_lines(path, [json.dumps({**GOOD, "n": n}).encode() for n in range(3)])
    sink = RecordingSink(failing=True)
    pipeline = Pipeline(OneAlertPerEvent(), AlertRouter([sink], fresh_metrics()),  # type: ignore[arg-type]
                        fresh_metrics(), tick_seconds=0.05)
    pipeline.start()
    collector = EventFileCollector([path], OffsetStore(state), fresh_metrics(),
                                   interval_seconds=0.02)
    stop = threading.Event()
    worker = threading.Thread(target=collector.run, args=(pipeline.publisher("ef"), stop))
    worker.start()
    try:
        assert wait_until(lambda: sink.emit_attempts >= 3)
        assert not wait_until(state.exists, 0.5)  # not durable anywhere: not acknowledged
        again = EventFileCollector([path], OffsetStore(state), fresh_metrics())
        assert len(again.poll()) == 3  # a restart now reads them again
        sink.failing = False
        assert wait_until(state.exists, 5)
    finally:
        stop.set()
        worker.join(2)
        pipeline.stop()
    assert len(sink.emitted) == 3
    assert EventFileCollector([path], OffsetStore(state), fresh_metrics()).poll() == []
