"""Generate the Vedette Grafana dashboards from ``dashboards/generator/``.

    python dashboards/build.py           # (re)write dashboards/grafana/*.json
    python dashboards/build.py --check   # exit 1 if a committed file differs from the generator

The JSON files are committed so Grafana can import them as-is; a test asserts that they equal
what this script generates, so edit the generator, never the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "grafana"

sys.path.insert(0, str(HERE))

from generator import agent_health, fleet, host, network  # noqa: E402

BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "vedette-fleet.json": fleet.build,
    "vedette-host.json": host.build,
    "vedette-network.json": network.build,
    "vedette-agent-health.json": agent_health.build,
}


def render(build: Callable[[], dict[str, Any]]) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def generate() -> dict[str, str]:
    """File name → JSON text of every dashboard."""
    return {name: render(build) for name, build in BUILDERS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for name, text in generate().items():
        path = OUT / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(name)
        else:
            OUT.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"out of date (run python dashboards/build.py): {', '.join(stale)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
