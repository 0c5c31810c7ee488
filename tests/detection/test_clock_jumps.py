"""Clock jumps against the event-time watermark: one event stamped a day ahead (the clock
stepped forward, then corrected) or a checkpoint written by such a run must not make every
later event late — correlations would be blind (no brute force) until real time caught up."""

from __future__ import annotations

from pathlib import Path

from agent.detection import Engine, EngineOptions, load_rules
from agent.detection.checkpoint import AlertCheckpoint
from agent.events import Event, LogSource

RULES = Path(__file__).resolve().parents[2] / "rules" / "auth" / "ssh_bruteforce.yml"
NOW = 1_796_000_000.0
DAY = 86_400.0
BRUTE_FORCE = "37b4f665-86db-49b5-b86f-fa53159d6c25"


def _engine(max_future: float | None = 300.0) -> Engine:
    report = load_rules([RULES])
    assert not report.errors
    return Engine(report.ruleset, None, EngineOptions(max_future_seconds=max_future))


def _failure(ts: float, ip: str = "198.18.0.7") -> Event:
    return Event(ts, LogSource("linux", service="sshd"), {
        "event.action": "ssh_login", "event.outcome": "failure", "source.ip": ip})


def _brute_force(engine: Engine, start: float) -> list[str]:
    fired = []
    for i in range(5):
        fired += [a.rule.id for a in engine.process(_failure(start + i))]
        fired += [a.rule.id for a in engine.advance(start + i)]
    return [name for name in fired if name == BRUTE_FORCE]


def test_an_event_from_the_future_does_not_blind_the_correlations() -> None:
    engine = _engine()
    engine.advance(NOW)
    engine.process(_failure(NOW + DAY, ip="198.18.0.99"))  # stamped while the clock was ahead
    assert _brute_force(engine, NOW + 1) == [BRUTE_FORCE]
    assert engine.late_events == 0


def test_without_the_horizon_the_same_stream_is_blind() -> None:
    """What the daemon did before (replay and tests keep this: no wall clock there)."""
    engine = _engine(max_future=None)
    engine.advance(NOW)
    engine.process(_failure(NOW + DAY, ip="198.18.0.99"))
    assert _brute_force(engine, NOW + 1) == []
    assert engine.late_events == 5


def test_a_watermark_restored_from_the_future_is_pulled_back(tmp_path: Path) -> None:
    ahead = _engine(max_future=None)  # the run whose clock was a day ahead
    ahead.process(_failure(NOW + DAY, ip="198.18.0.99"))
    AlertCheckpoint(tmp_path / "alert-state.json").save_engine(ahead)
    engine = _engine()
    AlertCheckpoint(tmp_path / "alert-state.json").restore_engine(engine)
    assert engine.watermark == NOW + DAY
    engine.advance(NOW)  # the first tick, on the corrected clock
    assert engine.watermark == NOW and engine.watermark_resets == 1
    assert _brute_force(engine, NOW + 1) == [BRUTE_FORCE]


def test_late_events_are_still_late_within_the_horizon() -> None:
    engine = _engine()
    engine.advance(NOW)
    engine.process(_failure(NOW + 60, ip="198.18.0.99"))  # a minute ahead: within 300 s
    assert _brute_force(engine, NOW) == []  # 60 s behind the newest event: late (5 s)
    assert engine.late_events == 5
