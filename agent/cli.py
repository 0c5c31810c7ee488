"""The ``vedette`` command line.

Exit codes: 0 success; 1 a check found problems (``config check``, ``rules validate``,
``rules test``); 2 bad usage or an invalid configuration at start-up; 3 the agent could not
start or failed at run time.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

from agent import __version__
from agent.logs import setup_logging

# Command groups living in agent/commands/; a module that is not there yet is skipped.
_COMMAND_MODULES = ("config", "rules", "replay", "es", "status")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vedette",
        description="Vedette: early-warning security agent for Linux servers.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=None,
        help="log level (default: agent.log_level from config, else info)",
    )
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=None,
        help="log format on stderr (default: agent.log_format, else text)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the agent in the foreground (systemd starts this)")
    run.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML file (default: /etc/vedette/vedette.yaml; built-in defaults if absent)",
    )
    run.add_argument(
        "-q", "--quiet", action="store_true",
        help="no human-readable alert lines on a terminal (logs and sinks are unchanged)",
    )
    run.set_defaults(func=_run)
    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=_version)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"agent.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"agent.commands.{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def _run(args: argparse.Namespace) -> int:
    from agent.config import load_config  # noqa: PLC0415 - keep `version` light
    from agent.daemon import run_daemon  # noqa: PLC0415
    from agent.errors import ConfigErrors  # noqa: PLC0415
    from agent.sinks.console import under_systemd  # noqa: PLC0415

    try:
        agent_cfg = load_config(args.config).agent
        fmt = agent_cfg.log_format
        if "log_format" not in agent_cfg.model_fields_set and under_systemd(os.environ):
            fmt = "json"  # the journal keeps structured lines; a terminal gets text
        setup_logging(args.log_level or agent_cfg.log_level, args.log_format or fmt)
    except ConfigErrors:
        pass  # run_daemon reports every error with file and line
    return run_daemon(args.config, quiet=args.quiet)


def _version(args: argparse.Namespace) -> int:
    print(f"vedette {__version__} (Python {platform.python_version()})")
    return 0


def missing_runtime_modules() -> list[str]:
    """Declared runtime dependencies the agent refuses to run without (no silent fallback).

    google-re2 is what makes every rule's ``|re`` run in linear time on hostile input; with
    Python's ``re`` instead, one rule could be made to backtrack for minutes.
    """
    return [name for name in ("re2",) if importlib.util.find_spec(name) is None]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level or "info", args.log_format or "text")
    missing = missing_runtime_modules() if args.command != "version" else []
    if missing:
        print(
            f"vedette: required module(s) not installed: {', '.join(missing)} "
            "(install google-re2; the regex engine has no fallback)",
            file=sys.stderr,
        )
        return 2
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    logging.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
