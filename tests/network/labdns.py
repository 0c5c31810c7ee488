"""The lab's DNS resolver: answers ``*.lab.test`` with 198.18.0.1, NXDOMAIN for anything else,
REFUSED for zone transfers; over UDP and over TCP (RFC 7766 framing, one query per connection).

Run inside the lab's gateway namespace: ``python -m tests.network.labdns 198.18.0.1``. It never
forwards a query anywhere.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading

from agent.netdecode import dns


def answer(query: bytes) -> bytes | None:
    msg = dns.parse(query, 0, len(query))
    if isinstance(msg, str) or msg.is_response:
        return None
    qend = 12 + sum(n + 1 for n in msg.labels) + 1 + 4
    question = query[12:qend]
    known = msg.name == "lab.test" or msg.name.endswith(".lab.test")
    flags = 0x8180 if known else 0x8183
    if msg.qtype in (251, 252):  # IXFR, AXFR: never
        known, flags = False, 0x8185
    head = struct.pack("!HHHHHH", msg.id, flags, 1, 1 if known and msg.qtype == 1 else 0, 0, 0)
    body = head + question
    if known and msg.qtype == 1:
        body += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton("198.18.0.1")
    return body


def serve_tcp(address: str) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((address, 53))
    server.listen(8)
    while True:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(5)
            try:
                length = struct.unpack("!H", _read(conn, 2))[0]
                reply = answer(_read(conn, length))
                if reply is not None:
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
            except (OSError, struct.error):
                continue


def _read(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return data


def main(address: str) -> None:
    threading.Thread(target=serve_tcp, args=(address,), daemon=True).start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 53))
    while True:
        data, peer = sock.recvfrom(4096)
        reply = answer(data)
        if reply is not None:
            sock.sendto(reply, peer)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "198.18.0.1")
