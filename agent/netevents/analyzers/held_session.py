"""One connection of the TCP sessions analyzer (:mod:`agent.netevents.analyzers.tcp_sessions`)
and what makes it *slow*: per second, which side sent payload, and whether the client is
waiting for an answer (stalled) or being answered slowly (trickling).
"""

from __future__ import annotations

from typing import Final

HELD_SECONDS: Final = 3
SLOW_BYTES_PER_SECOND: Final = 1024
"""A connection the server has answered is *trickling* under this rate (see :func:`is_slow`)."""
STALL_BYTES_PER_SECOND: Final = 8192
"""A connection whose client gets no answer is *stalled* under this rate (see :func:`is_slow`):
a request dribbled out at 1 to 8 KB/s is still a slowloris; an upload is faster."""
STALL_MAX_GAP: Final = 20
"""Most seconds between the client's last two unanswered seconds for a stall (slowloris tools
send every 4 to 15 s once all their connections are open; TCP keep-alive probes and websocket
pings are usually sparser)."""
PAYLOAD_MARGIN: Final = 32
"""Bytes a direction's segments of one second must carry on average over its pure-ACK size
to count as payload (an ACK with 3 SACK blocks carries 28 more than a bare one)."""
RECENT: Final = 15
"""Seconds since the server's last payload for an answered connection to still be trickling."""


class Session:
    """One tracked connection."""

    __slots__ = ("answered", "asked_again", "bytes", "cb", "client", "confirmed", "cp",
                 "first", "first_answer", "header", "keys", "last", "port", "reset", "sb",
                 "server", "sp", "stall_bytes", "stall_first", "stall_gap", "stall_last", "stall_n",
                 "tick")

    def __init__(self, client: bytes, server: bytes, port: int, second: int,
                 keys: tuple[bytes, bytes]) -> None:
        self.client = client
        self.server = server
        self.port = port
        self.first = second
        self.last = second
        self.bytes = 0
        self.keys = keys
        self.confirmed = False
        """The client sent a segment on it (until then it is only in the pending table)."""
        self.reset = -1
        """The second of an RST on it with no segment after (-1: none)."""
        self.header = 1 << 30
        """The least wire bytes a segment of it carried on average in one second (first the
        SYN-ACK's size, whose options a later pure ACK does not exceed): its pure-ACK size."""
        self.tick = -1
        """The second of the tallies below (this second's client and server bytes/packets)."""
        self.cb = self.cp = self.sb = self.sp = 0
        self.first_answer = -1
        """The first second the server sent payload (-1: never)."""
        self.answered = -1
        """The last second the server sent payload (-1: never)."""
        self.asked_again = False
        """The client sent payload in a second after the server's first answer."""
        self.stall_first = -1
        """The first second the client sent a segment since the server's last answer."""
        self.stall_last = -1
        self.stall_n = 0
        """Seconds with client segments since the server's last answer."""
        self.stall_gap = 0
        """Seconds between the last two of them."""
        self.stall_bytes = 0
        """Wire bytes both ways since :attr:`stall_first`."""

    def tally(self, second: int, from_client: bool, packets: int, nbytes: int) -> bool:
        """Count one second's segments of one direction; whether this starts the second."""
        fresh = self.tick != second
        if fresh:
            self.tick = second
            self.cb = self.cp = self.sb = self.sp = 0
        if from_client:
            self.cp += packets
            self.cb += nbytes
        else:
            self.sp += packets
            self.sb += nbytes
        return fresh

    def fold(self) -> None:
        """The tallied second into the connection's state: did the server answer, did the
        client send unanswered segments (see :func:`is_slow`)."""
        second, cp, cb, sp, sb = self.tick, self.cp, self.cb, self.sp, self.sb
        self.bytes += cb + sb
        header = self.header
        server_payload = sp and sb > sp * (header + PAYLOAD_MARGIN)
        if cp and cb > cp * (header + PAYLOAD_MARGIN) and 0 <= self.first_answer < second:
            self.asked_again = True
        for n, b in ((cp, cb), (sp, sb)):
            if n and b // n < header:
                header = b // n
        self.header = header
        if server_payload:
            if self.first_answer < 0:
                self.first_answer = second
            self.answered = second
            self.stall_first = self.stall_last = -1
            self.stall_n = self.stall_bytes = self.stall_gap = 0
            return
        if self.stall_first >= 0:
            self.stall_bytes += cb + sb
        if cp:
            if self.stall_first < 0:
                self.stall_first = second
                self.stall_bytes = cb + sb
            else:
                self.stall_gap = second - self.stall_last
            self.stall_n += 1
            self.stall_last = second


def is_slow(s: Session, second: int) -> bool:
    """Whether a held connection is slow in the sense of slowloris, slow POST or slow read:

    * **stalled** — the client has sent segments in at least two seconds, the first and last
      3 s or more apart and the last two at most :data:`STALL_MAX_GAP` s apart, since the
      server last sent payload
      (or since the handshake), under :data:`STALL_BYTES_PER_SECOND` both ways since then:
      request headers or a body dribbled out that the server is still waiting for, however
      many bytes per second up to that cap (slowloris at 1.5 KB/s is stalled too);
    * **trickling** — the server sends payload (in two seconds or more, the last within
      :data:`RECENT` s), the client has sent no payload since the first answer, and the
      connection moves under :data:`SLOW_BYTES_PER_SECOND` since its SYN-ACK: a slow read.

    A keep-alive connection whose requests were answered and that now sits idle is neither
    (nothing unanswered, no recent payload), nor is a pool asking again and again.
    """
    if s.stall_n >= 2:
        span = s.stall_last - s.stall_first
        if (span >= HELD_SECONDS and s.stall_gap <= STALL_MAX_GAP
                and s.stall_bytes // (second - s.stall_first + 1) < STALL_BYTES_PER_SECOND):
            return True
    return (s.first_answer >= 0 and s.answered > s.first_answer and not s.asked_again
            and s.answered >= second - RECENT
            and s.bytes // (second - s.first + 1) < SLOW_BYTES_PER_SECOND)
