"""`make bench`: run every bench/bench_*.py module, write JSON results and print a table.

Each module exposes ``run() -> BenchResult``. ``python -m bench engine shipping`` runs a subset.
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback
from pathlib import Path

from bench.common import RESULTS, BenchResult, table, write


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    names = sorted(p.stem.removeprefix("bench_") for p in here.glob("bench_*.py"))
    wanted = argv or names
    results: list[BenchResult] = []
    failed = 0
    for name in wanted:
        print(f"== bench {name}", flush=True)
        try:
            module = importlib.import_module(f"bench.bench_{name}")
            result: BenchResult = module.run()
        except Exception:
            traceback.print_exc()
            failed += 1
            continue
        print(f"   wrote {write(result)}", flush=True)
        results.append(result)
    print(table(results))
    # summary.txt covers every recorded benchmark, including ones not run this time
    (RESULTS / "summary.txt").write_text(table(_recorded()) + "\n")
    return 1 if failed else 0


def _recorded() -> list[BenchResult]:
    out: list[BenchResult] = []
    for path in sorted(RESULTS.glob("*.json")):
        try:
            doc = json.loads(path.read_text())
            result = BenchResult(doc["name"])
            for m in doc["measurements"]:
                result.add(m["metric"], float(m["value"]), m["unit"], m.get("target", ""),
                           m.get("note", ""))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        out.append(result)
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
