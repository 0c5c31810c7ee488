"""Local sinks: JSON lines (append, rotation, fsync policies, close), stdout, the sink factory."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from foundation_helpers import IDENTITY, fresh_metrics, make_alert

from agent.alerts import to_ecs
from agent.config import Config, load_config
from agent.sinks.base import Sink
from agent.sinks.factory import build_sinks
from agent.sinks.jsonl import JsonlSink
from agent.sinks.stdout import StdoutSink


def read_docs(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_jsonl_appends_one_ecs_document_per_line(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "alerts.jsonl"
    path.parent.mkdir()
    path.write_text('{"existing": true}\n')
    sink = JsonlSink(path, IDENTITY)
    assert isinstance(sink, Sink)
    first, second = make_alert(rule_id="r1"), make_alert(rule_id="r2")
    sink.emit(first)
    sink.emit(second)
    sink.close()
    docs = read_docs(path)
    assert docs[0] == {"existing": True}
    assert docs[1] == json.loads(json.dumps(to_ecs(first, IDENTITY)))
    assert [d["rule"]["id"] for d in docs[1:]] == ["r1", "r2"]  # type: ignore[index]


def test_jsonl_creates_missing_directories(tmp_path: Path) -> None:
    path = tmp_path / "var" / "lib" / "alerts.jsonl"
    sink = JsonlSink(path, IDENTITY)
    sink.emit(make_alert())
    sink.close()
    assert len(read_docs(path)) == 1


def test_jsonl_escapes_hostile_text(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    sink = JsonlSink(path, IDENTITY)
    sink.emit(make_alert(message="evil\nsecond line\x1b[31m\u2028é"))
    sink.close()
    raw = path.read_bytes()
    assert raw.count(b"\n") == 1
    assert raw.isascii()
    assert read_docs(path)[0]["message"] == "evil\nsecond line\x1b[31m\u2028é"


def test_jsonl_rotates_by_size_keeping_n_backups(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    one_doc = len(json.dumps(to_ecs(make_alert(rule_id="r00"), IDENTITY))) + 1
    sink = JsonlSink(path, IDENTITY, max_bytes=one_doc * 2, backups=2)
    for i in range(9):  # two alerts per file
        sink.emit(make_alert(rule_id=f"r{i:02d}"))
    sink.close()
    ids = {
        p.name: [d["rule"]["id"] for d in read_docs(p)]  # type: ignore[index]
        for p in sorted(tmp_path.iterdir())
    }
    assert ids == {
        "alerts.jsonl": ["r08"],
        "alerts.jsonl.1": ["r06", "r07"],
        "alerts.jsonl.2": ["r04", "r05"],
    }


def test_jsonl_rotation_without_backups_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    sink = JsonlSink(path, IDENTITY, max_bytes=1024, backups=0)
    for i in range(5):
        sink.emit(make_alert(rule_id=f"r{i}", message="x" * 600))
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alerts.jsonl"]
    assert [d["rule"]["id"] for d in read_docs(path)] == ["r4"]  # type: ignore[index]


@pytest.mark.parametrize("policy", ["always", "interval", "never"])
def test_fsync_policies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    path = tmp_path / "alerts.jsonl"
    sink = JsonlSink(path, IDENTITY, fsync=policy)  # type: ignore[arg-type]
    sink.emit(make_alert(rule_id="a"))
    sink.emit(make_alert(rule_id="b"))
    after_emits = len(synced)
    sink.flush()
    sink.flush()  # nothing new: no second sync
    after_flush = len(synced)
    sink.close()
    sink.close()  # idempotent
    assert len(read_docs(path)) == 2
    expected = {"always": (2, 2), "interval": (0, 1), "never": (0, 0)}[policy]
    assert (after_emits, after_flush) == expected


def test_jsonl_emit_after_close_reopens(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    sink = JsonlSink(path, IDENTITY)
    sink.emit(make_alert(rule_id="a"))
    sink.close()
    sink.emit(make_alert(rule_id="b"))
    sink.close()
    assert len(read_docs(path)) == 2


def test_jsonl_unwritable_path_raises_for_the_router(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    sink = JsonlSink(blocker / "alerts.jsonl", IDENTITY)
    with pytest.raises(OSError):
        sink.emit(make_alert())
    sink.flush()
    sink.close()


def test_stdout_sink_writes_one_line_per_alert(capsys: pytest.CaptureFixture[str]) -> None:
    stream = io.StringIO()
    sink = StdoutSink(IDENTITY, stream)
    sink.emit(make_alert(rule_id="r1", message="two\nlines"))
    sink.flush()
    sink.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["rule"]["id"] == "r1"
    default = StdoutSink(IDENTITY)
    default.emit(make_alert(rule_id="r2"))
    default.flush()
    assert json.loads(capsys.readouterr().out)["rule"]["id"] == "r2"


def test_factory_default_is_jsonl_in_the_state_dir(tmp_path: Path) -> None:
    config = load_config(None, environ={"VEDETTE_AGENT__STATE_DIR": str(tmp_path)})
    (sink,) = build_sinks(config, IDENTITY, fresh_metrics())
    assert isinstance(sink, JsonlSink)
    assert sink.path == tmp_path / "alerts.jsonl"


def test_factory_follows_config(tmp_path: Path) -> None:
    config = load_config(
        None,
        environ={
            "VEDETTE_SINKS__JSONL__PATH": str(tmp_path / "custom.jsonl"),
            "VEDETTE_SINKS__STDOUT__ENABLED": "true",
        },
    )
    sinks = build_sinks(config, IDENTITY, fresh_metrics())
    assert [s.name for s in sinks] == ["jsonl", "stdout"]
    assert sinks[0].path == tmp_path / "custom.jsonl"  # type: ignore[attr-defined]
    off = Config.model_validate({"sinks": {"jsonl": {"enabled": False}}})
    assert build_sinks(off, IDENTITY, fresh_metrics()) == []
