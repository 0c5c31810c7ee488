"""Every field the network events carry is in the detection catalogue and in docs/events.md."""

from __future__ import annotations

import re
from pathlib import Path

from agent.detection.fields import lookup
from agent.offline.inputs import fixture_decoders

REPO = Path(__file__).resolve().parents[2]


def _documented() -> set[str]:
    text = (REPO / "docs" / "events.md").read_text()
    section = text[text.index("## Network"):]
    names: set[str] = set()
    for cell in re.findall(r"^\| ([^|]+) \|", section, re.M):
        tokens = re.findall(r"`([^`]+)`", cell)
        base = ""
        for token in tokens:
            if token.startswith("."):  # `tcp.flags.syn` `.ack`: a sibling of the previous name
                names.add(base + token)
            else:
                names.add(token)
                base = token.rsplit(".", 1)[0]
    for cell in re.findall(r"`([a-z_.]+)` / `([a-z_.]+)`", section):
        names.update(cell)
    return names


def test_emitted_fields_are_catalogued_and_documented() -> None:
    documented = _documented()
    pcaps = sorted((REPO / "rules" / "network").glob("*.tests/*.pcap"))
    pcaps.append(REPO / "tests" / "fixtures" / "pcap" / "benign_mixed.pcap")
    seen: dict[tuple[str | None, str | None, str | None], set[str]] = {}
    for pcap in pcaps:
        for event in fixture_decoders()["pcap"](pcap):
            seen.setdefault(tuple(event.logsource), set()).update(event.fields)  # type: ignore[arg-type]
    # every network log source is exercised (network_icmp_echo, the ninth, came with the
    # ICMP tunnel shape rule's fixtures)
    assert len(seen) == 9, sorted(str(k) for k in seen)
    for logsource, names in seen.items():
        entry = lookup(*logsource)
        assert entry is not None, logsource
        assert names <= entry.fields, (logsource, sorted(names - entry.fields))
        assert names <= documented, (logsource, sorted(names - documented))
