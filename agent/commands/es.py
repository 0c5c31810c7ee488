"""`vedette es setup|status`: Elasticsearch index setup on demand, and the shipping state.

Exit codes (as for every command): 0 success; 2 invalid configuration or no
``elasticsearch.hosts``; 3 Elasticsearch unreachable, credentials refused or lacking the
privilege, or an object that could not be installed.

``status`` also asks the cluster whether the configured credentials may write every stream the
sink writes (``_security/user/_has_privileges``): a missing index privilege makes Elasticsearch
refuse those documents one by one (a per-item 403), which the sink keeps spooled — this is
where the operator sees why. A cluster without the security API is reported as not checked.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from elasticsearch import ApiError, Elasticsearch, TransportError

from agent.commands.common import print_config_errors
from agent.config import Config, ElasticsearchSection, load_config
from agent.errors import ConfigErrors
from agent.sinks.elasticsearch import spool_dir
from agent.sinks.es_client import build_client, json_headers
from agent.sinks.es_deadletter import DeadLetterFile
from agent.sinks.es_docs import alerts_stream, events_stream, latest_index
from agent.sinks.es_templates import install
from agent.spool import Spool

EXIT_CONFIG = 2
EXIT_FAILED = 3


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("es", help="Elasticsearch index setup and shipping status")
    sub = parser.add_subparsers(dest="es_command", required=True)
    setup = sub.add_parser(
        "setup", help="install the ILM policy, component and index templates (idempotent)"
    )
    setup.add_argument("--config", type=Path, default=None,
                       help="YAML config file (default: /etc/vedette/vedette.yaml)")
    setup.set_defaults(func=setup_command)
    status = sub.add_parser("status",
                            help="spool depth and age, dead letters, cluster reachability")
    status.add_argument("--config", type=Path, default=None,
                        help="YAML config file (default: /etc/vedette/vedette.yaml)")
    status.set_defaults(func=status_command)


def _config(args: argparse.Namespace) -> Config | None:
    try:
        config = load_config(args.config)
    except ConfigErrors as exc:
        print_config_errors(exc)
        return None
    if not config.elasticsearch.hosts:
        print("elasticsearch.hosts is empty: the Elasticsearch sink is off", file=sys.stderr)
        return None
    return config


def setup_command(args: argparse.Namespace) -> int:
    config = _config(args)
    if config is None:
        return EXIT_CONFIG
    section = config.elasticsearch
    try:
        client = build_client(section)
    except ConfigErrors as exc:
        print_config_errors(exc)
        return EXIT_CONFIG
    try:
        report = install(client, json_headers(section), section.ilm_delete_after_days)
    except TransportError as exc:
        print(f"cannot reach Elasticsearch ({type(exc).__name__}): {', '.join(section.hosts)}",
              file=sys.stderr)
        return EXIT_FAILED
    except ApiError as exc:
        print(f"Elasticsearch refused: HTTP {exc.status_code} {exc.error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        client.close()
    for line in report.lines():
        print(line)
    if report.forbidden:
        print("the configured credentials lack the privilege to manage ILM policies and index "
              "templates (manage_ilm, manage_index_templates)", file=sys.stderr)
        return EXIT_FAILED
    return 0 if report.ok else EXIT_FAILED


def status_command(args: argparse.Namespace) -> int:
    config = _config(args)
    if config is None:
        return EXIT_CONFIG
    section = config.elasticsearch
    directory = spool_dir(config)
    now = time.time()
    for name in ("spool.db", "replay.db"):
        path = directory / name
        if not path.exists():
            print(f"{name}: empty (no file)")
            continue
        spool = Spool(path, section.spool_max_bytes, section.spool_max_age_seconds)
        try:
            stats = spool.stats()
        finally:
            spool.close()
        age = f"{now - stats.oldest_created:.0f} s" if stats.oldest_created else "-"
        print(f"{name}: {stats.records} documents, {stats.payload_bytes} bytes "
              f"({stats.disk_bytes} on disk, limit {section.spool_max_bytes}), oldest {age}")
    dead = DeadLetterFile(directory / "dead-letter.jsonl")
    print(f"dead letters: {dead.count()} in {dead.path}")
    try:
        client = build_client(section)
    except ConfigErrors as exc:
        print_config_errors(exc)
        return EXIT_CONFIG
    try:
        print(f"elasticsearch: reachable, version {_version(client, section)}")
        missing = _missing_privileges(client, section)
        if missing is None:
            print("privileges: not checked (the cluster has no security API)")
        elif missing:
            print("privileges: MISSING " + "; ".join(missing) + " (those documents stay "
                  "spooled, counted in vedette_es_retries_total{reason=\"auth\"})")
            return EXIT_FAILED
        else:
            print("privileges: ok (may write every stream the sink writes)")
        return 0
    except TransportError as exc:
        print(f"elasticsearch: unreachable ({type(exc).__name__})")
    except ApiError as exc:
        print(f"elasticsearch: HTTP {exc.status_code} {exc.error}")
    finally:
        client.close()
    return EXIT_FAILED


def _version(client: Elasticsearch, section: ElasticsearchSection) -> str:
    headers = json_headers(section)
    try:
        info = client.perform_request("GET", "/", headers=headers).body
    except ApiError as exc:
        if exc.status_code not in (400, 404, 405):
            raise
        # A cluster without the root endpoint (Elastic's test distribution): ask the node
        # (needs the monitor privilege, which a shipping-only key may lack).
        try:
            info = client.perform_request("GET", "/_nodes/_local?filter_path=nodes.*.version",
                                          headers=headers).body
        except ApiError:
            return "unknown (no root endpoint; asking the nodes needs the monitor privilege)"
        nodes = info.get("nodes", {}) if isinstance(info, dict) else {}
        return ", ".join(sorted({str(n.get("version", "?")) for n in nodes.values()})) or "?"
    return str(info.get("version", {}).get("number", "?")) if isinstance(info, dict) else "?"


def _missing_privileges(client: Elasticsearch, section: ElasticsearchSection
                        ) -> list[str] | None:
    """``privilege on index`` the credentials lack; None when the cluster cannot tell."""
    ns = section.namespace
    wanted = [(alerts_stream(ns), "create_doc")]
    if section.latest_index:
        wanted.append((latest_index(ns), "index"))
    if section.ship_events:
        wanted.append((events_stream(ns), "create_doc"))
    body = {"index": [{"names": [name], "privileges": [priv]} for name, priv in wanted]}
    try:
        answer = client.perform_request("POST", "/_security/user/_has_privileges",
                                        headers=json_headers(section), body=body).body
    except ApiError as exc:
        if exc.status_code in (400, 404, 405, 410, 500):
            return None
        raise
    granted = answer.get("index", {}) if isinstance(answer, dict) else {}
    return [f"{priv} on {name}" for name, priv in wanted
            if not granted.get(name, {}).get(priv, False)]
