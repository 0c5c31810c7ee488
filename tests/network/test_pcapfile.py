"""pcap/pcapng reader: formats, byte orders, resolutions, truncation and bogus headers."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import PcapNgWriter, PcapWriter

from agent.netdecode.pcapfile import CaptureFormatError, CaptureReader, RawPacket


def _packets(n: int = 5) -> list:
    out = []
    for i in range(n):
        p = Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(dport=1000 + i, flags="S")
        p.time = 1767225600.25 + i
        out.append(p)
    return out


def test_pcap_microseconds(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    with PcapWriter(str(path)) as w:
        w.write(_packets())
    with CaptureReader(path) as r:
        pkts = [RawPacket(*p) for p in r]
    assert r.format == "pcap"
    assert len(pkts) == 5
    assert pkts[0].linktype == 1
    assert pkts[1].timestamp == pytest.approx(1767225601.25, abs=1e-6)
    assert pkts[0].wire_length == len(pkts[0].data) == 54


def test_pcap_nanoseconds_big_endian(tmp_path: Path) -> None:
    frame = bytes(Ether() / IP() / TCP())
    head = struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)
    rec = struct.pack(">IIII", 1767225600, 123456789, len(frame), 1500) + frame
    path = tmp_path / "ns.pcap"
    path.write_bytes(head + rec)
    pkts = [RawPacket(*p) for p in CaptureReader(path)]
    assert pkts[0].timestamp == pytest.approx(1767225600.123456789, abs=1e-6)
    assert pkts[0].wire_length == 1500


def test_pcapng(tmp_path: Path) -> None:
    path = tmp_path / "a.pcapng"
    with PcapNgWriter(str(path)) as w:
        w.write(_packets(3))
    with CaptureReader(path) as r:
        pkts = [RawPacket(*p) for p in r]
    assert r.format == "pcapng"
    assert [p.data[:14] for p in pkts] == [bytes(p)[:14] for p in _packets(3)]
    assert pkts[2].timestamp == pytest.approx(1767225602.25, abs=1e-5)


def test_truncated_last_record_is_counted_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "t.pcap"
    with PcapWriter(str(path)) as w:
        w.write(_packets(3))
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with CaptureReader(path) as r:
        pkts = list(r)
        assert len(pkts) == 2
        assert r.truncated_records == 1


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "too short"),
        (b"GIF89a......", "not a pcap"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 7, 4, 0, 0, 65535, 1), "version"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
         + struct.pack("<IIII", 0, 0, 10_000_000, 10_000_000), "exceeds"),
        (struct.pack("<III", 0x0A0D0D0A, 28, 0xDEADBEEF) + b"\0" * 16, "byte-order"),
        (struct.pack("<III", 0x0A0D0D0A, 13, 0x1A2B3C4D) + b"\0" * 16, "block length"),
    ],
)
def test_bogus_headers_raise_a_located_error(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(content)
    with pytest.raises(CaptureFormatError) as err:
        list(CaptureReader(path))
    assert reason in str(err.value)
    assert str(path) in str(err.value)


def test_batches_split_and_count(tmp_path: Path) -> None:
    path = tmp_path / "b.pcap"
    with PcapWriter(str(path)) as w:
        w.write(_packets(10))
    with CaptureReader(path) as r:
        sizes = [len(b) for b in r.batches(4)]
        assert sizes == [4, 4, 2]
        assert r.packets_read == 10
        assert r.position == r.bytes_total


def test_pcapng_big_endian_with_nanosecond_resolution(tmp_path: Path) -> None:
    frame = bytes(Ether() / IP() / TCP())

    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        length = 12 + len(body)
        return struct.pack(">II", btype, length) + body + struct.pack(">I", length)

    shb = block(0x0A0D0D0A, struct.pack(">IHHq", 0x1A2B3C4D, 1, 0, -1))
    tsresol = struct.pack(">HHB3x", 9, 1, 9) + struct.pack(">HH", 0, 0)
    idb = block(1, struct.pack(">HHI", 1, 0, 65535) + tsresol)
    ts = 1767225600_123456789
    epb = block(6, struct.pack(">IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(frame), 1514) + frame)
    unknown = block(0x0BAD, b"skip me")
    path = tmp_path / "be.pcapng"
    path.write_bytes(shb + idb + unknown + epb)
    with CaptureReader(path) as r:
        pkts = [RawPacket(*p) for p in r]
        assert r.skipped_blocks == 1
    assert len(pkts) == 1
    assert pkts[0].timestamp == pytest.approx(1767225600.123456789, abs=1e-6)
    assert pkts[0].wire_length == 1514 and pkts[0].data == frame
