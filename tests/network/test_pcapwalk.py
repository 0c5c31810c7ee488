"""The lane walk over pcap records finds exactly the record-by-record chain, or declines."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import numpy as np
import pytest

from agent.netdecode import pcapfile, pcapwalk
from agent.netdecode.pcapfile import CaptureFormatError, CaptureReader


@pytest.fixture(autouse=True)
def small_regions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regions of 64 KiB in 1 KiB lanes, so small files take the lane walk."""
    monkeypatch.setattr(pcapwalk, "REGION_BYTES", 64 << 10)
    monkeypatch.setattr(pcapwalk, "LANE_BYTES", 1024)
    monkeypatch.setattr(pcapwalk, "MIN_LANES", 4)
    monkeypatch.setattr(pcapfile, "MAX_RECORD_BYTES", 4096)


def write_pcap(path: Path, frames: list[bytes], order: str = "<", nano: bool = False,
               t0: int = 1_767_225_600) -> Path:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    parts = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1)]
    for i, frame in enumerate(frames):
        sec, frac = t0 + i // 1000, (i % 1000) * (1000 if nano else 1)
        parts.append(struct.pack(order + "IIII", sec, frac, len(frame), len(frame) + 2) + frame)
    path.write_bytes(b"".join(parts))
    return path


def read(path: Path, lanes: bool) -> tuple[list[tuple[float, bytes, int]], int, str | None]:
    saved = pcapfile.region_starts
    used = []

    def spy(*args: object) -> object:
        result = saved(*args)  # type: ignore[arg-type]
        used.append(result is not None)
        return result

    pcapfile.region_starts = spy if lanes else (lambda *args: None)  # type: ignore[assignment]
    out: list[tuple[float, bytes, int]] = []
    error = None
    try:
        with CaptureReader(path) as reader:
            try:
                for cols in reader.columns(500):
                    out.extend((f[0], f[2], f[3]) for f in cols.frames())
            except CaptureFormatError as exc:
                error = str(exc)
            truncated = reader.truncated_records
    finally:
        pcapfile.region_starts = saved
    read.lanes_used = any(used)  # type: ignore[attr-defined]
    return out, truncated, error


def frames(rng: random.Random, count: int, hostile: bool = False, t0: int = 1_767_225_600
           ) -> list[bytes]:
    out = []
    for _ in range(count):
        size = rng.choice((42, 54, 60, 75, 300, 454, 1514))
        body = bytearray(rng.getrandbits(8) for _ in range(size))
        if hostile:
            # Payloads full of fake record headers: same seconds, plausible lengths.
            for at in range(0, size - 16, 23):
                fake = struct.pack("<IIII", t0, 5, rng.randint(0, 80), 200)
                body[at:at + 16] = fake
        out.append(bytes(body))
    return out


@pytest.mark.parametrize("hostile", [False, True])
@pytest.mark.parametrize("order,nano", [("<", False), (">", False), ("<", True)])
def test_lane_walk_equals_the_record_walk(tmp_path: Path, hostile: bool, order: str,
                                          nano: bool) -> None:
    path = write_pcap(tmp_path / "x.pcap", frames(random.Random(3), 1500, hostile), order, nano)
    got = read(path, lanes=True)
    lanes_used = read.lanes_used  # type: ignore[attr-defined]
    assert got == read(path, lanes=False)
    assert len(got[0]) == 1500
    if not hostile:
        assert lanes_used


def test_lane_walk_stops_at_a_corrupt_length(tmp_path: Path) -> None:
    blob = frames(random.Random(5), 800)
    path = write_pcap(tmp_path / "x.pcap", blob)
    data = bytearray(path.read_bytes())
    # Record 300's captured length becomes huge: the readers hand out 300 records, then fail.
    off = 24 + sum(16 + len(f) for f in blob[:300])
    data[off + 8:off + 12] = struct.pack("<I", 1 << 30)
    path.write_bytes(bytes(data))
    got = read(path, lanes=True)
    assert got == read(path, lanes=False)
    assert len(got[0]) == 300 and got[2] is not None and "exceeds" in got[2]


def test_region_starts_declines_near_the_end_of_the_file(tmp_path: Path) -> None:
    path = write_pcap(tmp_path / "x.pcap", frames(random.Random(6), 20))
    with CaptureReader(path) as reader:
        mm = reader._mm
        words = np.ndarray((len(mm) - 3,), dtype="<u4", buffer=mm, strides=(1,))
        assert pcapwalk.region_starts(mm, words, 24, True, 4096, 10**6) is None
        del words


def test_pages_are_released_only_behind_the_batch_handed_out(tmp_path: Path) -> None:
    """Frames are read after the yield: dropping their pages first would fault them back in."""
    frame = bytes(1400)
    path = write_pcap(tmp_path / "big.pcap", [frame] * 14000)  # ~20 MB: several releases
    released = []
    with CaptureReader(path) as reader:
        for cols in reader.columns(1000):
            assert reader._released <= int(cols.offsets[0])
            released.append(reader._released)
    assert released[-1] > 0
