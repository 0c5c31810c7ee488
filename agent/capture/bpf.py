"""Classic BPF programs for AF_PACKET sockets: compiled by ``tcpdump -dd``, attached with ctypes.

The kernel runs the filter before a packet is copied into the ring, so what it rejects costs no
Python at all; its return value is also the snap length (TPACKET_V3 has no other). Without a
filter expression the program is one instruction, ``ret #snaplen``.
"""

from __future__ import annotations

import ctypes
import shutil
import socket
import subprocess

from agent.errors import CollectorError

SO_ATTACH_FILTER = 26
BPF_RET_K = 0x06
MAX_INSTRUCTIONS = 4096

Instruction = tuple[int, int, int, int]


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def accept_all(snaplen: int) -> list[Instruction]:
    """``ret #snaplen``: every packet, cut to ``snaplen`` bytes."""
    return [(BPF_RET_K, 0, 0, snaplen)]


def compile_filter(expression: str, snaplen: int, linktype: str = "EN10MB") -> list[Instruction]:
    """Compile a tcpdump expression for ``linktype`` (``EN10MB``, ``RAW``) with ``tcpdump -dd``.

    Raises :class:`CollectorError` naming the problem (tcpdump missing, syntax error).
    """
    if not expression.strip():
        return accept_all(snaplen)
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        raise CollectorError("capture.bpf_filter is set but tcpdump (its compiler) is missing")
    # The expression is passed as one argv element: no shell is involved.
    proc = subprocess.run(
        [tcpdump, "-dd", "-y", linktype, "-s", str(snaplen), expression],
        capture_output=True, text=True, timeout=20, check=False,
    )
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["unknown error"])[-1][:200]
        raise CollectorError(f"capture.bpf_filter does not compile: {reason}")
    return parse_dd(proc.stdout)


def parse_dd(text: str) -> list[Instruction]:
    """Parse ``tcpdump -dd`` output: lines like ``{ 0x28, 0, 0, 0x0000000c },``."""
    program: list[Instruction] = []
    for line in text.splitlines():
        line = line.strip().strip(",")
        if not line:
            continue
        if not (line.startswith("{") and line.endswith("}")):
            raise CollectorError(f"unexpected tcpdump -dd output: {line[:80]!r}")
        parts = [p.strip() for p in line[1:-1].split(",")]
        if len(parts) != 4:
            raise CollectorError(f"unexpected tcpdump -dd output: {line[:80]!r}")
        code, jt, jf, k = (int(p, 0) for p in parts)
        program.append((code, jt, jf, k))
    if not program or len(program) > MAX_INSTRUCTIONS:
        raise CollectorError(f"BPF program of {len(program)} instructions is not usable")
    return program


def attach(sock: socket.socket, program: list[Instruction]) -> None:
    """Attach ``program`` to ``sock`` (SO_ATTACH_FILTER)."""
    array = (_SockFilter * len(program))(*(_SockFilter(*ins) for ins in program))
    fprog = _SockFprog(len(program), ctypes.cast(array, ctypes.POINTER(_SockFilter)))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))
