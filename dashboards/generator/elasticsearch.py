"""Elasticsearch shipping panels: the fleet summary and the per-agent detail.

Agents without an Elasticsearch sink expose no ``vedette_es_spool_*`` series (the spool gauges
are registered with the sink), so ``and on (job, instance) <spool limit>`` keeps those agents
out of "unreachable" counts.
"""

from __future__ import annotations

from generator.board import Layout
from generator.grafana import SEL, or_zero, stat, target, timeseries

RATE = "$__rate_interval"
CONFIGURED = (f"on (job, instance) group_left () max by (job, instance) "
              f"(vedette_es_spool_limit_bytes{{{SEL}}})")
HAS_ES = f"on (job, instance) vedette_es_spool_limit_bytes{{{SEL}}}"


def fleet_panels(lay: Layout) -> None:
    lay.row("Elasticsearch shipping")
    lay.add(stat(
        "Agents not reaching Elasticsearch",
        "Agents with an Elasticsearch sink whose last request got no HTTP answer (network, DNS, "
        "TLS or cluster down). Their alerts wait in the local spool.",
        [target(f"count(vedette_es_reachable{{{SEL}}} == 0 and {HAS_ES}) or vector(0)")],
        steps=((1, "red"),),
    ), 6, 8)
    lay.add(timeseries(
        "Documents shipped/s by agent",
        "Documents Elasticsearch acknowledged per second (alerts and, when enabled, events).",
        [target(f"sum by (instance) (rate(vedette_es_docs_shipped_total{{{SEL}}}[{RATE}]))",
                "{{instance}}")],
        "count:docs/s",
    ), 6, 8)
    lay.add(timeseries(
        "Spool backlog by agent",
        "Documents waiting in each agent's Elasticsearch spool; a line that keeps rising means "
        "shipping is failing or too slow.",
        [target(f"sum by (instance) (vedette_es_spool_records{{{SEL}}})", "{{instance}}")],
        "short", steps=((1000, "orange"), (100000, "red")),
    ), 6, 8)
    lay.add(timeseries(
        "Oldest unshipped document",
        "Age of the oldest document still in each spool (0 when empty).",
        [target(f"max by (instance) (vedette_es_spool_oldest_age_seconds{{{SEL}}})",
                "{{instance}}")],
        "s", steps=((300, "orange"), (3600, "red")),
    ), 6, 8)


def agent_panels(lay: Layout) -> None:
    lay.row("Elasticsearch shipping")
    lay.add(stat(
        "Elasticsearch reachable",
        "Whether the last request of each agent's Elasticsearch sink got an HTTP answer.",
        [target(f"min(vedette_es_reachable{{{SEL}}} * {CONFIGURED})")],
        steps=((1, "green"),), base="red",
        mappings=[{"type": "value", "options": {"0": {"text": "NO", "index": 0},
                                                "1": {"text": "yes", "index": 1}}}],
    ), 4, 8)
    lay.add(stat(
        "Last successful bulk",
        "Time since Elasticsearch last accepted a bulk request.",
        [target(f"time() - max(vedette_es_last_success_timestamp_seconds{{{SEL}}} > 0)")],
        "s", steps=((120, "orange"), (900, "red")),
    ), 4, 8)
    lay.add(stat(
        "Index setup runs",
        "Index setup runs (ILM policy, templates) since the agent started, by result; "
        "'forbidden' means the credentials may write documents but not manage templates.",
        [target(f"sum by (result) (vedette_es_setup_total{{{SEL}}})", "{{result}}")],
        steps=((1, "blue"),), decimals=0,
    ), 4, 8)
    lay.add(timeseries(
        "Documents shipped/s",
        "Documents acknowledged per second by stream (alerts, events), and resends "
        "Elasticsearch already had (409: no duplicate written).",
        [
            target(f"sum by (stream) (rate(vedette_es_docs_shipped_total{{{SEL}}}[{RATE}]))",
                   "{{stream}} shipped"),
            target(f"sum by (stream) "
                   f"(rate(vedette_es_duplicates_avoided_total{{{SEL}}}[{RATE}]))"
                   + or_zero("", "vedette_es_spool_limit_bytes"), "{{stream}} duplicate"),
        ],
        "count:docs/s",
    ), 12, 8)
    lay.add(timeseries(
        "Bulk latency",
        "Duration of bulk requests to Elasticsearch: median and 99th percentile.",
        [
            target(f"histogram_quantile(0.5, sum by (le) "
                   f"(rate(vedette_es_bulk_seconds_bucket{{{SEL}}}[{RATE}])))", "p50"),
            target(f"histogram_quantile(0.99, sum by (le) "
                   f"(rate(vedette_es_bulk_seconds_bucket{{{SEL}}}[{RATE}])))", "p99"),
        ],
        "s", steps=((1, "orange"), (5, "red")),
    ), 8, 8)
    zero = or_zero("", "vedette_es_spool_limit_bytes")
    lay.add(timeseries(
        "Shipping errors/s",
        "Retried bulk items and failed requests by reason, documents refused for good "
        "(dead-lettered) and refused credentials.",
        [
            target(f"sum by (reason) (rate(vedette_es_retries_total{{{SEL}}}[{RATE}]))" + zero,
                   "retried {{reason}}"),
            target(f"sum by (reason) (rate(vedette_es_request_failures_total{{{SEL}}}[{RATE}]))"
                   + zero, "request failed {{reason}}"),
            target(f"sum by (stream) (rate(vedette_es_dead_lettered_total{{{SEL}}}[{RATE}]))"
                   + zero, "dead-lettered {{stream}}"),
            target(f"sum(rate(vedette_es_auth_failures_total{{{SEL}}}[{RATE}]))", "auth refused"),
        ],
        "count:docs/s", steps=((0.001, "red"),),
    ), 8, 8)
    lay.add(timeseries(
        "Spool size",
        "Payload and disk bytes of the Elasticsearch spool against its configured limit.",
        [
            target(f"sum by (spool) (vedette_es_spool_bytes{{{SEL}}})", "{{spool}} payload"),
            target(f"sum by (spool) (vedette_es_spool_disk_bytes{{{SEL}}})", "{{spool}} on disk"),
            target(f"max by (spool) (vedette_es_spool_limit_bytes{{{SEL}}})", "{{spool}} limit"),
        ],
        "bytes",
    ), 8, 8)
    lay.add(timeseries(
        "Spool records and age",
        "Documents waiting in the spool and the age of the oldest one.",
        [
            target(f"sum by (spool) (vedette_es_spool_records{{{SEL}}})", "{{spool}} records"),
            target(f"max by (spool) (vedette_es_spool_oldest_age_seconds{{{SEL}}})",
                   "{{spool}} oldest age (s)"),
        ],
        "short",
    ), 12, 8)
    lay.add(timeseries(
        "Spool losses/s",
        "Documents dropped from the spool before delivery (overflow, age, corrupt) and unsent "
        "alert snapshots replaced by a newer snapshot of the same alert (not a loss).",
        [
            target(f"sum by (reason) (rate(vedette_es_spool_dropped_total{{{SEL}}}[{RATE}]))"
                   + zero, "dropped {{reason}}"),
            target(f"sum(rate(vedette_es_spool_superseded_total{{{SEL}}}[{RATE}]))",
                   "superseded"),
        ],
        "count:docs/s", steps=((0.001, "red"),),
    ), 12, 8)
