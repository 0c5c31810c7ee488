"""Offline analysis: a capture or log file through the production decode → events → detection path.

``vedette replay FILE`` (see :mod:`agent.commands.replay`) and the rule-fixture runner both use
this module. Inputs are chosen through :data:`INPUTS`, a registry of *kind → decoder*; a decoder
takes the file, the loaded config and an optional progress callback and yields events in file
order. ``pcap`` (pcap and pcapng) is built in; every log kind of
:data:`agent.collectors.log_decoders.DECODERS` is registered too, so ``--log auth`` works.

Time is the events' own: before each event the engine's timers run up to its timestamp, and
after the last one far enough ahead that every alert reaches its final state — exactly how
``vedette rules test`` drives the engine, and the same engine the daemon runs.

Importing this module also registers the ``pcap`` fixture kind with
:mod:`agent.detection.fixtures`, so rule fixtures can be capture files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from agent.alerts import Alert
from agent.collectors.log_decoders import DECODERS as LOG_DECODERS
from agent.config import Config
from agent.detection import fixtures
from agent.detection.engine import Engine
from agent.events import Event
from agent.netdecode.pcapfile import CaptureReader
from agent.netevents.processor import PacketProcessor, ProcessorStats
from agent.threatintel.feeds import load_feeds

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes total) as the input is read."""
InputDecoder = Callable[[Path, Config, Progress | None], Iterator[Event]]

SIDECAR_SUFFIX = ".network.yml"
"""A fixture pcap may carry network settings (``gateways``, ``local_networks`` …) in
``<file>.network.yml`` next to it; ``vedette replay`` takes them from ``--config`` instead."""


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
    with CaptureReader(path) as reader:
        for batch in reader.batches(2048):
            yield from processor.process(batch)
            if progress is not None:
                progress(reader.position, reader.bytes_total)
        yield from processor.flush()
        LAST_PCAP.truncated_records = reader.truncated_records
        if reader.truncated_records:
            log.warning("capture file ends with a truncated record", extra={"file": str(path)})


def decode_pcap_fixture(path: Path) -> Iterator[Event]:
    """Fixture decoder: default settings, overridden by an optional ``.network.yml`` sidecar.

    The sidecar holds ``network:`` and/or ``threat_intel:`` sections as in the agent config;
    relative ``threat_intel.files`` are resolved against the fixture's folder.
    """
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    config = Config()
    if sidecar.exists():
        data = yaml.safe_load(sidecar.read_text(encoding="utf-8")) or {}
        intel = dict(data.get("threat_intel") or {})
        intel["files"] = [str(path.parent / f) for f in intel.get("files", [])]
        config = Config.model_validate({"network": data.get("network") or {},
                                        "threat_intel": intel})
    yield from pcap_events(path, config)


def _log_input(decoder: Callable[[Path], Iterator[Event]]) -> InputDecoder:
    def run(path: Path, config: Config, progress: Progress | None = None) -> Iterator[Event]:
        return decoder(path)

    return run


INPUTS: dict[str, InputDecoder] = {"pcap": pcap_events}
INPUTS.update({kind: _log_input(dec) for kind, dec in LOG_DECODERS.items()})

fixtures.register_decoder("pcap", decode_pcap_fixture)
fixtures.register_decoder("pcapng", decode_pcap_fixture)


@dataclass
class ReplayResult:
    events: int = 0
    alerts: dict[str, Alert] = field(default_factory=dict)
    """Final state of every alert, by alert id, in the order they opened."""
    updates: int = 0
    first_ts: float | None = None
    last_ts: float | None = None


def run(
    engine: Engine,
    events: Iterable[Event],
    horizon: float,
    on_alert: Callable[[Alert], None] | None = None,
) -> ReplayResult:
    """Drive ``engine`` with ``events`` on their own clock; every alert update is kept."""
    result = ReplayResult()
    clock: float | None = None

    def keep(alerts: list[Alert]) -> None:
        for alert in alerts:
            result.alerts[alert.id] = alert
            result.updates += 1
            if on_alert is not None:
                on_alert(alert)

    for event in events:
        result.events += 1
        ts = event.timestamp
        if clock is None or ts > clock:
            clock = ts
            keep(engine.advance(clock))
        keep(engine.process(event))
    if clock is not None:
        keep(engine.advance(clock + horizon))
    result.last_ts = clock
    return result
