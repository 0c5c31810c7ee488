"""The engine against an independent oracle (pySigma-backend-sqlite run by SQLite).

Every shipped rule and every SigmaHQ rule the engine compiles, with events generated from each
rule's own values (see ``differential.py``): 0 unexplained disagreements, and the candidate
index never hides a rule from an event its predicate matches. The figures are printed.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.detection import load_rules
from tests.detection.differential import run

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "rules"
SIGMAHQ = ROOT / ".." / "shared" / "sigmahq"


@pytest.mark.parametrize("corpus", ["shipped", "sigmahq"])
def test_engine_agrees_with_the_sqlite_oracle(
    corpus: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if corpus == "sigmahq" and not SIGMAHQ.is_dir():
        pytest.skip("SigmaHQ corpus not present")
    started = time.monotonic()
    if corpus == "shipped":
        report, paths = load_rules([SHIPPED]), [SHIPPED]
    else:
        report, paths = load_rules([], [SIGMAHQ]), [SIGMAHQ]
    figures = run(report, paths)
    with capsys.disabled():  # the figures belong in every CI log, not only failing ones
        print(f"\n{corpus} {figures.summary()} in {time.monotonic() - started:.1f} s")
    assert figures.rules == len(report.ruleset.detections)  # every compiled rule, none skipped
    assert figures.rules >= (60 if corpus == "shipped" else 200)
    assert figures.matches > figures.rules  # the generated events really exercise the rules
    assert figures.oracle_matches > figures.rules  # and the oracle really selects rows
    assert not figures.unconvertible, figures.unconvertible[:10]
    assert not figures.index_misses, figures.index_misses[:10]
    assert not figures.unexplained, "\n".join(figures.unexplained[:25])
