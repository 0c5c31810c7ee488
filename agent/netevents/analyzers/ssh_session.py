"""One SSH connection as seen on the wire: banners, key exchange, then authentication inferred
from the sizes of the encrypted packets (the way Zeek's SSH analyzer does it).

Written by hand, not with a library: no packet library follows SSH over unreassembled TCP
segments, and all this needs is the packet framing of the cleartext phase (RFC 4253 §6) and
sizes afterwards.

Per direction the segments are followed in sequence order (retransmissions are skipped, a hole
in the capture stops the inference: ``capture_gap``). The cleartext phase is the version line
(at most :data:`MAX_BANNER` bytes, RFC 4253 §4.2; sanitised: it is attacker-controlled) and
binary packets walked by their length field until ``SSH_MSG_NEWKEYS``; what follows NEWKEYS in
that direction is encrypted and only its size is read, one *message* per segment (a segment's
tail after NEWKEYS is one message; a server segment of the largest size seen so far is taken to
go on in the next: a tiny MSS the client asked for splits every answer).

Authentication (RFC 4252) once both directions are encrypted — client packets are requests,
server packets are answers:

* the server's first encrypted message after the client's first one, if at most
  :data:`MAX_ACCEPT_SIZE` bytes, is ``SERVICE_ACCEPT`` (size *A*; a larger one is the
  ``EXT_INFO`` of RFC 8308, skipped);
* ``USERAUTH_SUCCESS`` (one byte of payload) is exactly 16 bytes shorter than *A* for every
  cipher and MAC (block alignment of 8 or 16): a server message of size *A* - 16 is a success,
  final at the server's next message of another size unless that one is a refusal (then the
  "success" was a message the client provoked, e.g. ``UNIMPLEMENTED``: undone);
* the next other message is ``USERAUTH_FAILURE`` (size *F*; one larger than *A* + 256 is a
  pre-auth banner, skipped once). That first failure answers the client's ``none`` method
  query (OpenSSH, libssh and most clients send one) and is not an attempt;
* every later server message of size *F* is one failed attempt;
* a message of another size answering a request (``USERAUTH_PK_OK``, a keyboard-interactive
  prompt, a ``DISCONNECT``) decides nothing; if it was the server's last before the connection
  ended without success, the request was refused: one more failed attempt
  (``server_disconnect``: sshd's "Too many authentication failures").

Limits (docs/network.md): keyboard-interactive exchanges are not counted; a client that sends
no ``none`` query is counted one attempt short; a segment carrying two SSH messages counts as
one; SSH-1 is not inferred.
"""

from __future__ import annotations

from typing import Final

MAX_BANNER: Final = 255
"""Bytes of the version line kept at most (RFC 4253: 255 including CR LF)."""
MAX_LINE: Final = 8192
"""Longest version line still read to its end: OpenSSH accepts 8192 bytes
(``SSH_MAX_BANNER_LEN``), more than RFC 4253's 255, so a longer line is no reason to stop."""
MAX_BANNER_SHOWN: Final = 160
MAX_PRE_LINES: Final = 8
"""Lines a server may send before its version line."""
MAX_ACCEPT_SIZE: Final = 128
"""Largest encrypted SERVICE_ACCEPT (aes-cbc with hmac-sha2-512: 96 bytes)."""
MAX_CLEAR_PACKET: Final = 256 * 1024
"""A cleartext packet length beyond this is not SSH (RFC 4253 asks for 35000 at least)."""
MSG_NEWKEYS: Final = 21
MSG_KEXINIT: Final = 20
NEWKEYS_SIZE: Final = 16
"""SSH_MSG_NEWKEYS on the wire: 4 + 1 + 1 + 10 bytes of padding (block size 8)."""

BANNER, CLEAR, ENCRYPTED, DEAD = 0, 1, 2, 3
"""Phases of one direction."""


def sanitise(raw: bytes) -> str:
    """Printable ASCII of an attacker-written version line, bounded; anything else is ``?``."""
    text = "".join(chr(b) if 0x20 <= b < 0x7F else "?" for b in raw[:MAX_BANNER_SHOWN])
    return text + ("…" if len(raw) > MAX_BANNER_SHOWN else "")


class Direction:
    """One side's byte stream: sequence tracking and the cleartext phase."""

    __slots__ = ("banner", "bytes", "carry", "kex_method", "kexinit", "line", "lines",
                 "max_segment", "newkeys", "next_seq", "packets", "phase", "skip")

    def __init__(self) -> None:
        self.next_seq: int | None = None
        self.phase = BANNER
        self.banner = bytearray()
        self.line = 0
        """Bytes of the current line read so far (only the first MAX_BANNER are kept)."""
        self.lines = 0
        self.skip = 0
        """Bytes of a cleartext packet still to come in later segments."""
        self.carry = b""
        """The start of a cleartext packet header the segment ended in (at most 5 bytes)."""
        self.max_segment = 0
        """The largest payload seen: a segment of that size is taken to continue."""
        self.kexinit = False
        self.kex_method = False
        self.newkeys = False
        self.packets = 0
        self.bytes = 0


class SshSession:
    """Inference state of one connection (client → server as the version lines showed)."""

    __slots__ = ("accept_size", "c", "client", "client_port", "decided", "failure_size",
                 "failures", "family", "gap", "held", "last", "last_other", "pending",
                 "provoked", "s", "saw_client_encrypted", "server", "server_port",
                 "skipped_banner", "start", "success", "truncated", "version_error")

    def __init__(self, ts: float, family: int, client: bytes, client_port: int,
                 server: bytes, server_port: int) -> None:
        self.start = self.last = ts
        self.family = family
        self.client, self.client_port = client, client_port
        self.server, self.server_port = server, server_port
        self.c = Direction()
        self.s = Direction()
        self.gap = False
        self.truncated = False
        self.version_error = False
        self.saw_client_encrypted = False
        self.accept_size = 0
        self.failure_size = 0
        self.skipped_banner = False
        self.pending = 0
        """Client requests since the server last answered."""
        self.held = 0
        """Encrypted server bytes of a message that may go on in the next segment."""
        self.failures = 0
        self.last_other = False
        self.success = False
        self.decided = False
        """The outcome is final (a success confirmed by the server's next message)."""
        self.provoked = False
        """A message of the success size was followed by a refusal (counted in ``evasion``)."""

    # ------------------------------------------------------------------ the byte streams

    def expect(self, from_client: bool, seq: int) -> None:
        """Where one direction's bytes start, from the other side's acknowledgment number,
        before that direction sent any payload (so that its first RST or FIN can be checked)."""
        d = self.c if from_client else self.s
        if d.next_seq is None:
            d.next_seq = seq & 0xFFFFFFFF

    def in_sequence(self, from_client: bool, seq: int | None) -> bool:
        """Whether a RST or FIN at ``seq`` is at the sender's next byte: the receiver acts on
        nothing else (RFC 5961 §3: an out-of-window RST is dropped, an in-window one only draws a
        challenge ACK), so anyone may send one and stop the following of a connection."""
        d = self.c if from_client else self.s
        return seq is None or d.next_seq is None or seq == d.next_seq

    @property
    def confirmed(self) -> bool:
        """Both version lines were read: two live ends, not one spoofed segment."""
        return BANNER not in (self.c.phase, self.s.phase)

    def segment(self, from_client: bool, seq: int | None, payload: bytes, length: int,
                wire: int) -> None:
        """One TCP segment of one direction: ``payload`` as captured (the capture's snap
        length may cut it), ``length`` its true size (from the frame's wire length)."""
        d = self.c if from_client else self.s
        d.packets += 1
        d.bytes += wire
        if not length:
            return
        if from_client:
            self._flush_held()
        if from_client and self.s.phase == ENCRYPTED:
            # the client spoke after the server's NEWKEYS: the server's answers count from
            # now on, whatever the parse of the client's own stream says - a client can make
            # that parse fail (junk the server drops for a bad checksum, an old timestamp or
            # an unacceptable ACK, but the capture reads) and must not blind the answers
            self.saw_client_encrypted = True
        if d.phase == DEAD:
            return
        if seq is not None:
            if d.next_seq is not None:
                delta = (seq - d.next_seq) & 0xFFFFFFFF
                if delta >= 0x80000000:  # behind what was seen: a retransmission
                    return
                if delta:
                    self.gap = True
                    d.phase = DEAD
                    return
            d.next_seq = (seq + length) & 0xFFFFFFFF
        full = length >= d.max_segment
        d.max_segment = max(d.max_segment, length)
        if d.carry and d.phase == CLEAR:
            payload, length, d.carry = d.carry + payload, length + len(d.carry), b""
        at = 0
        if d.phase == BANNER:
            at = self._banner(d, payload)
            if at < 0:
                return
        if d.phase == CLEAR:
            at = self._clear(d, payload, length, at)
        if d.phase == ENCRYPTED and at < length:
            if from_client:
                self._encrypted(True, length - at)
                return
            # a message split over segments (a client that advertises a tiny MSS or window
            # makes the server do it) is summed: a segment of the largest size seen goes on
            self.held += length - at
            if not full:
                self._flush_held()

    def _flush_held(self) -> None:
        if self.held:
            size, self.held = self.held, 0
            self._encrypted(False, size)

    def _banner(self, d: Direction, payload: bytes) -> int:
        """Collect the version line; where the binary packets start, or -1 (more to come).

        A server may send other lines before its version (RFC 4253 §4.2): at most
        :data:`MAX_PRE_LINES` are skipped; a client may not. A line is read to its end up to
        :data:`MAX_LINE` bytes, only its first :data:`MAX_BANNER` kept."""
        at = 0
        while True:
            end = payload.find(b"\n", at, at + MAX_LINE + 1 - d.line)
            take = payload[at:] if end < 0 else payload[at:end]
            d.banner += take[:max(0, MAX_BANNER - len(d.banner))]
            d.line += len(take)
            if end < 0:
                if d.line >= MAX_LINE:
                    self._not_ssh(d)
                return -1
            if d.banner.startswith(b"SSH-"):
                break
            d.lines += 1
            if d.banner.startswith(b"SSH") or self.c is d or d.lines > MAX_PRE_LINES:
                self._not_ssh(d)
                return -1
            d.banner.clear()
            d.line = 0
            at = end + 1
            if at >= len(payload):
                return -1
        if d.banner.endswith(b"\r"):
            del d.banner[-1]
        if not (d.banner.startswith(b"SSH-2.0-") or d.banner.startswith(b"SSH-1.99-")):
            self._not_ssh(d)
            return -1
        d.phase = CLEAR
        return end + 1

    def _not_ssh(self, d: Direction) -> None:
        self.version_error = True
        d.phase = DEAD

    def _clear(self, d: Direction, payload: bytes, length: int, at: int) -> int:
        """Walk cleartext binary packets from ``at``; where NEWKEYS ended (or the end).

        A packet header past the captured bytes (a snap length of 512 cuts the segment that
        carries a key-exchange reply and NEWKEYS) is taken for NEWKEYS, 16 bytes in every
        cipher suite, once this side has sent a key-exchange method message (30-49): nothing
        else comes between them (RFC 4253 §7-8). Otherwise the direction is lost."""
        n = len(payload)
        if d.skip:
            used = min(d.skip, length - at)
            d.skip -= used
            at += used
        while at < length:
            if at + 6 > n:
                if n >= length:  # the header goes on in the next segment (a tiny MSS)
                    d.carry = bytes(payload[at:length])
                    return length
                if at >= n and d.kex_method:  # cut by the snap length: NEWKEYS (see above)
                    d.newkeys = True
                    d.phase = ENCRYPTED
                    return at + NEWKEYS_SIZE
                self.truncated = True
                d.phase = DEAD
                return length
            size = 4 + int.from_bytes(payload[at:at + 4], "big")
            kind = payload[at + 5]
            if size < 9 or size > MAX_CLEAR_PACKET:
                self._not_ssh(d)
                return length
            if kind == MSG_KEXINIT:
                d.kexinit = True
            elif 30 <= kind <= 49:
                d.kex_method = True
            if size > length - at:
                d.skip = size - (length - at)
                return length
            at += size
            if kind == MSG_NEWKEYS:
                d.newkeys = True
                d.phase = ENCRYPTED
                return at
        return at

    # ------------------------------------------------------------------ the inference

    def _encrypted(self, from_client: bool, size: int) -> None:
        if self.decided:
            return
        if from_client:
            self.saw_client_encrypted = True
            if self.accept_size:
                self.pending += 1
            return
        if not self.saw_client_encrypted:
            return  # EXT_INFO right after the server's NEWKEYS
        if not self.accept_size:
            if size <= MAX_ACCEPT_SIZE:
                self.accept_size = size
            return
        if size + 16 == self.accept_size:
            self.success = True  # to be confirmed by the next answer of another size
            self.pending = 0
            return
        if self.success:
            if size == self.failure_size and (self.failure_size != self.accept_size
                                              or self.s.banner.startswith(b"SSH-2.0-OpenSSH")):
                # a refusal after the 'success': that was another message of its size (an
                # UNIMPLEMENTED the client provoked); after a real one, OpenSSH sends its
                # hostkeys-00 announcement (larger than SERVICE_ACCEPT) and other servers the
                # answer to CHANNEL_OPEN (the size of SERVICE_ACCEPT)
                self.success = False
                self.failures += 1
                self.provoked = True
                return
            self.decided = True
            return
        if not self.failure_size:
            if not self.skipped_banner and size - self.accept_size > 256:
                self.skipped_banner = True
                return
            self.failure_size = size
            self.pending = 0
            return
        if size == self.failure_size:
            self.failures += 1
            self.pending = max(0, self.pending - 1)
            self.last_other = False
            return
        self.last_other = self.pending > 0
        self.pending = 0

    def close(self) -> None:
        """The connection ended: a request last answered by an unknown message was refused."""
        self._flush_held()
        if (not self.success and self.failure_size and self.last_other
                and not self.pending):
            self.failures += 1
            self.last_other = False

    @property
    def outcome(self) -> str:
        if self.success:
            return "success"
        return "failure" if self.failures else "unknown"

    @property
    def basis(self) -> str:
        """Why the outcome is what it is (``ssh.auth_inference``)."""
        if self.success:
            return "userauth_success_size"
        if self.failures:
            return "userauth_failure_size"
        if self.version_error:
            return "not_ssh2"
        if self.gap:
            return "capture_gap"
        if self.truncated:
            return "capture_truncated"
        if not (self.c.newkeys and self.s.newkeys):
            return "no_key_exchange" if self.c.phase and self.s.phase else "no_banner"
        if not self.accept_size:
            return "no_service_accept"
        return "no_auth_answer"

    @property
    def client_banner(self) -> str | None:
        return sanitise(bytes(self.c.banner)) if self.c.phase != BANNER and self.c.banner \
            else None

    @property
    def server_banner(self) -> str | None:
        return sanitise(bytes(self.s.banner)) if self.s.phase != BANNER and self.s.banner \
            else None
