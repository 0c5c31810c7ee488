"""Small builders for detection tests: rules from inline YAML, events, engines."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path
from typing import Any

import yaml
from sigma.rule import SigmaRule

from agent.detection import Engine, EngineOptions, LoadReport, load_rules
from agent.detection.codegen import compile_tree
from agent.detection.matcher import Lowered, lower_tree, simplify
from agent.detection.sigma_pipeline import vedette_pipeline
from agent.events import Event, LogSource

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
PROC = LogSource("linux", "process_creation")
NET = LogSource("linux", "network_connection")
PACKET = LogSource("vedette", "network_packet")
HOST = LogSource("vedette", "host_metrics")


def rule_doc(
    detection: dict[str, Any], logsource: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "title": extra.pop("title", "test rule"),
        "id": extra.pop("id", str(uuid.uuid4())),
        "status": "test",
        "level": extra.pop("level", "medium"),
        "logsource": logsource or {"product": "linux", "category": "process_creation"},
        "detection": detection,
    }
    doc.update(extra)
    return doc


def write_rules(folder: Path, *docs: dict[str, Any] | str, name: str = "rules.yml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    parts = [
        textwrap.dedent(d) if isinstance(d, str) else yaml.safe_dump(d, sort_keys=False)
        for d in docs
    ]
    path.write_text("---\n".join(parts))
    return path


def load(folder: Path, *docs: dict[str, Any] | str) -> LoadReport:
    write_rules(folder, *docs)
    return load_rules([folder])


def engine_for(
    folder: Path,
    *docs: dict[str, Any] | str,
    options: EngineOptions | None = None,
    metrics: Any = None,
) -> Engine:
    report = load(folder, *docs)
    assert not report.errors, [str(e) for e in report.errors]
    assert not report.rejections, [str(r) for r in report.rejections]
    return Engine(report.ruleset, metrics, options or EngineOptions())


def proc(ts: float = T0, **fields: Any) -> Event:
    return Event(ts, PROC, {k.replace("__", "."): v for k, v in fields.items()})


def event(ts: float, logsource: LogSource, **fields: Any) -> Event:
    return Event(ts, logsource, {k.replace("__", "."): v for k, v in fields.items()})


def run(engine: Engine, events: list[Event], tick: bool = True) -> list[Any]:
    """Feed events (advancing timers to each event's time) and return every alert snapshot."""
    out = []
    for ev in events:
        if tick:
            out.extend(engine.advance(ev.timestamp))
        out.extend(engine.process(ev))
    return out


def predicate(detection: dict[str, Any], logsource: dict[str, Any] | None = None) -> Any:
    """The compiled predicate of one detection, through the production load path (no files)."""
    rule = SigmaRule.from_dict(rule_doc(detection, logsource))
    vedette_pipeline().apply(rule)
    trees = [lower_tree(c.parsed) for c in rule.detection.parsed_condition]
    compiled = compile_tree(simplify(trees[0]))

    def check(fields: dict[str, Any]) -> bool:
        return bool(compiled(fields, Lowered(fields)))

    return check
