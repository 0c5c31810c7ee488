"""Capture files as event streams: the ``pcap`` input of ``vedette replay`` and of rule fixtures.

:func:`pcap_events` runs a pcap/pcapng file through the same
:class:`~agent.netevents.processor.PacketProcessor` live capture uses. :data:`PCAP_DECODERS`
holds the fixture decoders (``kind → decoder(path)``) for
:func:`agent.detection.fixtures.register_decoder`; a fixture capture may carry settings in a
``<file>.network.yml`` sidecar (``network:`` and ``threat_intel:`` sections as in the agent
config; relative feed paths resolve against the fixture's folder).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from agent.config import Config
from agent.events import Event
from agent.netdecode.pcapfile import CaptureReader
from agent.netevents.processor import PacketProcessor
from agent.netevents.summaries import ProcessorStats
from agent.threatintel.feeds import load_feeds

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes total) as the input is read."""

SIDECAR_SUFFIX = ".network.yml"


@dataclass
class PcapStats:
    """What the last :func:`pcap_events` call saw (for the replay summary)."""

    processor: ProcessorStats = field(default_factory=ProcessorStats)
    truncated_records: int = 0


LAST_PCAP = PcapStats()


def pcap_events(path: Path, config: Config, progress: Progress | None = None) -> Iterator[Event]:
    """Events of a pcap/pcapng file, through the same processor live capture uses."""
    intel_files = list(config.threat_intel.files)
    intel = load_feeds(intel_files) if intel_files else None
    processor = PacketProcessor(config.network, intel=(lambda: intel) if intel else None)
    LAST_PCAP.processor = processor.stats
    LAST_PCAP.truncated_records = 0
    with CaptureReader(path) as reader:
        for batch in reader.columns(32768):
            yield from processor.process_columns(batch)
            if progress is not None:
                progress(reader.position, reader.bytes_total)
        yield from processor.flush()
        LAST_PCAP.truncated_records = reader.truncated_records
        if reader.truncated_records:
            log.warning("capture file ends with a truncated record", extra={"file": str(path)})


def decode_pcap_fixture(path: Path) -> Iterator[Event]:
    """Fixture decoder: default settings, overridden by an optional ``.network.yml`` sidecar."""
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    config = Config()
    if sidecar.exists():
        data = yaml.safe_load(sidecar.read_text(encoding="utf-8")) or {}
        intel = dict(data.get("threat_intel") or {})
        intel["files"] = [str(path.parent / f) for f in intel.get("files", [])]
        config = Config.model_validate({"network": data.get("network") or {},
                                        "threat_intel": intel})
    yield from pcap_events(path, config)


PCAP_DECODERS: dict[str, Callable[[Path], Iterator[Event]]] = {
    "pcap": decode_pcap_fixture,
    "pcapng": decode_pcap_fixture,
}
