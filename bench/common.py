"""What every benchmark returns, and how results are written."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Measurement:
    """One measured number, with the target it is judged against (if any)."""

    metric: str
    value: float
    unit: str
    target: str = ""  # e.g. ">= 250000" or "<= 100"
    note: str = ""

    def meets(self) -> bool | None:
        if not self.target:
            return None
        op, _, num = self.target.partition(" ")
        limit = float(num)
        return self.value >= limit if op == ">=" else self.value <= limit


@dataclass
class BenchResult:
    name: str
    measurements: list[Measurement] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)

    def add(self, metric: str, value: float, unit: str, target: str = "", note: str = "") -> None:
        self.measurements.append(Measurement(metric, value, unit, target, note))


def write(result: BenchResult) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{result.name}.json"
    doc = {
        "name": result.name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
        },
        "context": result.context,
        "measurements": [dict(asdict(m), meets=m.meets()) for m in result.measurements],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def table(results: list[BenchResult]) -> str:
    rows = [("benchmark", "metric", "value", "unit", "target", "ok")]
    for r in results:
        for m in r.measurements:
            ok = m.meets()
            rows.append(
                (
                    r.name,
                    m.metric,
                    f"{m.value:,.4g}" if abs(m.value) < 1e4 else f"{m.value:,.0f}",
                    m.unit,
                    m.target,
                    "" if ok is None else ("yes" if ok else "NO"),
                )
            )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )
