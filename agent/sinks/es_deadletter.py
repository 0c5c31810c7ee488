"""Dead-letter file: documents Elasticsearch refused for good (mapping or parsing errors).

One JSON object per line — when, the HTTP status, Elasticsearch's error, the bulk action and
the document itself — so an operator can fix the mapping and re-send. Rotated to ``.1`` past
``max_bytes`` (one backup), so it can never fill the disk.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from agent.events import format_timestamp

log = logging.getLogger(__name__)


class DeadLetterFile:
    def __init__(self, path: Path, max_bytes: int = 50 * 1024 * 1024) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def write(self, action: bytes, source: bytes, status: int, error: Any) -> None:
        try:
            document: Any = json.loads(source)
        except ValueError:
            document = source.decode("utf-8", "replace")
        try:
            action_obj: Any = json.loads(action)
        except ValueError:
            action_obj = action.decode("utf-8", "replace")
        line = json.dumps(
            {"@timestamp": format_timestamp(time.time()), "status": status, "error": error,
             "action": action_obj, "document": document},
            ensure_ascii=False, default=str,
        ) + "\n"
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if self.path.exists() and self.path.stat().st_size + len(line) > self.max_bytes:
                    self.path.replace(self.path.with_name(self.path.name + ".1"))
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.write(line)
            except OSError as exc:
                log.error("cannot write dead-letter file %s: %s", self.path, exc.strerror or exc)

    def count(self) -> int:
        """Lines in the current file (for ``vedette es status``)."""
        try:
            with self.path.open("rb") as handle:
                return sum(1 for _ in handle)
        except OSError:
            return 0
