"""A detection checkpoint an operator replaced by something absurd (a deeply nested JSON first
line: json raises RecursionError, not ValueError) or one over the size limit is refused and
counted; the agent starts from empty state instead of failing at start."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from agent.detection import checkpoint_file
from agent.detection.checkpoint import AlertCheckpoint
from agent.metrics import AgentMetrics


def _restore(path: Path) -> AgentMetrics:
    metrics = AgentMetrics(CollectorRegistry())
    assert AlertCheckpoint(path, metrics).restore({}) == 0
    return metrics


@pytest.mark.parametrize("content", [b"[" * 100_000, b'{"version":1,"rules":' + b"[" * 100_000])
def test_a_deeply_nested_checkpoint_is_refused_not_a_crash(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "alert-state.json"
    path.write_bytes(content)
    metrics = _restore(path)
    refused = sum(metrics.registry.get_sample_value(
        "vedette_checkpoint_problems_total", {"reason": r}) or 0 for r in ("damaged", "foreign"))
    assert refused == 1 and path.with_name("alert-state.json.refused").exists()


def test_a_nested_body_with_a_right_checksum_is_refused(tmp_path: Path) -> None:
    import hashlib  # noqa: PLC0415
    import json  # noqa: PLC0415

    body = b"[" * 100_000
    header = json.dumps({"format": checkpoint_file.FORMAT, "version": checkpoint_file.VERSION,
                         "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()})
    path = tmp_path / "alert-state.json"
    path.write_bytes(header.encode() + b"\n" + body)
    metrics = _restore(path)
    assert metrics.registry.get_sample_value(
        "vedette_checkpoint_problems_total", {"reason": "damaged"}) == 1


def test_a_checkpoint_over_the_size_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "alert-state.json"
    checkpoint_file.write(path, {"rules": {}, "pad": "x" * 5000})
    monkeypatch.setattr(checkpoint_file, "MAX_BYTES", 4096)
    metrics = _restore(path)
    assert metrics.registry.get_sample_value(
        "vedette_checkpoint_problems_total", {"reason": "damaged"}) == 1


def test_the_other_state_files_refuse_a_deeply_nested_file(tmp_path: Path) -> None:
    """FIM baseline, known CPU-heavy executables, login history: rebuilt, not a crash."""
    from agent.collectors.host.fim.baseline import load_baseline  # noqa: PLC0415
    from agent.collectors.host.process.cpu import ProcessCpuCollector  # noqa: PLC0415
    from agent.collectors.parsers.auth_context import AuthContext  # noqa: PLC0415

    nested = tmp_path / "nested.json"
    nested.write_text("[" * 100_000)
    assert load_baseline(nested) is None
    ProcessCpuCollector(known_file=nested, proc_root=tmp_path)
    AuthContext(history_file=nested)
