"""What several commands share: reporting configuration errors."""

from __future__ import annotations

import sys

from agent.errors import ConfigErrors


def print_config_errors(exc: ConfigErrors) -> None:
    """Every problem as ``file:line: reason`` on stderr."""
    for err in exc.errors:
        print(err.location_text(), file=sys.stderr)

