"""Event files: JSON lines of ready-made events, read offline (fixtures, ``replay --log jsonl``).

One event per line, ``{"@timestamp": …, "logsource": {…}, <ECS fields>}`` — the form
``inputs.event_files`` follows live (:mod:`agent.collectors.logs.event_files`). Blank lines and
``#`` comments are skipped; a malformed line stops the read with ``file:line: reason``
(:class:`~agent.errors.RuleError`): an offline input is a fixture or evidence, and a silently
skipped line would change what it proves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from agent.errors import RuleError
from agent.events import Event


def decode_jsonl(path: Path) -> Iterator[Event]:
    """One event per line: ``{"@timestamp": …, "logsource": {…}, <ECS fields>}``."""
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                yield Event.from_dict(json.loads(line))
            except (ValueError, TypeError, RecursionError) as exc:
                raise RuleError(f"bad event: {exc}", str(path), n) from None
