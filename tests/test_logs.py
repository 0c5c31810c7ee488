"""Structured logs: hostile text escaped in both formats, extras rendered, levels applied."""

from __future__ import annotations

import io
import json
import logging
import sys
import unicodedata
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.logs import JsonFormatter, TextFormatter, safe, setup_logging

HOSTILE = "Failed password for \x1b[31mroot\x1b[0m from 1.2.3.4\nFAKE: accepted\r\x00\x07\x9b2J"


def record(msg: str = "hello %s", args: tuple[object, ...] = ("world",), **extra: object) -> (
    logging.LogRecord
):
    rec = logging.LogRecord("agent.test", logging.WARNING, __file__, 10, msg, args, None)
    rec.created = 1_700_000_000.123
    rec.msecs = 123.0
    for key, val in extra.items():
        setattr(rec, key, val)
    return rec


def no_controls(text: str) -> bool:
    return not any(unicodedata.category(c) == "Cc" for c in text)


def test_safe_escapes_controls_and_bounds_length() -> None:
    assert safe("a\nb\tc\x1b[31m\x00\x7f\x9b") == "a\\nb\\tc\\x1b[31m\\x00\\x7f\\x9b"
    assert safe(42) == "42"
    assert safe("é ü 漢字") == "é ü 漢字"
    long = safe("x" * 5000, limit=100)
    assert long == "x" * 100 + "…(+4900 chars)"


@settings(max_examples=300, deadline=None)
@given(st.text(), st.integers(min_value=1, max_value=64))
def test_safe_output_never_contains_control_characters(text: str, limit: int) -> None:
    out = safe(text, limit)
    assert no_controls(out)
    assert len(out) <= 4 * limit + 40  # each kept character expands to at most \xNN


def test_text_format_escapes_message_and_extras() -> None:
    line = TextFormatter().format(
        record("%s", (HOSTILE,), user="r\noot", count=3, path="/tmp/x\x1b]0;owned\x07")
    )
    assert line.startswith("2023-11-14T22:13:20.123Z WARNING agent.test: Failed password for ")
    assert "\n" not in line and "\x1b" not in line and "\r" not in line
    assert no_controls(line)
    assert "\\x1b[31mroot" in line
    assert "user=r\\noot" in line
    assert "count=3" in line
    assert "path=/tmp/x\\x1b]0;owned\\x07" in line


def test_json_format_is_one_object_with_escaped_fields() -> None:
    out = JsonFormatter().format(
        record("%s", (HOSTILE,), user="r\noot", count=3, ratio=0.5, ok=True, none=None,
               obj={"nested": "x\ny"})
    )
    assert "\n" not in out
    assert out.isascii()
    doc = json.loads(out)
    assert doc["@timestamp"] == "2023-11-14T22:13:20.123Z"
    assert doc["log.level"] == "warning"
    assert doc["log.logger"] == "agent.test"
    assert no_controls(doc["message"])
    assert doc["message"].startswith("Failed password for \\x1b[31mroot")
    assert doc["user"] == "r\\noot"
    assert (doc["count"], doc["ratio"], doc["ok"], doc["none"]) == (3, 0.5, True, None)
    assert doc["obj"] == str({"nested": "x\ny"})  # str() of non-scalars


def test_json_non_finite_floats_stay_valid_json() -> None:
    out = JsonFormatter().format(record(ratio=float("nan"), big=float("inf")))
    doc = json.loads(out, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))
    assert (doc["ratio"], doc["big"]) == ("nan", "inf")


def test_exceptions_are_rendered() -> None:
    try:
        raise ValueError("bad\x1b[2J")
    except ValueError:
        rec = record()
        rec.exc_info = sys.exc_info()
    doc = json.loads(JsonFormatter().format(rec))
    assert "ValueError" in doc["error.stack_trace"]
    assert "Traceback" in TextFormatter().format(rec)


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root")
def test_setup_logging_json_and_level() -> None:
    stream = io.StringIO()
    setup_logging("warning", "json", stream)
    log = logging.getLogger("agent.some.module")
    log.info("hidden")
    log.warning("shown", extra={"job": "host_metrics"})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["job"] == "host_metrics"
    assert logging.getLogger("apscheduler").level == logging.WARNING


@pytest.mark.usefixtures("restore_root")
def test_setup_logging_replaces_handlers_and_text_is_default() -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("debug", "text", first)
    setup_logging("debug", "text", second)
    logging.getLogger("agent.x").debug("once")
    assert first.getvalue() == ""
    assert second.getvalue().rstrip().endswith("DEBUG agent.x: once")
