"""Flow control of the shipper: per-stream retry gates and the adaptive batch size.

Per-stream gates (no head-of-line blocking): when Elasticsearch refuses the items of one
stream (a per-item 503 on the latest index, a 403 on one index), only that stream waits —
with exponential backoff and jitter while nothing of it gets through, the initial delay when
part of it did — and the other streams keep shipping. Whole-request failures are the
shipper's own backoff, not a gate's.

Adaptive batch size: a bulk request that times out is resent with half as many documents
(down to one), so a node slower than ``request_timeout_seconds`` still makes progress; every
answered request grows the size back by a quarter, up to the configured ``batch_max_docs``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass
class _Gate:
    failures: int = 0
    retry_at: float = 0.0


class StreamGates:
    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.initial = initial
        self.maximum = maximum
        self._rng = rng or random.Random()
        self._clock = clock
        self._gates: dict[str, _Gate] = {}
        self.recoveries = 0  # closed streams that got accepted again since the start

    def closed(self) -> set[str]:
        """Streams that must not be sent right now."""
        now = self._clock()
        return {s for s, g in self._gates.items() if g.retry_at > now}

    def next_open(self) -> float | None:
        """Seconds until the first closed stream may be sent again (None: none is closed)."""
        now = self._clock()
        waits = [g.retry_at - now for g in self._gates.values() if g.retry_at > now]
        return min(waits) if waits else None

    def refused(self, stream: str, partly_accepted: bool) -> None:
        gate = self._gates.setdefault(stream, _Gate())
        if partly_accepted:
            gate.failures = 0
            delay = self.initial
        else:
            gate.failures += 1
            delay = min(self.maximum, self.initial * 2 ** min(gate.failures - 1, 30))
        gate.retry_at = self._clock() + delay * self._rng.uniform(0.5, 1.0)

    def accepted(self, streams: Iterable[str]) -> None:
        for stream in streams:
            if self._gates.pop(stream, None) is not None:
                self.recoveries += 1


class BatchSizer:
    def __init__(self, max_docs: int, max_bytes: int) -> None:
        self.max_docs = max(1, max_docs)
        self.max_bytes = max(1, max_bytes)
        self.docs = self.max_docs

    @property
    def bytes(self) -> int:
        return max(1, self.max_bytes * self.docs // self.max_docs)

    def timed_out(self, sent: int) -> int:
        """Halve (below what the timed-out request carried); the new size."""
        self.docs = max(1, min(self.docs, sent) // 2)
        return self.docs

    def answered(self) -> int:
        if self.docs < self.max_docs:
            self.docs = min(self.max_docs, self.docs + max(1, self.docs // 4))
        return self.docs
