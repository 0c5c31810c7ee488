"""`vedette run`: wires config, collectors, pipeline, detection, sinks and metrics together.

Threads: the main thread waits for signals and performs reloads; the detection thread owns the
engine (:mod:`agent.pipeline`); APScheduler's pool runs polling collectors and housekeeping;
each streaming collector has a supervised thread (:mod:`agent.supervisor`); the metrics server
has its own.

Signals: SIGTERM/SIGINT stop collectors, drain the queue, flush and close sinks, exit 0 (well
within 10 s). SIGHUP reloads config and rules: the new config and rule set are validated
completely first; if either is invalid the agent keeps running on the old ones and counts a
failed reload (validation: :mod:`agent.reload`; what each changed option needs:
:mod:`agent.reload_plan`). This module composes those parts; it decides nothing they decide.

Never blind while saying healthy: start-up is refused (exit 2, one line per reason) when
:func:`agent.preflight.check` finds a file, address or filter that cannot work, or
:func:`agent.detection.sources.blind_spots` finds the rule set empty, a rule path missing or a
collector's logsource without a single usable rule; a reload that would do the same is refused.
``/healthz`` reports :class:`agent.health.Health`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from prometheus_client import CollectorRegistry
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from agent import __version__, preflight, reload_plan
from agent.alerts import Alert
from agent.config import Config, load_config, read_secret
from agent.detection import Engine, EngineOptions
from agent.detection.checkpoint import AlertCheckpoint
from agent.detection.sources import blind_spots, path_problems
from agent.detection.tuning import disabled_count
from agent.errors import AgentError, ConfigErrors, StartupRefused
from agent.health import Health
from agent.identity import Identity, detect_identity
from agent.metrics import AgentMetrics
from agent.metrics_server import MetricsServer
from agent.pipeline import Pipeline, QueueDepthCollector
from agent.reload import Candidate, RuleWatch, load_rules, prepare
from agent.scheduler import Scheduler
from agent.sdnotify import Notifier
from agent.sinks.base import Sink
from agent.sinks.console import ConsoleSink, console_wanted, destinations
from agent.sinks.factory import build_sinks
from agent.sinks.router import AlertRouter
from agent.state_lock import lock_state_dir
from agent.supervisor import CollectorSupervisor

log = logging.getLogger("vedette")
UMASK = 0o027
WATERMARK_MAX_FUTURE = 300.0
"""Events stamped more than this far ahead of the wall clock do not move detection's event-time
watermark (a clock stepped forward then corrected would make every later event late)."""

EXIT_OK = 0
EXIT_CONFIG = 2
"""The configuration or the rules are wrong (or would leave the agent blind): a restart cannot
help until someone fixes them (the unit's ``RestartPreventExitStatus=2``)."""
EXIT_RUNTIME = 3
"""The system refused (metrics port taken, state dir held by another agent, an OS error): a
later restart may succeed."""


class Daemon:
    def __init__(self, config_path: Path | None, config: Config, console: bool = False) -> None:
        self.config_path = config_path
        self.config = config
        self.console = console
        """A human watches this run: one line per alert on stdout (agent/sinks/console.py)."""
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.metrics = AgentMetrics(self.registry)
        self.metrics.start_time.set(time.time())
        self.state_dir = config.agent.resolved_state_dir()
        self.state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        self.identity: Identity = detect_identity(
            self.state_dir, config.agent.name, config.agent.labels
        )
        self.notifier = Notifier.from_env()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._rule_watch = RuleWatch()
        self._internal_alerts: list[Alert] = []
        missing = [] if config.detection.allow_empty else path_problems(config.detection)
        if missing:
            raise StartupRefused(missing)
        report = load_rules(config, self.metrics)
        self._internal_alerts.extend(report.internal_alerts)  # sent by _send_internal
        self._rule_watch.remember(config)
        refused = blind_spots(config, report)
        if refused:
            raise StartupRefused(refused)
        self.health = Health(self.metrics)
        self.engine = Engine(report.ruleset, self.metrics, self._engine_options(config))
        # open alerts, correlation windows and cooldowns of the previous run (kill -9, power
        # loss) carry on
        self.alert_state = AlertCheckpoint(self.state_dir / "alert-state.json", self.metrics)
        self.alert_state.restore_engine(self.engine)
        self.metrics.rules_disabled.set_function(lambda: disabled_count(self.engine.ruleset))
        self.router = AlertRouter(
            self._build_sinks(config),
            self.metrics,
            config.pipeline.sink_retry_buffer,
        )
        self.pipeline = Pipeline(
            self.engine,
            self.router,
            self.metrics,
            config.pipeline.queue_size,
            config.pipeline.batch_size,
            config.pipeline.tick_seconds,
            checkpoint=lambda: self.alert_state.save_engine(self.engine),
        )
        self.registry.register(QueueDepthCollector(self.pipeline))
        self.scheduler = Scheduler(self.metrics, config.scheduler.misfire_grace_seconds)
        self.collectors = CollectorSupervisor(self.pipeline, self.scheduler, self.metrics,
                                              self.registry, self.identity, self.state_dir)
        self.server: MetricsServer | None = None

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> int:
        self._install_signals()
        if self.config.metrics.enabled:
            try:
                self.server = self._metrics_server(self.config)
            except ConfigErrors as exc:
                for err in exc.errors:
                    log.error("cannot start: invalid configuration", extra={"error": str(err)})
                self.router.close()
                return EXIT_CONFIG
            except OSError as exc:
                m = self.config.metrics
                reason = preflight.listen_failure(m.listen_address, m.port, exc)
                log.error("cannot start", extra={"error": f"metrics.port: {reason}"})
                self.router.close()
                return EXIT_RUNTIME
            self.server.health = self.health.reasons
            self.server.start()
        self.pipeline.start()
        self._send_internal()
        self.collectors.start(self.config)
        self._add_housekeeping(self.config)
        self.scheduler.start()
        if self.server is not None:
            self.server.ready.set()
        self.metrics.config_last_reload_success.set(time.time())
        sinks = ",".join(s.name for s in self.router.sinks) or "none"
        log.info(
            "vedette running",
            extra={
                "version": __version__,
                "metrics": self._metrics_url(),
                "sinks": sinks,
                "state_dir": str(self.state_dir),
                "collectors": ",".join(self.collectors.names()),
            },
        )
        self.notifier.ready(f"running; sinks: {sinks}")
        if self.console:
            print(f"vedette {__version__} is watching. Alerts go to {destinations(self.config)}; "
                  f"one line per new alert follows here (--quiet: none). Metrics and health: "
                  f"{self._metrics_url()}, /healthz. Ctrl-C stops.", flush=True)
        self._watchdog_loop()
        return self._shutdown()

    def _watchdog_loop(self) -> None:
        interval = self.notifier.watchdog_interval()
        wait = min(interval, 1.0) if interval else 1.0
        next_ping = 0.0
        while not self._stop.is_set():
            self._stop.wait(wait)
            self.health.sample()
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
            if interval and time.monotonic() >= next_ping:
                # Only a live detection thread keeps systemd's watchdog fed.
                if self.pipeline.healthy(
                    max_silence=interval + 2 * self.config.pipeline.tick_seconds
                ):
                    self.notifier.watchdog()
                else:
                    log.error("detection thread stalled; withholding the watchdog ping")
                next_ping = time.monotonic() + interval

    def _shutdown(self) -> int:
        started = time.monotonic()
        self.notifier.stopping("draining queues and flushing sinks")
        log.info("stopping: draining queue and flushing sinks")
        self.collectors.stop()
        self.scheduler.shutdown(wait=False)
        drained = self.pipeline.stop(self.config.pipeline.shutdown_timeout_seconds)
        self.router.close()
        if self.server is not None:
            self.server.stop()
        log.info(
            "stopped",
            extra={"seconds": round(time.monotonic() - started, 3), "drained": drained},
        )
        return EXIT_OK

    def request_stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------------ signals and reload

    def _install_signals(self) -> None:
        def on_stop(signum: int, _frame: FrameType | None) -> None:
            self._stop.set()

        def on_hup(signum: int, _frame: FrameType | None) -> None:
            self._reload.set()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    def reload(self) -> bool:
        """Re-read config and rules; keep the old ones unless both are valid."""
        self.notifier.reloading()
        candidate = prepare(self.config_path, self.metrics, self._rule_watch,
                            self._internal_alerts.extend)
        self._send_internal()
        if candidate is None:
            self.notifier.ready("running on the previous configuration and rules (reload failed)")
            return False
        self._apply(candidate)
        self.metrics.config_reloads.labels("ok").inc()
        self.metrics.config_last_reload_success.set(time.time())
        log.info("reloaded configuration and rules",
                 extra={"summary": candidate.report.summary_line()})
        self.notifier.ready("running (reloaded)")
        return True

    def _apply(self, candidate: Candidate) -> None:
        new, ruleset = candidate.config, candidate.report.ruleset
        self.pipeline.call_in_worker(lambda: self.engine.swap(ruleset))
        todo = reload_plan.plan(self.config, new)
        if todo.engine_options:
            options = self._engine_options(new)
            self.pipeline.call_in_worker(lambda: self.engine.reconfigure(options))
        if todo.restart_collectors:
            self.collectors.stop()
            self.collectors.start(new)
        if todo.swap_sinks:
            self._swap_sinks(new)
        if todo.watch_rules:
            self._add_housekeeping(new)
        if todo.restart_only:
            log.warning("changed options take effect only after a restart",
                        extra={"options": ", ".join(todo.restart_only)})
        self.config = new

    def _build_sinks(self, config: Config) -> list[Sink]:
        sinks = build_sinks(config, self.identity, self.metrics)
        return [*sinks, ConsoleSink()] if self.console else sinks

    def _swap_sinks(self, new: Config) -> None:
        old = self.router
        router = AlertRouter(
            self._build_sinks(new),
            self.metrics,
            new.pipeline.sink_retry_buffer,
        )

        def swap() -> None:
            self.pipeline.router = router
            self.router = router
            old.close()

        self.pipeline.call_in_worker(swap)

    # ------------------------------------------------------------------ rules

    def _send_internal(self) -> None:
        """Alerts the agent raises about itself (refused rule paths), through the router."""
        alerts, self._internal_alerts = self._internal_alerts, []
        if alerts:
            self.pipeline.call_in_worker(lambda: self.router.dispatch(alerts))

    @staticmethod
    def _engine_options(config: Config) -> EngineOptions:
        return EngineOptions(
            late_allowance_seconds=config.detection.late_allowance_seconds,
            meta_alert_threshold=config.detection.meta_alert_threshold,
            max_future_seconds=WATERMARK_MAX_FUTURE,
        )

    def _check_rule_files(self) -> None:
        if self._rule_watch.changed(self.config):
            log.info("rule files changed; reloading")
            self._reload.set()

    # ------------------------------------------------------------------ housekeeping

    def _add_housekeeping(self, config: Config) -> None:
        self.scheduler.remove("watch_rules")  # a reload registers it again with new settings
        if config.detection.watch_rules:
            self.scheduler.add(
                "watch_rules",
                self._check_rule_files,
                config.detection.watch_interval_seconds,
                run_now=False,
            )

    def _metrics_server(self, config: Config) -> MetricsServer:
        m = config.metrics
        password = read_secret(m.basic_auth_password, m.basic_auth_password_file)
        return MetricsServer(
            self.registry,
            m.listen_address,
            m.port,
            m.tls_cert_file,
            m.tls_key_file,
            m.basic_auth_username,
            password,
            on_drop=lambda reason: self.metrics.metrics_connections_dropped.labels(reason).inc(),
        )

    def _metrics_url(self) -> str:
        if self.server is None:
            return "disabled"
        scheme = "https" if self.config.metrics.tls_cert_file else "http"
        return f"{scheme}://{self.config.metrics.listen_address}:{self.server.port}/metrics"


def run_daemon(config_path: Path | None, quiet: bool = False) -> int:
    """Entry point of ``vedette run``; returns the process exit code."""
    # whatever the shell or service manager set: nothing the agent writes (alerts, spool,
    # baselines, login history, state dir) is readable by other users or writable by its group
    os.umask(UMASK)
    try:
        config = load_config(config_path)
    except ConfigErrors as exc:
        for err in exc.errors:
            log.error("invalid configuration", extra={"error": str(err)})
        return EXIT_CONFIG
    problems = preflight.check(config, config_path)
    for err in problems:
        log.error("invalid configuration", extra={"error": str(err)})
    if problems:
        return EXIT_CONFIG
    try:
        state_lock = lock_state_dir(config.agent.resolved_state_dir())
        console = console_wanted(config, quiet, os.environ, sys.stdout)
        daemon = Daemon(config_path, config, console)
    except StartupRefused as exc:
        for reason in exc.reasons:
            log.error("refusing to start", extra={"reason": reason})
        return EXIT_CONFIG
    except ConfigErrors as exc:  # e.g. a sink's secret file, read while building it
        for err in exc.errors:
            log.error("invalid configuration", extra={"error": str(err)})
        return EXIT_CONFIG
    except (AgentError, OSError) as exc:
        log.error("cannot start", extra={"error": str(exc)})
        return EXIT_RUNTIME
    log.debug("pid", extra={"pid": os.getpid()})
    try:
        return daemon.run()
    finally:
        state_lock.release()
