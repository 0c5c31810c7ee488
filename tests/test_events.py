"""The event shape: JSONL round trip, timestamp parsing and formatting, malformed input."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.events import (
    HOST_METRICS,
    PROCESS_CREATION,
    Event,
    LogSource,
    format_timestamp,
    parse_timestamp,
)


def test_to_dict_is_flat_with_logsource_and_rfc3339_timestamp() -> None:
    event = Event(
        1_700_000_000.25,
        LogSource("linux", None, "sshd"),
        {"source.ip": "203.0.113.5", "event.dataset": "auth"},
    )
    assert event.to_dict() == {
        "@timestamp": "2023-11-14T22:13:20.250000Z",
        "source.ip": "203.0.113.5",
        "event.dataset": "auth",
        "logsource": {"product": "linux", "service": "sshd"},
    }


def test_round_trip_through_json() -> None:
    event = Event(1_700_000_000.123456, PROCESS_CREATION, {"process.pid": 42, "a.b": [1, 2]})
    back = Event.from_dict(json.loads(json.dumps(event.to_dict())))
    assert back.logsource == PROCESS_CREATION
    assert back.fields == event.fields
    assert back.timestamp == pytest.approx(event.timestamp, abs=1e-6)
    assert back.get("process.pid") == 42
    assert back.get("missing", "dflt") == "dflt"


def test_from_dict_does_not_mutate_its_input() -> None:
    data = {"@timestamp": 1.0, "logsource": {"product": "linux"}, "x": 1}
    Event.from_dict(data)
    assert data == {"@timestamp": 1.0, "logsource": {"product": "linux"}, "x": 1}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ([1, 2], "JSON object"),
        ("text", "JSON object"),
        ({"logsource": {"product": "linux"}}, "no @timestamp"),
        ({"@timestamp": 1, "logsource": {}}, "no logsource"),
        ({"@timestamp": 1, "logsource": "linux"}, "no logsource"),
        ({"@timestamp": 1}, "no logsource"),
        ({"@timestamp": 1, "logsource": {"product": "linux", "os": "x"}}, "unknown logsource"),
        ({"@timestamp": 1, "logsource": {"product": ["linux"]}}, "must be strings"),
        ({"@timestamp": "yesterday", "logsource": {"product": "linux"}}, "bad timestamp"),
        ({"@timestamp": True, "logsource": {"product": "linux"}}, "bad timestamp"),
    ],
)
def test_from_dict_rejects_malformed_mappings(data: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Event.from_dict(data)


def test_logsource_str() -> None:
    assert str(LogSource("linux", "process_creation")) == "product=linux/category=process_creation"
    assert str(LogSource(None, None, "sshd")) == "service=sshd"
    assert str(LogSource(None)) == "any"
    assert str(HOST_METRICS) == "product=vedette/category=host_metrics"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0.0),
        (1_700_000_000, 1_700_000_000.0),
        (1.5, 1.5),
        ("2023-11-14T22:13:20Z", 1_700_000_000.0),
        ("2023-11-14T22:13:20.5z", 1_700_000_000.5),
        ("2023-11-14T22:13:20", 1_700_000_000.0),  # naive means UTC
        ("2023-11-15T00:13:20+02:00", 1_700_000_000.0),
        ("  2023-11-14T22:13:20Z  ", 1_700_000_000.0),
        ("2023-11-14", 1_699_920_000.0),
    ],
)
def test_parse_timestamp_accepts(value: Any, expected: float) -> None:
    assert parse_timestamp(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None, True, False, "", "now", "2023-13-01T00:00:00Z", [1], {"t": 1},
        math.nan, math.inf, -math.inf, 10**400, 1e300, -1e300,
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC: cannot be formatted
        "9999-12-31T23:59:59-12:00",  # after year 9999 in UTC
        "x" * 10_000,
    ],
)
def test_parse_timestamp_rejects_with_value_error(value: Any) -> None:
    with pytest.raises(ValueError, match="bad timestamp") as info:
        parse_timestamp(value)
    assert len(str(info.value)) < 200  # a hostile value is never echoed in full


def test_format_timestamp() -> None:
    assert format_timestamp(0) == "1970-01-01T00:00:00.000000Z"
    assert format_timestamp(1_700_000_000.000001) == "2023-11-14T22:13:20.000001Z"


_ANY = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40), st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=400, deadline=None)
@given(_ANY)
def test_parse_timestamp_raises_only_value_error_and_results_format(value: Any) -> None:
    try:
        ts = parse_timestamp(value)
    except ValueError:
        return
    assert math.isfinite(ts)
    rendered = format_timestamp(ts)  # whatever is accepted can be rendered back
    assert parse_timestamp(rendered) == pytest.approx(ts, abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.text(max_size=10), st.one_of(st.none(), st.integers(), st.text()),
                    max_size=5),
    st.one_of(st.none(), st.dictionaries(st.text(max_size=10), st.one_of(
        st.none(), st.text(max_size=5), st.integers()), max_size=3)),
    _ANY,
)
def test_from_dict_raises_only_value_error(
    fields: dict[str, Any], logsource: Any, ts: Any
) -> None:
    data: dict[str, Any] = dict(fields)
    data["@timestamp"] = ts
    if logsource is not None:
        data["logsource"] = logsource
    try:
        event = Event.from_dict(data)
    except ValueError:
        return
    assert isinstance(event.logsource, LogSource)
    json.dumps(event.to_dict())
