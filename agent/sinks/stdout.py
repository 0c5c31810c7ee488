"""Stdout sink: one ECS alert document per line (for containers and `vedette replay`)."""

from __future__ import annotations

import json
import sys
import threading
from typing import TextIO

from agent.alerts import Alert, to_ecs
from agent.identity import Identity


class StdoutSink:
    name = "stdout"

    def __init__(self, identity: Identity, stream: TextIO | None = None) -> None:
        self._identity = identity
        self._stream = stream
        self._lock = threading.Lock()

    def emit(self, alert: Alert) -> None:
        line = json.dumps(to_ecs(alert, self._identity), ensure_ascii=True, default=str)
        with self._lock:
            stream = self._stream or sys.stdout
            stream.write(line + "\n")

    def flush(self) -> None:
        with self._lock:
            (self._stream or sys.stdout).flush()

    def close(self) -> None:
        self.flush()
