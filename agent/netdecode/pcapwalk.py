"""Finding the record starts of a classic pcap file many records at a time.

Each pcap record starts where the previous one ends (16-byte header + captured length), so the
chain is inherently sequential: walking it one record at a time costs a few C iterator steps per
record (:func:`~agent.netdecode.columns.chain_offsets`), the largest single cost of reading a
capture in Python. :func:`region_starts` instead walks a 16 MiB region in *lanes*:

1. the region is cut into 16 KiB lanes; in each lane the first plausible record header is
   *guessed* — the first place where the upper two bytes of the region's first timestamp
   occur (``bytes.find``), whose sub-second field, captured and original lengths make sense,
   and whose successor's do too;
2. all lanes are walked together, one numpy step per record *within* a lane;
3. every lane must end exactly on the next lane's guess. The first lane starts on a known
   record, so by induction every guess was a true record start and the offsets are exactly the
   chain's. If any lane misses (a guess was wrong), a length is implausible, or too few lanes
   were found, the caller walks the region one record at a time instead.

The result never depends on the guesses being right — only the speed does.
"""

from __future__ import annotations

import mmap

import numpy as np
import numpy.typing as npt

REGION_BYTES = 16 << 20
LANE_BYTES = 16384
MIN_LANES = 32
"""Fewer plausible lanes than this: the lockstep walk would not pay; walk record by record."""


def region_starts(
    mm: mmap.mmap, words: npt.NDArray[np.uint32], first: int, little: bool, max_record: int,
    subsecond_limit: int,
) -> npt.NDArray[np.int64] | None:
    """Starts of the records from ``first`` up to ``first + REGION_BYTES``, then the next one.

    ``words[p]`` is the 32-bit header word at byte ``p`` (file byte order, ``little`` or not);
    ``first`` must be a true record start. ``None`` when the region is too close to the end of
    the file or the lane walk could not prove its result: walk record by record then.
    """
    # No record of the region may reach past the end of the file: the last ones are walked
    # record by record, where a record cut short is told apart from a corrupt one.
    end = min(first + REGION_BYTES, len(mm) - 16 - max_record)
    lanes = _guesses(mm, words, first, end, little, max_record, subsecond_limit)
    if lanes is None:
        return None
    return _lockstep(words, lanes, end, max_record)


def _guesses(
    mm: mmap.mmap, words: npt.NDArray[np.uint32], first: int, end: int, little: bool,
    max_record: int, subsecond_limit: int,
) -> npt.NDArray[np.int64] | None:
    """The first lane's start, then one plausible record start in each later lane that has one."""
    shift = 2 if little else 0  # where the upper two bytes of the seconds field are
    pattern = mm[first + shift:first + shift + 2]
    find = mm.find
    found = []
    for lane in range(first + LANE_BYTES, end, LANE_BYTES):
        hit = find(pattern, lane + shift, lane + LANE_BYTES + shift)
        if hit >= 0:
            found.append(hit - shift)
    if len(found) < MIN_LANES:
        return None
    candidates = np.array(found, dtype=np.int64)
    ok = _plausible(words, candidates, max_record, subsecond_limit)
    following = candidates + 16 + words[candidates + 8].astype(np.int64)
    ok &= following < len(words) - 16
    ok[ok] = _plausible(words, following[ok], max_record, subsecond_limit)
    if ok.sum() < MIN_LANES:
        return None
    lanes: npt.NDArray[np.int64] = np.concatenate(([first], candidates[ok]))
    return lanes


def _plausible(
    words: npt.NDArray[np.uint32], at: npt.NDArray[np.int64], max_record: int,
    subsecond_limit: int,
) -> npt.NDArray[np.bool_]:
    captured = words[at + 8]
    ok: npt.NDArray[np.bool_] = (
        (words[at + 4] < subsecond_limit) & (captured <= max_record)
        & (captured <= words[at + 12])
    )
    return ok


def _lockstep(
    words: npt.NDArray[np.uint32], lanes: npt.NDArray[np.int64], end: int, max_record: int
) -> npt.NDArray[np.int64] | None:
    limits = np.append(lanes[1:], end)
    pos = lanes.copy()
    active = np.ones(len(lanes), dtype=np.bool_)
    steps = []
    last = end
    while True:
        steps.append(np.where(active, pos, -1))
        captured = words[pos + 8].astype(np.int64)
        if (captured[active] > max_record).any():
            return None  # a corrupt length: the record-by-record walk reports it
        following = pos + 16 + captured
        going = active & (following < limits)
        stopped = active & ~going
        stopped[-1] = False
        if (following[stopped] != limits[stopped]).any():
            return None  # a lane missed the next lane's start: a guess was wrong
        if not going[-1] and active[-1]:
            last = int(following[-1])
        pos = np.where(going, following, pos)
        active = going
        if not active.any():
            break
    walked = np.stack(steps, axis=1).ravel()
    starts: npt.NDArray[np.int64] = np.append(walked[walked >= 0], last)
    return starts
