"""`vedette replay FILE [--log KIND] [--rules DIR] [--config F] [--json]`: offline detection.

Runs a capture file (pcap/pcapng, the default kind), a log file (``--log auth`` …) or an event
file (``--log jsonl``; every kind of :data:`agent.offline.inputs.INPUTS`) through
the production decoders and the detection engine with the file's own timestamps as the clock.
On a terminal a progress bar runs on stderr; at the end a table of alerts is printed. A log
file gets an account of every line first (parsed / unclassified / malformed, ``--show-unparsed
N`` prints the first N lines no parser took; :mod:`agent.offline.logs`), and a binary file is
refused with what it looks like. With
``--json`` stdout gets one ECS alert document per line instead (the final state of each alert).

Exit codes: 0 done (alerts or not), 1 the input could not be read, 2 bad rules/config,
3 with ``--ship``: alerts not delivered to Elasticsearch (dropped, still spooled, no spool).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import TextIO

from prometheus_client import CollectorRegistry

from agent.alerts import Alert, RuleRef, alert_id, to_ecs
from agent.commands.common import print_config_errors
from agent.config import Config, load_config
from agent.detection.engine import Engine, EngineOptions
from agent.detection.fixtures import horizon
from agent.detection.loader import load_rules
from agent.detection.sources import load_configured
from agent.errors import ConfigErrors, RuleError, SinkError
from agent.events import format_timestamp
from agent.identity import detect_identity
from agent.logs import safe
from agent.metrics import AgentMetrics
from agent.netdecode.pcapfile import CaptureFormatError
from agent.offline.clock import run
from agent.offline.inputs import INPUTS
from agent.offline.logs import LOG_KINDS, LineAccount, binary_reason, log_events
from agent.offline.pcap import PcapEvents, PcapStats
from agent.sinks.elasticsearch import ship_alerts
from agent.sinks.factory import BUILDERS

EXIT_INPUT = 1
EXIT_USAGE = 2
EXIT_UNSHIPPED = 3  # --ship: alerts not delivered (still spooled, dropped, or no spool at all)

DEGRADED_RULE = RuleRef(
    id="vedette-internal-replay-degraded",
    title="Network detection degraded during the capture: event budget exhausted",
    level="high",
    description="Probe, DNS or ARP events of the replayed capture were refused by the "
    "per-second event budget (network.max_events_per_second), so some sources went "
    "unanalysed: silence from the scan, sweep and DNS rules over that span is not evidence of "
    "safety. Raised by the replay itself, whatever rules are loaded.",
    tags=("attack.defense-evasion", "attack.t1562"),
    ruleset="vedette-internal",
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "replay", help="run a pcap/pcapng (or log) file through decoding and detection"
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="capture or log file")
    parser.add_argument(
        "--log", dest="kind", default="pcap", choices=sorted(INPUTS), metavar="KIND",
        help=f"input kind (default pcap): {', '.join(sorted(INPUTS))}",
    )
    parser.add_argument("--rules", type=Path, action="append", default=None, metavar="DIR",
                        help="rule file or folder (repeatable; default: the configured rules)")
    parser.add_argument("--config", type=Path, default=None,
                        help="YAML config (network settings, threat-intel files, rule paths)")
    parser.add_argument("--json", action="store_true",
                        help="one ECS alert document per line on stdout (final state)")
    parser.add_argument("--ship", action="store_true",
                        help="also deliver the alerts through the configured sinks (JSON lines, "
                             "Elasticsearch via its spool); exit once all are acknowledged")
    parser.add_argument("--ship-timeout", type=float, default=300.0, metavar="SECONDS",
                        help="with --ship: how long to wait for Elasticsearch (default 300)")
    parser.add_argument("--show-unparsed", type=int, default=0, metavar="N",
                        help="with --log: print the first N lines no parser took (unclassified "
                             "or malformed), with their line numbers")
    parser.set_defaults(func=replay_command)


class _ProgressBar:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.2 and done < total:
            return
        self.last = now
        frac = done / total if total else 1.0
        filled = int(frac * 30)
        self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {frac:6.1%}")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\r" + " " * 40 + "\r")
        self.stream.flush()


def replay_command(args: argparse.Namespace) -> int:
    try:
        # --ship needs the configured sinks, so it reads /etc/vedette/vedette.yaml by default
        config = load_config(args.config) if args.config or args.ship else Config()
    except ConfigErrors as exc:
        print_config_errors(exc)
        return EXIT_USAGE
    report = load_rules(args.rules) if args.rules else load_configured(config.detection)
    for rule_error in report.errors:
        print(f"rule error: {rule_error.location_text()}", file=sys.stderr)
    if not report.ruleset.detections and not report.ruleset.correlations:
        print("no rules loaded", file=sys.stderr)
        return EXIT_USAGE
    options = EngineOptions(late_allowance_seconds=config.detection.late_allowance_seconds)
    engine = Engine(report.ruleset, None, options)
    bar = _ProgressBar(sys.stderr) if sys.stderr.isatty() and not args.json else None
    decoder = INPUTS[args.kind]
    started = time.monotonic()
    account = LineAccount(keep_unparsed=max(0, args.show_unparsed))
    try:
        if args.kind in LOG_KINDS or args.kind == "jsonl":
            binary = binary_reason(args.file)
            if binary:
                print(f"vedette replay: {safe(args.file)}: {binary}", file=sys.stderr)
                return EXIT_INPUT
        if args.kind in LOG_KINDS:
            events = log_events(args.kind, args.file, account)
        else:
            events = decoder(args.file, config, bar)
        span = horizon(report, options.late_allowance_seconds)
        result = run(engine, events, span, tick=config.pipeline.tick_seconds)
    except (OSError, CaptureFormatError, RuleError) as exc:
        if bar is not None:
            bar.close()
        what = (f"{exc.filename}: {exc.strerror}"
                if isinstance(exc, OSError) and exc.filename and exc.strerror
                else exc.location_text() if isinstance(exc, RuleError) else exc)
        print(f"vedette replay: {safe(what)}", file=sys.stderr)
        return EXIT_INPUT
    if bar is not None:
        bar.close()
    elapsed = time.monotonic() - started
    alerts = list(result.alerts.values())
    stats = events.stats if isinstance(events, PcapEvents) else None
    degraded = _degradation(stats, alerts, result.last_ts or 0.0)
    if degraded is not None:
        alerts.append(degraded)
    failed = stats is not None and stats.error is not None
    if failed:
        assert stats is not None and stats.error is not None
        print(f"vedette replay: {safe(stats.error)}; the alerts of what was read before it "
              "are kept", file=sys.stderr)
    if args.ship:
        shipped = ship(config, alerts, args.ship_timeout)
        if shipped != 0:
            return shipped
    if args.json:
        identity = detect_identity(config.agent.resolved_state_dir(), config.agent.name,
                                   config.agent.labels)
        out = sys.stdout
        for alert in alerts:
            out.write(json.dumps(to_ecs(alert, identity), default=str, sort_keys=True) + "\n")
        return EXIT_INPUT if failed else 0
    _summary(args, alerts, result.events, elapsed, account, stats)
    return EXIT_INPUT if failed else 0


def _degradation(stats: PcapStats | None, alerts: list[Alert], last: float) -> Alert | None:
    """The replay's own alert when events were refused by the overall budget (unless the
    ``capture_budget_exhausted`` rule already said so from the replay's health events)."""
    if stats is None or not stats.processor.over_global_budget:
        return None
    if any(a.rule.title.startswith("Network detection degraded") for a in alerts):
        return None
    p = stats.processor
    group = {"capture.events_over_global_budget": p.over_global_budget}
    pools = sorted(p.over_budget_pools.items())
    return Alert(alert_id(DEGRADED_RULE.id, group, last), DEGRADED_RULE, group, last, last,
                 count=p.over_global_budget,
                 matched={f"capture.over_budget.{k}": v for k, v in pools},
                 message=f"{p.over_global_budget} events refused by the event budget ("
                         + ", ".join(f"{k}: {v}" for k, v in pools) + ")")


def _summary(args: argparse.Namespace, alerts: list[Alert], events: int, elapsed: float,
             account: LineAccount, pcap: PcapStats | None) -> None:
    if pcap is not None:
        stats = pcap.processor
        errors = sum(stats.errors.values())
        print(f"{stats.packets:,} packets, {events:,} events, {errors:,} undecodable, "
              f"{stats.suppressed:,} over budget, {elapsed:.2f} s")
        if stats.over_global_budget:
            pools = ", ".join(f"{k} {v:,}" for k, v in sorted(stats.over_budget_pools.items()))
            print(f"detection degraded: {stats.over_global_budget:,} events refused by "
                  f"network.max_events_per_second ({pools})")
        if stats.reassembled or stats.evasion:
            evasion = ", ".join(f"{k} {v:,}" for k, v in sorted(stats.evasion.items()))
            print(f"{stats.reassembled:,} datagrams reassembled from fragments"
                  + (f"; evasion: {evasion}" if evasion else ""))
        if pcap.truncated_records:
            print(f"warning: the file ends with {pcap.truncated_records} truncated record(s)")
        if pcap.bad_timestamps:
            print(f"warning: {pcap.bad_timestamps} record(s) skipped for an implausible "
                  "timestamp")
    elif args.kind not in LOG_KINDS:
        print(f"{events:,} events, {elapsed:.2f} s")
    else:
        print(f"{account.summary()}; {events:,} events, {elapsed:.2f} s")
        for number, verdict, text in account.unparsed:
            print(f"  {args.file}:{number}: {verdict}: {safe(text, 300)}")
        if account.lines and not account.parsed:
            print(f"warning: no line of {args.file} parsed as --log {args.kind}; is it that kind?")
    if not alerts:
        print("no alerts")
        return
    rows = [("first seen", "level", "rule", "count", "group")]
    for a in sorted(alerts, key=lambda a: a.first_seen):
        group = ", ".join(f"{k}={v}" for k, v in a.group.items())
        rows.append((format_timestamp(a.first_seen)[:23], a.rule.level or "-",
                     safe(a.rule.title, 60), str(a.count), safe(group, 80)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(f"{len(alerts)} alert(s)")


def ship(config: Config, alerts: list[Alert], timeout: float) -> int:
    """Backfill: every configured sink gets the final state of each alert; Elasticsearch goes
    through its own spool (``replay.db``) with the daemon's delivery guarantees."""
    identity = detect_identity(config.agent.resolved_state_dir(), config.agent.name,
                               config.agent.labels)
    metrics = AgentMetrics(CollectorRegistry())
    for name, builder in BUILDERS.items():
        if name == "elasticsearch":
            continue
        sink = builder(config, identity, metrics)
        if sink is None:
            continue
        for alert in alerts:
            sink.emit(alert)
        sink.close()
        print(f"shipped {len(alerts)} alert(s) to {sink.name}", file=sys.stderr)
    if not config.elasticsearch.hosts:
        return 0
    try:
        report = ship_alerts(config, identity, metrics, alerts, timeout)
    except ConfigErrors as exc:
        print(f"vedette replay --ship: {safe(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except (SinkError, sqlite3.Error, OSError) as exc:  # e.g. a full disk under the spool
        print(f"vedette replay --ship: {len(alerts)} alert(s) not delivered to Elasticsearch: "
              f"{safe(exc)}", file=sys.stderr)
        return EXIT_UNSHIPPED
    print(
        f"elasticsearch: {report.delivered} delivered, {report.duplicates} already there, "
        f"{report.dead_lettered} dead-lettered, {report.dropped} dropped (spool full), "
        f"{report.still_spooled} still spooled ({report.elapsed_seconds:.1f} s)",
        file=sys.stderr,
    )
    if not report.complete:
        print(f"vedette replay --ship: {report.undelivered} of {report.emitted} alert(s) not "
              "delivered to Elasticsearch"
              + (f" ({report.dropped} dropped: spool or disk full)" if report.dropped else "")
              + (f" ({report.still_spooled} stay spooled for the next backfill)"
                 if report.still_spooled else ""), file=sys.stderr)
        return EXIT_UNSHIPPED
    return 0
