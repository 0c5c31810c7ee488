"""DNS message header and first question, parsed from raw bytes without scapy.

Only what rules need is read: id, QR, opcode, rcode, the section counts and the first question
(name, type, class). Names follow RFC 1035 presentation format: ASCII lower-cased, any byte
outside ``[a-z0-9-_]`` written as ``\\DDD`` (so non-UTF-8 or control bytes in a name can never
reach an alert, a log line or a terminal unescaped). Compression pointers are followed with a
hop limit. A name longer than 255 octets, a pointer loop or a message cut short gives a reason
string instead of a result, which the caller counts.
"""

from __future__ import annotations

from typing import Final, NamedTuple

MAX_NAME_OCTETS: Final = 255
MAX_POINTER_HOPS: Final = 16

TRUNCATED: Final = "dns_truncated"
NAME_TOO_LONG: Final = "dns_name_too_long"
BAD_LABEL: Final = "dns_bad_label"
POINTER_LOOP: Final = "dns_pointer_loop"
NO_QUESTION: Final = "dns_no_question"

QTYPES: Final[dict[int, str]] = {
    1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 10: "NULL", 12: "PTR", 13: "HINFO", 15: "MX",
    16: "TXT", 28: "AAAA", 33: "SRV", 35: "NAPTR", 39: "DNAME", 41: "OPT", 43: "DS",
    46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 52: "TLSA", 64: "SVCB", 65: "HTTPS", 99: "SPF",
    251: "IXFR", 252: "AXFR", 253: "MAILB", 255: "ANY", 257: "CAA",
}
RCODES: Final[dict[int, str]] = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
    6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE",
}

_SAFE: Final = bytes(range(ord("a"), ord("z") + 1)) + b"0123456789-_"
_UPPER_TO_LOWER: Final = bytes.maketrans(
    bytes(range(ord("A"), ord("Z") + 1)), bytes(range(ord("a"), ord("z") + 1))
)


class DnsMessage(NamedTuple):
    id: int
    is_response: bool
    opcode: int
    rcode: int
    question_count: int
    answer_count: int
    name: str
    labels: tuple[int, ...]
    """Length in octets of each label of the question name."""
    qtype: int
    qclass: int


def qtype_name(qtype: int) -> str:
    return QTYPES.get(qtype) or f"TYPE{qtype}"


def rcode_name(rcode: int) -> str:
    return RCODES.get(rcode) or f"RCODE{rcode}"


def escape_label(raw: bytes) -> str:
    """Lower-cased presentation form of one label; unsafe bytes become ``\\DDD``."""
    low = raw.translate(_UPPER_TO_LOWER)
    if not low.translate(None, _SAFE):
        return low.decode("ascii")
    return "".join(chr(b) if b in _SAFE else f"\\{b:03d}" for b in low)


def parse(data: bytes, off: int, end: int) -> DnsMessage | str:
    """Parse the DNS message in ``data[off:end]``; a reason string when it is malformed."""
    if end - off < 12:
        return TRUNCATED
    ident = (data[off] << 8) | data[off + 1]
    b2 = data[off + 2]
    rcode = data[off + 3] & 0x0F
    qd = (data[off + 4] << 8) | data[off + 5]
    an = (data[off + 6] << 8) | data[off + 7]
    if qd == 0:
        return NO_QUESTION
    name = _question_name(data, off, end)
    if isinstance(name, str):
        return name
    text, lengths, pos = name
    if pos + 4 > end:
        return TRUNCATED
    qtype = (data[pos] << 8) | data[pos + 1]
    qclass = (data[pos + 2] << 8) | data[pos + 3]
    return DnsMessage(
        ident, bool(b2 & 0x80), (b2 >> 3) & 0x0F, rcode, qd, an, text, lengths, qtype, qclass
    )


_NAMES: Final[dict[bytes, tuple[str, tuple[int, ...]]]] = {}
_NAMES_LIMIT: Final = 4096
"""Presentation form of recently seen uncompressed question names, by their wire bytes (most
messages repeat a name: its labels are escaped once). Cleared when full, so hostile names cost
at most the table (4096 names of at most 255 octets)."""


def _question_name(
    data: bytes, msg: int, end: int
) -> tuple[str, tuple[int, ...], int] | str:
    """:func:`read_name` of the question name at ``msg + 12``, through :data:`_NAMES` when the
    name is uncompressed, whole within ``end`` and at most 255 octets (else read as it is)."""
    start = pos = msg + 12
    while pos < end:
        length = data[pos]
        if not length or length & 0xC0:
            break
        pos += 1 + length
    if pos >= end or data[pos] or pos - start >= MAX_NAME_OCTETS:
        return read_name(data, msg, start, end)
    raw = data[start:pos]
    hit = _NAMES.get(raw)
    if hit is None:
        name = read_name(data, msg, start, end)
        if isinstance(name, str):  # pragma: no cover - the walk above accepted it
            return name
        if len(_NAMES) >= _NAMES_LIMIT:
            _NAMES.clear()
        hit = _NAMES[raw] = (name[0], name[1])
    return hit[0], hit[1], pos + 1


def read_name(
    data: bytes, msg: int, pos: int, end: int
) -> tuple[str, tuple[int, ...], int] | str:
    """Read a (possibly compressed) name at ``pos``; returns (text, label lengths, next pos)."""
    labels: list[str] = []
    lengths: list[int] = []
    octets = 0
    hops = 0
    after = -1
    while True:
        if pos >= end:
            return TRUNCATED
        length = data[pos]
        if length == 0:
            pos += 1
            break
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 1 >= end:
                return TRUNCATED
            hops += 1
            if hops > MAX_POINTER_HOPS:
                return POINTER_LOOP
            if after < 0:
                after = pos + 2
            pos = msg + (((length & 0x3F) << 8) | data[pos + 1])
            continue
        if kind:
            return BAD_LABEL
        octets += length + 1
        if octets > MAX_NAME_OCTETS:
            return NAME_TOO_LONG
        if pos + 1 + length > end:
            return TRUNCATED
        labels.append(escape_label(data[pos + 1:pos + 1 + length]))
        lengths.append(length)
        pos += 1 + length
    return ".".join(labels), tuple(lengths), (after if after >= 0 else pos)
