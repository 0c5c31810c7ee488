"""JSON form of the detection state the checkpoint keeps (group keys, distinct values, window
entries), and the bounds that keep a checkpoint small.

A value in a group key or a window is what an event field held after
:func:`~agent.detection.correlation.hashable`: ``str``, ``int``, ``float``, ``bool``, ``None``,
or a tuple of them (a key, the rule ids of a temporal entry). JSON keeps the first five apart
(``1``, ``1.0``, ``true``); a tuple is written ``{"t": [...]}``. Anything else raises
``ValueError``: the group is left out of the checkpoint (counted), never written half.
"""

from __future__ import annotations

import math
from typing import Any

ENTRIES_PER_LIST = 1024
"""A group keeps at most this many of the newest entries of each of its lists (event_count
timestamps, value_count distinct values, one-second buckets, late-window history) in the
checkpoint. Conditions of up to this many events or distinct values are restored exactly."""
ENTRIES_TOTAL = 200_000
"""All correlation rules together write at most this many entries (4.3 MB of JSON measured,
~3 s to write on the loaded 2-core machine; the pipeline then checkpoints less often); each
rule with groups gets an equal share, most recently used groups first. Groups beyond it are
left out; their number is the gauge ``vedette_checkpoint_groups_left_out``."""
SUPPRESSION_KEPT = 10_000
"""Per rule: the newest cooldowns and per-minute-cap opening times kept."""

_SCALARS = (str, int, float, bool)


def encode(value: Any) -> Any:
    """``value`` as JSON data; ``ValueError`` for a type the checkpoint does not keep."""
    if value is None or isinstance(value, _SCALARS):
        return value
    if isinstance(value, tuple):
        return {"t": [encode(v) for v in value]}
    raise ValueError(f"cannot checkpoint a {type(value).__name__} value")


def decode(raw: Any) -> Any:
    """The value :func:`encode` wrote; ``ValueError`` for anything it cannot have written."""
    if raw is None or isinstance(raw, _SCALARS):
        return raw
    if isinstance(raw, dict) and len(raw) == 1 and isinstance(raw.get("t"), list):
        return tuple(decode(v) for v in raw["t"])
    raise ValueError("not a checkpointed value")


def stamp(raw: Any) -> float:
    """A timestamp read back: a finite number (``ValueError`` otherwise)."""
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise ValueError(f"not a timestamp: {raw!r}")
    return float(raw)


def newest(items: list[Any], n: int = ENTRIES_PER_LIST) -> list[Any]:
    """The last ``n`` items of a time-ordered list."""
    return items[-n:] if len(items) > n else items


def bucket(raw: Any) -> list[Any]:
    """A one-second bucket ``[second, newest, n, sum, oldest]`` read back."""
    if not isinstance(raw, list) or len(raw) != 5:
        raise ValueError("not a bucket")
    second, last, n, total, first = raw
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError("not a bucket count")
    if isinstance(total, bool) or not isinstance(total, int | float):
        raise ValueError("not a bucket sum")
    return [stamp(second), stamp(last), n, float(total), stamp(first)]


def entries(raw: Any) -> list[tuple[float, Any]]:
    """``[[ts, value], ...]`` read back, in time order (``ValueError`` when it is not)."""
    if not isinstance(raw, list):
        raise ValueError("not a list of entries")
    out: list[tuple[float, Any]] = []
    for item in raw:
        if not isinstance(item, list) or len(item) != 2:
            raise ValueError("not an entry")
        out.append((stamp(item[0]), decode(item[1])))
    if any(out[i][0] > out[i + 1][0] for i in range(len(out) - 1)):
        raise ValueError("entries out of time order")
    return out


def stamps(raw: Any) -> list[float]:
    """A time-ordered list of timestamps read back."""
    if not isinstance(raw, list):
        raise ValueError("not a list of timestamps")
    out = [stamp(x) for x in raw]
    if any(out[i] > out[i + 1] for i in range(len(out) - 1)):
        raise ValueError("timestamps out of time order")
    return out


def size(group: dict[str, Any]) -> int:
    """Entries of an exported group (what :data:`ENTRIES_TOTAL` counts)."""
    return 1 + sum(len(v) for v in group.values() if isinstance(v, list))
