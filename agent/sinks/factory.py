"""Builds the configured sinks. Each sink type has one builder in :data:`BUILDERS`."""

from __future__ import annotations

from collections.abc import Callable

from agent.config import Config
from agent.identity import Identity
from agent.metrics import AgentMetrics
from agent.sinks.base import Sink
from agent.sinks.elasticsearch import build_elasticsearch_sink
from agent.sinks.jsonl import JsonlSink
from agent.sinks.stdout import StdoutSink

SinkBuilder = Callable[[Config, Identity, AgentMetrics], Sink | None]


def _jsonl(config: Config, identity: Identity, metrics: AgentMetrics) -> Sink | None:
    section = config.sinks.jsonl
    if not section.enabled:
        return None
    path = section.path or config.agent.resolved_state_dir() / "alerts.jsonl"
    return JsonlSink(path, identity, section.fsync, section.max_bytes, section.backups)


def _stdout(config: Config, identity: Identity, metrics: AgentMetrics) -> Sink | None:
    return StdoutSink(identity) if config.sinks.stdout.enabled else None


def _elasticsearch(config: Config, identity: Identity, metrics: AgentMetrics) -> Sink | None:
    # Internal alerts (spool overflow, refused credentials): set ``sink.on_alert`` afterwards.
    return build_elasticsearch_sink(config, identity, metrics)


BUILDERS: dict[str, SinkBuilder] = {
    "jsonl": _jsonl,
    "stdout": _stdout,
    "elasticsearch": _elasticsearch,
}


def build_sinks(config: Config, identity: Identity, metrics: AgentMetrics) -> list[Sink]:
    sinks = [builder(config, identity, metrics) for builder in BUILDERS.values()]
    return [s for s in sinks if s is not None]
