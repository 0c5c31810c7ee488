"""Turn one raw log line (bytes an attacker may partly control) into safe text.

Every log parser starts here. The result is valid UTF-8 text without terminal escape sequences,
NUL bytes or other control characters (they become visible ``\\xNN`` escapes, so a forged line
cannot hide in a terminal or split into two records), cut to a maximum length. What was found is
reported as a set of bounded reason names so the caller can count it in
``vedette_input_errors_total{source, reason}``.
"""

from __future__ import annotations

import re
from typing import NamedTuple

MAX_LINE_CHARS = 16 * 1024

# Only *complete* escape sequences are removed, and only ones that cannot reach past the
# attacker's text into what the logging program appends after it (sshd's `` from IP port N``):
# * CSI ``ESC [ params intermediates final`` without a space among the intermediates (a space
#   would let ``ESC [`` at the end of a user name swallow `` f`` of `` from``);
# * OSC ``ESC ] ... BEL`` or ``ESC ] ... ESC \``: the terminator is *required* (an unterminated
#   OSC would otherwise delete the rest of the line, trusted suffix included) and, like CSI, no
#   space inside (else one opened in sudo's PWD and closed in the command line would delete
#   sudo's own `` ; USER=root ; COMMAND=`` between them);
# * two-byte escapes, except the string introducers (``P X [ ] ^ _``), whose strings run to a
#   terminator.
# Any other ESC stays in the text as a visible ``\x1b`` (see _CONTROL), nothing after it lost.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[!-/]*[@-~]|\][^\x07\x1b ]*(?:\x07|\x1b\\)|[@-OQ-WYZ\\])")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_NEEDS_WORK = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_NEEDS_WORK_BYTES = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# the same bytes except the newline that joins a batch (CR, NUL, ESC … still leave the fast
# path); deleting them with bytes.translate and comparing lengths is 5x faster than a regex scan
_BATCH_NEEDS_WORK = bytes([*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F])

# Reason names (the label values of vedette_input_errors_total this module can produce).
INVALID_UTF8 = "invalid_utf8"
CONTROL_CHARS = "control_chars"
ANSI_ESCAPES = "ansi_escapes"
TOO_LONG = "too_long"


class CleanLine(NamedTuple):
    text: str
    problems: frozenset[str]


_NO_PROBLEMS: frozenset[str] = frozenset()


def clean_line(raw: bytes | str, max_chars: int = MAX_LINE_CHARS) -> CleanLine:
    """Sanitise one line; never raises. A trailing ``\\r`` (CRLF files) is dropped silently."""
    problems: set[str] = set()
    if isinstance(raw, bytes):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) <= max_chars and _NEEDS_WORK_BYTES.search(raw) is None:
            try:  # the common case: clean UTF-8 of normal length
                return CleanLine(raw.decode("utf-8"), _NO_PROBLEMS)
            except UnicodeDecodeError:
                pass
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="replace")
            problems.add(INVALID_UTF8)
    else:
        text = raw[:-1] if raw.endswith("\r") else raw
        if not text.isascii():
            # lone surrogates cannot be encoded later; replace them now
            fixed = text.encode("utf-8", errors="replace").decode("utf-8")
            if fixed != text:
                problems.add(INVALID_UTF8)
                text = fixed
    if len(text) > max_chars:
        text = text[:max_chars]
        problems.add(TOO_LONG)
    if _NEEDS_WORK.search(text) is None:
        return CleanLine(text, frozenset(problems) if problems else _NO_PROBLEMS)
    if "\x1b" in text:
        stripped = _ANSI.sub("", text)
        if stripped != text:
            problems.add(ANSI_ESCAPES)
            text = stripped
    if _CONTROL.search(text) is not None:
        problems.add(CONTROL_CHARS)
        text = _CONTROL.sub(_escape, text)
    return CleanLine(text, frozenset(problems))


def clean_lines(raws: list[bytes], max_chars: int = MAX_LINE_CHARS) -> list[str] | None:
    """Texts of a batch of lines when *every* line is clean UTF-8 of normal length, else ``None``.

    One regex scan and one decode for the whole batch instead of one per line; the texts are
    exactly what :func:`clean_line` returns for such lines. ``None`` means at least one line
    needs :func:`clean_line` (the caller then cleans the batch line by line).
    """
    if not raws:
        return []
    if max(map(len, raws)) > max_chars:  # bytes >= characters: a short byte line is short text
        return None
    blob = b"\n".join(raws)
    if len(blob.translate(None, _BATCH_NEEDS_WORK)) != len(blob):
        return None
    try:
        texts = blob.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        return None
    return texts if len(texts) == len(raws) else None  # a "line" with a newline inside


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"
