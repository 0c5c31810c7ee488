"""The engine hands what one event triggered to the alert books in one call.

``Engine.process`` collects an event's single-event matches and correlation firings (in rule
order) and calls :meth:`AlertBook.apply` once; the books apply them in order and render each
state change once. The counting feeder never reads or writes a book: it returns a firing, or the
key of a group whose condition stays true, and the book decides whether an alert is open.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.alerts import Alert, Status
from agent.detection import Engine, EngineOptions
from agent.detection.correlation import Firing
from agent.detection.counting import CountingState
from agent.detection.lifecycle import AlertBook, Triggers
from agent.events import Event
from tests.detection.helpers import T0, engine_for, rule_doc
from tests.detection.test_correlations import corr, syn, syn_rule

SYN_ALERT = rule_doc({"sel": {"tcp.flags.syn": True}, "condition": "sel"},
                     {"product": "vedette", "category": "network_packet"}, title="a SYN")
SENT = {"update_interval": 0}  # every update is sent: each step of a batch is visible


def _engine(tmp_path: Path) -> tuple[Engine, str, str]:
    """A single-event rule on SYNs, and syn → event_count gte 2 per destination (every update
    sent) and value_count of ports gte 2 per source (updates coalesced)."""
    count = corr("event_count", {"gte": 2}, ["syn"], ["destination.ip"], timespan="5s",
                 vedette=SENT)
    ports = corr("value_count", {"gte": 2, "field": "destination.port"}, ["syn"],
                 ["source.ip"], timespan="5s")
    engine = engine_for(tmp_path, syn_rule(), SYN_ALERT, count, ports,
                        options=EngineOptions(late_allowance_seconds=2.0))
    assert {type(s) for s in engine.states.values()} == {CountingState}
    return engine, count["id"], ports["id"]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[list[tuple[str, Any]]]:
    """Every call of AlertBook.apply: (rule id, what was handed over) per trigger."""
    seen: list[list[tuple[str, Any]]] = []
    real = AlertBook.apply

    def spy(triggers: Triggers, event: Event) -> list[Alert]:
        seen.append([(s.book.ref.id, f) for s, f in triggers])
        return real(triggers, event)

    monkeypatch.setattr(AlertBook, "apply", staticmethod(spy))
    return seen


def test_one_hand_off_per_event_in_rule_order(
    tmp_path: Path, calls: list[list[tuple[str, Any]]]
) -> None:
    engine, count_id, ports_id = _engine(tmp_path)
    syn_id = next(r.id for r in engine.ruleset.detections if r.output)
    first = engine.process(syn(T0, port=80))
    assert calls == [[(syn_id, None)]]  # the correlations' windows hold one SYN: nothing
    assert [a.rule.id for a in first] == [syn_id]
    second = engine.process(syn(T0 + 1, port=81))
    assert len(calls) == 2
    # the single-event match and both correlations (in rule order), each once, in one call
    assert sorted(rid for rid, _ in calls[1]) == sorted([syn_id, count_id, ports_id])
    fired = dict(calls[1])
    assert fired[syn_id] is None
    assert all(isinstance(fired[r], Firing) and fired[r].opened for r in (count_id, ports_id))
    assert {a.rule.id: a.status for a in second if a.rule.id != syn_id} == {
        count_id: Status.OPEN, ports_id: Status.OPEN}
    engine.process(syn(T0 + 2, port=81))
    # the groups' conditions stay true: their keys are handed over, not firings
    assert dict(calls[2]) == {syn_id: None, count_id: ("198.18.0.1",),
                              ports_id: ("198.18.0.5",)}
    assert len(calls) == 3


def test_no_hand_off_when_nothing_matched(
    tmp_path: Path, calls: list[list[tuple[str, Any]]]
) -> None:
    engine, _, _ = _engine(tmp_path)
    ev = syn(T0)
    ev.fields["tcp.flags.syn"] = False
    assert engine.process(ev) == [] and calls == []


def test_a_batch_where_one_event_opens_and_the_next_count(tmp_path: Path) -> None:
    """Event 2 opens the correlations' alerts, events 3 and 4 grow them: the same alerts as
    when the feeder grew the open alert itself (every update sent / coalesced)."""
    engine, count_id, ports_id = _engine(tmp_path)
    sent: list[Alert] = []
    for i, port in enumerate([80, 81, 81, 82]):
        sent += engine.process(syn(T0 + i, port=port))
    counted = [a for a in sent if a.rule.id == count_id]
    assert [(a.status, a.count, a.revision) for a in counted] == [
        (Status.OPEN, 2, 0), (Status.UPDATED, 3, 1), (Status.UPDATED, 4, 2)]
    assert counted[0].first_seen == T0 and counted[-1].last_seen == T0 + 3
    assert [len(a.evidence) for a in counted] == [1, 2, 3]
    assert counted[0].matched["destination.ip"] == "198.18.0.1"
    assert counted[0].message.startswith("event_count test: event_count 2 (gte 2) within 5 s")
    ports = [a for a in sent if a.rule.id == ports_id]
    assert [(a.status, a.count) for a in ports] == [(Status.OPEN, 2)]  # then coalesced
    (entry,) = engine.books[ports_id].open.values()
    assert (entry.alert.count, entry.dirty, len(entry.alert.evidence)) == (4, True, 3)
    assert engine.books[ports_id].coalesced == 2
    # the pending update goes out on the timer, with everything the batch added
    later = [a for a in engine.advance(T0 + 3 + 60) if a.rule.id == ports_id]
    assert [(a.status, a.count) for a in later] == [(Status.UPDATED, 4)]


def test_a_key_without_an_open_alert_is_nothing(tmp_path: Path) -> None:
    """The condition stays true after the alert was closed by the rule's max_groups or the
    per-minute cap: the book, not the feeder, finds no open alert and sends nothing."""
    engine, count_id, _ = _engine(tmp_path)
    for i in range(2):
        engine.process(syn(T0 + i))
    book = engine.books[count_id]
    book.close_all(T0 + 1)
    assert not book.open
    assert [a for a in engine.process(syn(T0 + 2)) if a.rule.id == count_id] == []
    assert not book.open


def test_the_feeder_returns_firings_and_keys_only(tmp_path: Path) -> None:
    engine, count_id, _ = _engine(tmp_path)
    state = engine.states[count_id]
    assert isinstance(state, CountingState)
    syn_id = next(r.id for r in engine.ruleset.detections if not r.output)
    feed = state.feeder(syn_id)
    assert feed(syn(T0)) is None
    opened = feed(syn(T0 + 1))
    assert isinstance(opened, Firing) and opened.opened and opened.count == 2
    assert feed(syn(T0 + 2)) == ("198.18.0.1",)
    assert not engine.books[count_id].open  # a feeder alone opens nothing
