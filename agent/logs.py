"""Structured logging to stderr (journald picks it up), as text or one JSON object per line.

Context goes in ``extra={...}``; both formats render it. Everything that may come from an
attacker (a log line, a DNS name, a user name) is escaped: control characters and ANSI escape
sequences never reach the terminal or the journal raw.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from typing import Any, TextIO

_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
# C0, DEL and C1 (U+0080-U+009F: U+009B is a one-character CSI for some terminals)
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
_CONTROL[ord("\n")] = "\\n"
_CONTROL[ord("\t")] = "\\t"


def safe(text: object, limit: int = 2048) -> str:
    """Printable rendering of untrusted text: control bytes escaped, length bounded."""
    value = str(text)
    if len(value) > limit:
        value = value[:limit] + f"…(+{len(value) - limit} chars)"
    return value.translate(_CONTROL)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")}


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [f"{stamp}.{int(record.msecs):03d}Z", record.levelname, f"{record.name}:",
                 safe(record.getMessage())]
        parts += [f"{k}={safe(v, 512)!s}" for k, v in _extras(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "@timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "log.level": record.levelname.lower(),
            "log.logger": record.name,
            "message": safe(record.getMessage()),
        }
        for key, value in _extras(record).items():
            # NaN/inf are not JSON: json.dumps would write them as bare NaN/Infinity
            plain = isinstance(value, int | bool) or value is None or (
                isinstance(value, float) and math.isfinite(value)
            )
            doc[key] = value if plain else safe(value, 512)
        if record.exc_info:
            doc["error.stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=True)


def setup_logging(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("apscheduler", "elastic_transport", "urllib3", "scapy.runtime"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
