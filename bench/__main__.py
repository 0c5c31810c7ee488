"""`make bench`: run every bench/bench_*.py module, write JSON results and print a table.

Each module exposes ``run() -> BenchResult``. ``python -m bench engine shipping`` runs a subset.
"""

from __future__ import annotations

import importlib
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
    summary = table(results)
    (RESULTS / "summary.txt").write_text(summary + "\n")
    print(summary)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
