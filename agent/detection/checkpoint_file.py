"""The detection checkpoint's file: a versioned header with a checksum, then the body.

::

    {"format": "vedette-detection-checkpoint", "version": 2, "bytes": N, "sha256": "…"}\\n
    <body: N bytes of JSON>

The file is replaced atomically and durably (:func:`agent.durable.write_durably`), so a crash
leaves the old or the new file; the checksum catches what the file system does not (a torn
write on a disk that lies about flushes, a damaged sector, a truncated copy). Reading refuses,
with one ``reason`` for the counter and the log line:

* ``unreadable`` — the file cannot be read (EIO, permissions);
* ``damaged`` — truncated, torn, checksum or JSON wrong;
* ``foreign`` — not a Vedette detection checkpoint;
* ``version`` — a version this Vedette does not know (written by a newer one).

Version 1 (one JSON object ``{"version": 1, "rules": …}``, open alerts only, no checksum) is
still read: its open alerts are restored, ``old_version`` is counted. A refused file is moved
aside to ``NAME.refused`` (the previous one replaced) for inspection, so the next checkpoint
does not overwrite the evidence and the agent runs on from empty state.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.durable import write_durably

FORMAT = "vedette-detection-checkpoint"
VERSION = 2
_MARKER = b'{"format":"' + FORMAT.encode() + b'"'
MAX_BYTES = 256 * 1024 * 1024
"""A larger file is not read (the bounds keep a real one under ~10 MB)."""


class Refused(Exception):
    """The checkpoint cannot be used; ``reason`` is the counter's label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Contents:
    version: int
    body: dict[str, Any]


def write(path: Path, body: dict[str, Any]) -> None:
    """Write ``body`` durably under a fresh header; raises ``OSError``."""
    text = json.dumps(body, default=str, ensure_ascii=True, separators=(",", ":"))
    data = text.encode("ascii")
    header = json.dumps({"format": FORMAT, "version": VERSION, "bytes": len(data),
                         "sha256": hashlib.sha256(data).hexdigest()}, separators=(",", ":"))
    write_durably(path, header + "\n" + text)


def read(path: Path) -> Contents | None:
    """The checkpoint at ``path``; ``None`` when there is none; :class:`Refused` otherwise."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Refused("unreadable", exc.strerror or str(exc)) from exc
    if len(data) > MAX_BYTES:
        raise Refused("damaged", f"larger than {MAX_BYTES} bytes")
    first, sep, rest = data.partition(b"\n")
    try:
        header = json.loads(first)
    except (ValueError, RecursionError) as exc:
        ours = (_MARKER.startswith(first) or first.startswith(_MARKER)
                or first.startswith(b'{"version":1'))
        raise Refused("damaged" if ours else "foreign", "the header is not JSON") from exc
    if not isinstance(header, dict):
        raise Refused("foreign", "not a Vedette detection checkpoint")
    if "format" not in header and header.get("version") == 1 and not sep:
        if not isinstance(header.get("rules"), dict):
            raise Refused("damaged", "version 1 without its open alerts")
        return Contents(1, header)
    if header.get("format") != FORMAT:
        raise Refused("foreign", "not a Vedette detection checkpoint")
    version = header.get("version")
    if version != VERSION:
        raise Refused("version", f"version {version!r}, this Vedette reads {VERSION} and 1")
    size, digest = header.get("bytes"), header.get("sha256")
    if not sep or size != len(rest):
        raise Refused("damaged", f"torn or truncated: {len(rest)} bytes, the header says {size!r}")
    if hashlib.sha256(rest).hexdigest() != digest:
        raise Refused("damaged", "checksum mismatch")
    try:
        body = json.loads(rest)
    except (ValueError, RecursionError) as exc:
        raise Refused("damaged", "the body is not JSON") from exc
    if not isinstance(body, dict):
        raise Refused("damaged", "the body is not an object")
    return Contents(VERSION, body)


def move_aside(path: Path) -> Path | None:
    """Rename a refused file to ``NAME.refused``; ``None`` when that fails too."""
    aside = path.with_name(path.name + ".refused")
    try:
        os.replace(path, aside)
    except OSError:
        return None
    return aside
