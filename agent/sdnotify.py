"""systemd readiness, reload, stop, status and watchdog notifications, without libsystemd.

The service manager passes ``NOTIFY_SOCKET`` (a filesystem path, or ``@name`` for an abstract
socket) to a ``Type=notify`` service; the service sends newline-separated ``KEY=VALUE``
assignments to it as one ``AF_UNIX``/``SOCK_DGRAM`` datagram (``sd_notify(3)``). When the
variable is absent (foreground runs, tests) every method is a no-op returning ``False``.

A notification must never take the agent down: every failure is logged and turned into a
``False`` return value. Repeated failures (a watchdog ping every few seconds) are logged at
warning level once, then at debug level until a send succeeds again.

The daemon's use::

    notifier = Notifier.from_env()
    notifier.ready()                          # after startup
    interval = notifier.watchdog_interval()   # None, or seconds between pings
    if interval is not None:
        schedule(notifier.watchdog, every=interval)
    notifier.reloading(); ...; notifier.ready()   # around a SIGHUP reload
    notifier.status("3 collectors, 120 rules")
    notifier.stopping()                       # at shutdown
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping, MutableMapping

log = logging.getLogger(__name__)

_NOTIFY_SOCKET = "NOTIFY_SOCKET"
_WATCHDOG_USEC = "WATCHDOG_USEC"
_WATCHDOG_PID = "WATCHDOG_PID"
_USEC_PER_SECOND = 1_000_000


def socket_address(value: str) -> str | bytes | None:
    """The ``sendto`` address for a ``NOTIFY_SOCKET`` value, or ``None`` if unsupported.

    ``/path`` is a filesystem socket; ``@name`` is the abstract socket ``\\0name``. Other forms
    (``vsock:``, relative paths) are not used by systemd for services on the host.
    """
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    return None


def monotonic_usec() -> int:
    """``CLOCK_MONOTONIC`` in microseconds, the clock ``MONOTONIC_USEC=`` refers to."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Sends ``sd_notify`` messages to the socket named at construction.

    ``address`` is the raw ``NOTIFY_SOCKET`` value (``None``: disabled).
    ``watchdog_usec`` is the ``WATCHDOG_USEC`` timeout already checked against
    ``WATCHDOG_PID`` (``None``: no watchdog). Thread-safe: the watchdog timer and the main
    thread may notify concurrently.
    """

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self._raw_address = address
        self._address = socket_address(address) if address else None
        if address and self._address is None:
            log.warning("unsupported NOTIFY_SOCKET address, notifications disabled",
                        extra={"notify_socket": address})
        self._watchdog_usec = watchdog_usec if self._address is not None else None
        self._lock = threading.Lock()
        self._failing = False

    @classmethod
    def from_env(
        cls,
        environ: MutableMapping[str, str] | None = None,
        unset_environment: bool = False,
    ) -> Notifier:
        """Build from ``NOTIFY_SOCKET``/``WATCHDOG_USEC``/``WATCHDOG_PID`` (``os.environ``).

        ``unset_environment`` removes the three variables afterwards so that child processes
        do not inherit them, as ``sd_notify(unset_environment=1)`` does.
        """
        env = os.environ if environ is None else environ
        notifier = cls(env.get(_NOTIFY_SOCKET) or None, watchdog_usec_from_env(env))
        if unset_environment:
            for key in (_NOTIFY_SOCKET, _WATCHDOG_USEC, _WATCHDOG_PID):
                env.pop(key, None)
        return notifier

    @property
    def enabled(self) -> bool:
        """Whether a notification socket is configured."""
        return self._address is not None

    def ready(self, status: str | None = None) -> bool:
        """Startup (or a reload) is complete: ``READY=1``, with an optional status line."""
        return self.notify("READY=1", *self._status_lines(status))

    def reloading(self) -> bool:
        """A reload begins: ``RELOADING=1`` and ``MONOTONIC_USEC=`` (systemd ≥ 253 wants both
        for ``Type=notify-reload``; older versions ignore the timestamp). End with :meth:`ready`.
        """
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}")

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown begins: ``STOPPING=1``."""
        return self.notify("STOPPING=1", *self._status_lines(status))

    def status(self, text: str) -> bool:
        """A one-line human status shown by ``systemctl status``: ``STATUS=text``."""
        return self.notify(*self._status_lines(text))

    def watchdog(self) -> bool:
        """Keep-alive ping: ``WATCHDOG=1``. Call every :meth:`watchdog_interval` seconds."""
        return self.notify("WATCHDOG=1")

    def watchdog_timeout(self) -> float | None:
        """The watchdog timeout in seconds (``WATCHDOG_USEC``), or ``None`` when disabled."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / _USEC_PER_SECOND

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half the timeout), or ``None`` when disabled."""
        timeout = self.watchdog_timeout()
        return None if timeout is None else timeout / 2

    def notify(self, *assignments: str) -> bool:
        """Send ``assignments`` (``KEY=VALUE`` strings) as one datagram.

        Returns ``True`` when the datagram was sent, ``False`` when notifications are disabled
        or the send failed (logged, never raised).
        """
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode("utf-8", errors="replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(payload, self._address)
        except (OSError, ValueError) as exc:
            self._report_failure(assignments[0], exc)
            return False
        with self._lock:
            if self._failing:
                log.info("sd_notify delivers again", extra={"notify_socket": self._raw_address})
            self._failing = False
        return True

    def _report_failure(self, first: str, exc: BaseException) -> None:
        with self._lock:
            repeated = self._failing
            self._failing = True
        level = logging.DEBUG if repeated else logging.WARNING
        log.log(level, "sd_notify failed", extra={
            "notify_socket": self._raw_address,
            "notification": first.split("=", 1)[0],
            "error": str(exc),
        })

    @staticmethod
    def _status_lines(text: str | None) -> tuple[str, ...]:
        if text is None:
            return ()
        # A newline would start a new assignment; systemd shows one line anyway.
        return ("STATUS=" + " ".join(text.splitlines()),)


def watchdog_usec_from_env(environ: Mapping[str, str]) -> int | None:
    """``WATCHDOG_USEC`` if it is a positive integer meant for this process, else ``None``.

    ``WATCHDOG_PID``, when set, must name this process: otherwise the variables were
    inherited from a parent that is the one being watched.
    """
    raw_usec = environ.get(_WATCHDOG_USEC)
    if not raw_usec:
        return None
    try:
        usec = int(raw_usec)
    except ValueError:
        log.warning("ignoring malformed WATCHDOG_USEC", extra={"value": raw_usec})
        return None
    if usec <= 0:
        return None
    raw_pid = environ.get(_WATCHDOG_PID)
    if raw_pid:
        try:
            pid = int(raw_pid)
        except ValueError:
            log.warning("ignoring malformed WATCHDOG_PID", extra={"value": raw_pid})
            return None
        if pid != os.getpid():
            return None
    return usec
