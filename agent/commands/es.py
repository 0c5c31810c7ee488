"""`vedette es setup|status`: Elasticsearch index setup on demand, and the shipping state.

Exit codes (as for every command): 0 success; 2 invalid configuration or no
``elasticsearch.hosts``; 3 Elasticsearch unreachable, credentials refused or lacking the
privilege, or an object that could not be installed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from elasticsearch import ApiError, TransportError

from agent.commands.common import print_config_errors
from agent.config import Config, load_config
from agent.errors import ConfigErrors
from agent.sinks.elasticsearch import spool_dir
from agent.sinks.es_client import build_client, json_headers
from agent.sinks.es_deadletter import DeadLetterFile
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
        info = client.perform_request("GET", "/", headers=json_headers(section)).body
        version = info.get("version", {}).get("number", "?") if isinstance(info, dict) else "?"
        print(f"elasticsearch: reachable, version {version}")
        return 0
    except TransportError as exc:
        print(f"elasticsearch: unreachable ({type(exc).__name__})")
    except ApiError as exc:
        print(f"elasticsearch: HTTP {exc.status_code} {exc.error}")
    finally:
        client.close()
    return EXIT_FAILED
