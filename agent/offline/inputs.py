"""The registry of offline input kinds, shared by ``vedette replay`` and ``vedette rules test``.

:data:`INPUTS` maps a kind to ``decoder(path, config, progress) -> Iterator[Event]``:

* ``pcap``, ``pcapng`` — :mod:`agent.offline.pcap` (the config's ``network``/``threat_intel``);
* ``jsonl`` — :mod:`agent.offline.event_files`;
* every log kind (``auth``, ``sshd``, ``journal-json``, ``auditd``, ``nginx``, ``apache``) —
  :mod:`agent.offline.logs`.

``replay`` calls a decoder with the loaded config; a fixture case
(:func:`fixture_decoders`) with the defaults overridden by the input's ``<file>.network.yml``
sidecar. A new kind is one line, ``register_input("kind", decode)`` with ``decode(path)``
yielding events; a kind that needs the config goes into :data:`INPUTS` directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

from agent.config import Config
from agent.events import Event
from agent.offline.event_files import decode_jsonl
from agent.offline.logs import LOG_KINDS, decode_log_file
from agent.offline.pcap import Progress, fixture_config, pcap_events

InputDecoder = Callable[[Path, Config, Progress | None], Iterator[Event]]
FileDecoder = Callable[[Path], Iterator[Event]]

INPUTS: dict[str, InputDecoder] = {"pcap": pcap_events, "pcapng": pcap_events}


def register_input(kind: str, decode: FileDecoder) -> None:
    """Make ``kind`` an input of ``replay --log KIND`` and of fixtures (``kind: KIND`` or the
    file's extension)."""

    def run(path: Path, config: Config, progress: Progress | None = None) -> Iterator[Event]:
        return decode(path)

    INPUTS[kind] = run


register_input("jsonl", decode_jsonl)
for _kind in sorted(LOG_KINDS):
    register_input(_kind, partial(decode_log_file, _kind))


def _fixture(decoder: InputDecoder, path: Path) -> Iterator[Event]:
    return decoder(path, fixture_config(path), None)


def fixture_decoders() -> dict[str, FileDecoder]:
    """Every registered kind as a fixture decoder (``path -> events``), for
    :func:`agent.detection.fixtures.run_tests`."""
    return {kind: partial(_fixture, decoder) for kind, decoder in INPUTS.items()}
