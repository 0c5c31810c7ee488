"""Messages for rule authors: pySigma's terse errors explained, likely typos of field names.

The loader asks this module three things: a clearer text for a Sigma error (a timespan error
shows the valid format), which key of the document an error is about (so that ``file:line``
points at it), and whether a field a rule needs but its logsource does not carry is a typo.

A typo is an **error** (``rules validate`` fails), a field Vedette simply does not produce is a
**rejection** (a valid third-party rule it cannot evaluate, e.g. SigmaHQ's Windows
``LogonId``). The difference is decided from the logsource's field catalogue
(:mod:`agent.detection.fields`, docs/events.md): a name that differs from a known field only in
case or by a small edit (``event.outcom``, ``Commandline``) is a typo; so is any unknown field of
a ``vedette`` logsource, a taxonomy no third-party rule set writes for.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

from agent.detection.fields import LogsourceFields

TIMESPAN_FORMAT = ("a whole number followed by one unit: s, m, h, d, w, M (months) or y, "
                   "e.g. 30s, 10m, 2h, 1d")
TYPO_CUTOFF = 0.85
"""difflib ratio above which an unknown field is taken for a misspelt known one."""


def explain(reason: str) -> str:
    """``reason`` with the missing hint added (timespans: the valid format)."""
    if re.search(r"timespan", reason, re.I) and "e.g." not in reason:
        return f"{reason.rstrip('.')}: a timespan is {TIMESPAN_FORMAT}"
    return reason


_KEYS = (
    ("timespan", "timespan"),
    ("group-by", "group-by"),
    ("correlation", "correlation"),
    ("detection", "detection"),
    ("logsource", "logsource"),
    ("level", "level"),
    ("status", "status"),
    ("date", "date"),
    ("modified", "modified"),
    ("tags", "tags"),
    ("title", "title"),
    ("reference", "references"),
    ("identifier", "id"),
)


def reason_key(reason: str) -> str | None:
    """The document key an error message is about (its line is the best location)."""
    low = reason.lower()
    for word, key in _KEYS:
        if word in low:
            return key
    return None


def typo(entry: LogsourceFields, name: str) -> str | None:
    """Why ``name`` (not carried by ``entry``'s events) looks like a typo, or ``None``."""
    known = sorted({*entry.fields, *entry.sigma_names})
    lowered = {k.lower(): k for k in known}
    if name.lower() in lowered:
        return f"did you mean {lowered[name.lower()]!r}? (field names are case-sensitive)"
    close = difflib.get_close_matches(name, known, n=1, cutoff=TYPO_CUTOFF)
    if close:
        return f"did you mean {close[0]!r}?"
    if entry.product == "vedette":
        near = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"did you mean {near[0]!r}? " if near else ""
        return f"{hint}(the fields of {entry.key_text} events are listed in docs/events.md)"
    return None


def field_line(lines: Sequence[str], span: tuple[int, int], name: str) -> int | None:
    """The line of the detection key naming ``name`` (``name:`` or ``name|modifier:``)."""
    pattern = re.compile(rf"^\s*(-\s*)?['\"]?{re.escape(name)}(\|[^:]*)?['\"]?\s*:")
    for i in range(span[0] - 1, min(span[1], len(lines))):
        if pattern.match(lines[i]):
            return i + 1
    return None
