"""A veth pair into a private network namespace, so the live test has a capturable interface.

Loopback is never captured, so the test makes ``vdd<pid>a`` in the host namespace and
``vdd<pid>b`` inside its own namespace, on a /30 of 198.18.128.0/17 picked from the process id
(so concurrent runs do not share a route). Traffic only ever goes to that namespace's address
(198.18.0.0/15, never routed). Needs root and `ip`; without them
:func:`veth_into_netns` yields ``None`` and the capture checks are skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


def _subnet(pid: int) -> tuple[str, str]:
    """Host and peer address of the /30 number ``pid % 8192`` in 198.18.128.0/17."""
    base = 4 * (pid % 8192)
    prefix = f"198.18.{128 + (base >> 8)}."
    return f"{prefix}{(base & 255) + 1}", f"{prefix}{(base & 255) + 2}"


@dataclass(frozen=True)
class VethPair:
    host_if: str
    netns: str
    peer_ip: str

    def udp_to_closed_port(self, port: int, count: int) -> None:
        """UDP datagrams to a closed port of the peer: ARP, UDP and ICMP unreachable replies."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(count):
                sock.sendto(b"vedette dashboard test", (self.peer_ip, port))
                time.sleep(0.01)


    def tcp_to_closed_port(self, port: int, count: int) -> None:
        """Connection attempts to a closed port of the peer: SYN, answered by RST."""
        for _ in range(count):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.settimeout(1.0)
                with contextlib.suppress(OSError):
                    sock.connect((self.peer_ip, port))

    def dns_exchange(self, count: int) -> int:
        """``count`` DNS queries to a responder inside the namespace, which answers each with
        NXDOMAIN; returns the answers received. The responder is our own process, ended by PID."""
        responder = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, sys.executable, "-c", _DNS_RESPONDER,
             self.peer_ip, str(count)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        answers = 0
        try:
            assert responder.stdout is not None
            responder.stdout.readline()  # "ready": the socket is bound
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(1.0)
                for i in range(count):
                    sock.sendto(_dns_query(i), (self.peer_ip, 53))
                    with contextlib.suppress(TimeoutError):
                        sock.recv(512)
                        answers += 1
        finally:
            if responder.poll() is None:
                responder.kill()
            responder.wait(timeout=10)
        return answers


def _dns_query(ident: int) -> bytes:
    """A DNS query for ``q<ident>.vedette.test`` (A, IN), recursion desired."""
    name = b"".join(bytes([len(part)]) + part for part in (f"q{ident}".encode(), b"vedette",
                                                           b"test")) + b"\0"
    return struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0) + name + struct.pack(">HH", 1, 1)


_DNS_RESPONDER = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[1], 53))
sock.settimeout(10.0)
print("ready", flush=True)
for _ in range(int(sys.argv[2])):
    try:
        query, peer = sock.recvfrom(512)
    except TimeoutError:
        break
    if len(query) >= 12:
        # Same id and question, QR=1, RA, rcode 3 (NXDOMAIN), no answers.
        sock.sendto(query[:2] + bytes([0x81, 0x83]) + query[4:6] + bytes(6) + query[12:], peer)
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@contextmanager
def veth_into_netns() -> Iterator[VethPair | None]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        yield None
        return
    tag = f"vdd{os.getpid() % 100000}"
    host_ip, peer_ip = _subnet(os.getpid())
    host_if, peer_if, netns = f"{tag}a", f"{tag}b", f"{tag}-ns"
    try:
        _ip("netns", "add", netns)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", peer_if)
        _ip("link", "set", peer_if, "netns", netns)
        _ip("addr", "add", f"{host_ip}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", netns, "addr", "add", f"{peer_ip}/30", "dev", peer_if)
        _ip("-n", netns, "link", "set", peer_if, "up")
    except (subprocess.SubprocessError, OSError):
        _cleanup(host_if, netns)
        yield None
        return
    try:
        yield VethPair(host_if, netns, peer_ip)
    finally:
        _cleanup(host_if, netns)


def _cleanup(host_if: str, netns: str) -> None:
    for args in (("link", "del", host_if), ("netns", "del", netns)):
        try:
            _ip(*args)
        except (subprocess.SubprocessError, OSError):
            pass
