"""sd_notify over a real AF_UNIX datagram socket: exact messages, abstract sockets, failures."""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.sdnotify import Notifier, socket_address, watchdog_usec_from_env


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(2.0)
    yield sock, str(path)
    sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_ready_sends_exact_datagram(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready() is True
    assert received(sock) == ["READY=1"]
    assert notifier.ready(status="3 collectors") is True
    assert received(sock) == ["READY=1", "STATUS=3 collectors"]


def test_each_message_kind(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    notifier = Notifier(path)
    assert notifier.stopping()
    assert received(sock) == ["STOPPING=1"]
    assert notifier.watchdog()
    assert received(sock) == ["WATCHDOG=1"]
    assert notifier.status("line one\nline two")
    assert received(sock) == ["STATUS=line one line two"]


def test_reloading_carries_monotonic_timestamp(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert Notifier(path).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = received(sock)
    assert first == "RELOADING=1"
    key, value = second.split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_abstract_socket() -> None:
    name = f"vedette-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2.0)
    try:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert received(sock) == ["READY=1"]
    finally:
        sock.close()


def test_unset_environment_is_a_silent_no_op(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    with caplog.at_level(logging.DEBUG, logger="agent.sdnotify"):
        assert notifier.ready() is False
        assert notifier.watchdog() is False
        assert notifier.reloading() is False
        assert notifier.stopping() is False
        assert notifier.status("x") is False
    assert caplog.records == []
    assert notifier.watchdog_interval() is None


def test_missing_socket_returns_false_and_logs_once_per_outage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "late.sock"
    notifier = Notifier(str(path))
    with caplog.at_level(logging.DEBUG, logger="agent.sdnotify"):
        assert notifier.ready() is False
        assert notifier.watchdog() is False
        assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.DEBUG]
        # The same notifier recovers once something listens on that path.
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        sock.settimeout(2.0)
        try:
            assert notifier.watchdog() is True
            assert received(sock) == ["WATCHDOG=1"]
        finally:
            sock.close()
    assert caplog.records[-1].levelno == logging.INFO
    assert "delivers again" in caplog.records[-1].getMessage()


def test_path_too_long_returns_false() -> None:
    notifier = Notifier("/" + "x" * 200)
    assert notifier.ready() is False


def test_socket_that_is_not_a_socket_returns_false(tmp_path: Path) -> None:
    regular = tmp_path / "plain-file"
    regular.write_text("")
    assert Notifier(str(regular)).ready() is False


def test_unsupported_address_disables(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="agent.sdnotify"):
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234", "WATCHDOG_USEC": "30000000"})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog_interval() is None
    assert "unsupported NOTIFY_SOCKET" in caplog.text


def test_socket_address_forms() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@abc") == b"\0abc"
    assert socket_address("@") is None
    assert socket_address("relative/path") is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "abc"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_the_timeout(
    env: dict[str, str], expected: float | None, receiver: tuple[socket.socket, str]
) -> None:
    _, path = receiver
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path, **env})
    assert notifier.watchdog_interval() == expected
    if expected is not None:
        assert notifier.watchdog_timeout() == expected * 2


def test_watchdog_usec_helper_without_socket() -> None:
    assert watchdog_usec_from_env({"WATCHDOG_USEC": "2000000"}) == 2_000_000
    # Without a socket the pings could not go anywhere: no interval.
    assert Notifier.from_env({"WATCHDOG_USEC": "2000000"}).watchdog_interval() is None


def test_unset_environment_removes_variables(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid()),
           "OTHER": "kept"}
    notifier = Notifier.from_env(env, unset_environment=True)
    assert env == {"OTHER": "kept"}
    assert notifier.watchdog_interval() == 0.5
    assert notifier.ready()
    assert received(sock) == ["READY=1"]


def wait_for_message(
    sock: socket.socket, wanted: str, timeout: float, agent: Any = None
) -> list[list[str]]:
    """Datagrams received until one contains ``wanted`` (all of them, in order); fails early
    with the agent's log if the agent exits."""
    seen: list[list[str]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(min(max(deadline - time.monotonic(), 0.01), 0.5))
        try:
            seen.append(received(sock))
        except TimeoutError:
            if agent is not None and agent.proc.poll() is not None:
                raise AssertionError(f"agent exited before {wanted}:\n{agent.logs()}") from None
            continue
        if wanted in seen[-1]:
            return seen
    raise AssertionError(f"no {wanted} within {timeout}s; got {seen}")


@pytest.mark.e2e
def test_daemon_notifies_systemd_through_its_lifecycle(
    agent_factory: Callable[..., Any], receiver: tuple[socket.socket, str]
) -> None:
    sock, path = receiver
    agent = agent_factory(extra_env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
    agent.start(wait=False)
    try:
        wait_for_message(sock, "READY=1", timeout=30, agent=agent)
        # Pings every 0.5 s (half of WATCHDOG_USEC): two arrive well within 3 s.
        pings = wait_for_message(sock, "WATCHDOG=1", timeout=3)
        pings += wait_for_message(sock, "WATCHDOG=1", timeout=3)
        assert sum(message == ["WATCHDOG=1"] for message in pings) >= 2
        agent.proc.send_signal(signal.SIGHUP)
        reload_messages = wait_for_message(sock, "RELOADING=1", timeout=10)
        assert any(line.startswith("MONOTONIC_USEC=") for line in reload_messages[-1])
        wait_for_message(sock, "READY=1", timeout=10)
        agent.proc.send_signal(signal.SIGTERM)
        wait_for_message(sock, "STOPPING=1", timeout=10)
        assert agent.stop() == 0
    finally:
        agent.kill()
