"""`vedette status`: what the running agent sees, asked over its own metrics endpoint.

Reads ``/metrics`` and ``/healthz`` of the agent configured in ``--config`` (address, port, TLS
and basic auth of the ``metrics:`` section; a wildcard listen address is asked on loopback) and
prints: version and uptime, health with its reasons, rules loaded, each collector with its
state and events, the event queue and drops, the Elasticsearch spool and reachability, and the
last alert. The metrics are the single source: ``status`` shows nothing Prometheus does not.

Exit codes: 0 healthy; 1 running but unhealthy (``/healthz`` 503); 2 invalid configuration or
metrics disabled; 3 no agent answers.
"""

from __future__ import annotations

import argparse
import base64
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from agent.commands.common import print_config_errors
from agent.config import Config, load_config, read_secret
from agent.errors import ConfigErrors
from agent.sinks.console import format_time

EXIT_UNHEALTHY = 1
EXIT_CONFIG = 2
EXIT_DOWN = 3
TIMEOUT_SECONDS = 5.0

Samples = dict[str, list[tuple[dict[str, str], float]]]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "status", help="what the running agent sees: health, rules, collectors, queue, spool")
    parser.add_argument("--config", type=Path, default=None,
                        help="YAML config file (default: /etc/vedette/vedette.yaml)")
    parser.set_defaults(func=status_command)


def base_url(config: Config) -> str:
    m = config.metrics
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(
        m.listen_address, m.listen_address)
    scheme = "https" if m.tls_cert_file else "http"
    return f"{scheme}://[{host}]:{m.port}" if ":" in host else f"{scheme}://{host}:{m.port}"


def _get(config: Config, url: str) -> tuple[int, str]:
    m = config.metrics
    request = urllib.request.Request(url)  # noqa: S310 - the agent's own http(s) endpoint
    password = read_secret(m.basic_auth_password, m.basic_auth_password_file)
    if m.basic_auth_username and password is not None:
        token = base64.b64encode(f"{m.basic_auth_username}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    context = None
    if m.tls_cert_file:
        context = ssl.create_default_context(cafile=str(m.tls_cert_file))
        context.check_hostname = False  # loopback: the certificate names the server, not 127.0.0.1
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS,  # noqa: S310
                                    context=context) as resp:
            return int(resp.status), resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def _samples(text: str) -> Samples:
    out: Samples = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name].append((dict(sample.labels), float(sample.value)))
    return out


def _sum(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for lab, v in samples.get(name, [])
               if all(lab.get(k) == want for k, want in labels.items()))


def _by(samples: Samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for lab, value in samples.get(name, []):
        out[lab.get(label, "?")] += value
    return dict(out)


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def status_command(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigErrors as exc:
        print_config_errors(exc)
        return EXIT_CONFIG
    if not config.metrics.enabled:
        print("metrics.enabled is false: the agent has no endpoint to ask", file=sys.stderr)
        return EXIT_CONFIG
    url = base_url(config)
    try:
        code, text = _get(config, url + "/metrics")
        health_code, health = _get(config, url + "/healthz")
    except ConfigErrors as exc:
        print_config_errors(exc)
        return EXIT_CONFIG
    except (OSError, urllib.error.URLError) as exc:
        reason = getattr(exc, "reason", None) or exc
        print(f"no agent answers at {url} ({reason}): is `vedette run` running "
              "(systemctl status vedette)?", file=sys.stderr)
        return EXIT_DOWN
    if code != 200:
        print(f"{url}/metrics answered HTTP {code}", file=sys.stderr)
        return EXIT_DOWN
    render(_samples(text), health_code, health, url, time.time())
    return 0 if health_code == 200 else EXIT_UNHEALTHY


def render(samples: Samples, health_code: int, health: str, url: str, now: float) -> None:
    version = next((lab.get("version", "?") for lab, _ in samples.get("vedette_build_info", [])),
                   "?")
    started = _sum(samples, "vedette_start_time_seconds")
    print(f"vedette {version} running at {url} (up {_age(now - started)})")
    if health_code == 200:
        print("health:      ok")
    else:
        reasons = [line for line in health.splitlines() if line.strip()] or [f"HTTP {health_code}"]
        print(f"health:      UNHEALTHY ({len(reasons)})")
        for reason in reasons:
            print(f"             - {reason}")
    rules = _by(samples, "vedette_rules_loaded", "kind")
    print(f"rules:       {int(rules.get('detection', 0))} detection, "
          f"{int(rules.get('correlation', 0))} correlation")
    degraded = _by(samples, "vedette_collector_degraded", "collector")
    published = _by(samples, "vedette_events_published_total", "collector")
    errors = _by(samples, "vedette_collector_errors_total", "collector")
    names = sorted(set(degraded) | set(published) | set(errors))
    print(f"collectors:  {len(names)}")
    width = max((len(n) for n in names), default=0)
    for name in names:
        state = "degraded" if degraded.get(name, 0) >= 1 else "running"
        extra = f", {int(errors[name])} errors" if errors.get(name) else ""
        print(f"  {name:<{width}}  {state:<8}  {int(published.get(name, 0)):,} events{extra}")
    depth = _sum(samples, "vedette_queue_depth", queue="events")
    capacity = _sum(samples, "vedette_queue_capacity", queue="events")
    drops = _by(samples, "vedette_events_dropped_total", "stage")
    dropped = ", ".join(f"{int(v):,} at {k}" for k, v in sorted(drops.items()) if v) or "none"
    print(f"queue:       {int(depth):,} / {int(capacity):,} events; dropped since start: "
          f"{dropped}")
    if "vedette_es_spool_records" in samples:  # exported only while the ES sink is on
        reachable = "reachable" if _sum(samples, "vedette_es_reachable") >= 1 else "UNREACHABLE"
        records = _sum(samples, "vedette_es_spool_records")
        size = _sum(samples, "vedette_es_spool_bytes")
        oldest = _sum(samples, "vedette_es_spool_oldest_age_seconds")
        last = _sum(samples, "vedette_es_last_success_timestamp_seconds")
        shipped = f", last success {_age(now - last)} ago" if last else ", never shipped yet"
        print(f"elasticsearch: {reachable}{shipped}; spool {int(records):,} documents "
              f"({int(size):,} bytes), oldest {_age(oldest)}")
    else:
        print("elasticsearch: off")
    last_alert = _sum(samples, "vedette_last_alert_timestamp_seconds")
    total = _sum(samples, "vedette_alerts_total")
    if last_alert:
        print(f"last alert:  {format_time(last_alert)} ({_age(now - last_alert)} ago); "
              f"{int(total):,} opened since start")
    else:
        print("last alert:  none since start")
