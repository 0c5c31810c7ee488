"""The lab's DNS resolver: answers ``*.lab.test`` with 198.18.0.1, NXDOMAIN for anything else.

Run inside the lab's gateway namespace: ``python -m tests.network.labdns 198.18.0.1``. It never
forwards a query anywhere.
"""

from __future__ import annotations

import socket
import struct
import sys

from agent.netdecode import dns


def answer(query: bytes) -> bytes | None:
    msg = dns.parse(query, 0, len(query))
    if isinstance(msg, str) or msg.is_response:
        return None
    qend = 12 + sum(n + 1 for n in msg.labels) + 1 + 4
    question = query[12:qend]
    known = msg.name == "lab.test" or msg.name.endswith(".lab.test")
    flags = 0x8180 if known else 0x8183
    head = struct.pack("!HHHHHH", msg.id, flags, 1, 1 if known and msg.qtype == 1 else 0, 0, 0)
    body = head + question
    if known and msg.qtype == 1:
        body += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton("198.18.0.1")
    return body


def main(address: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 53))
    while True:
        data, peer = sock.recvfrom(4096)
        reply = answer(data)
        if reply is not None:
            sock.sendto(reply, peer)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "198.18.0.1")
