"""A raw HTTP/1.1 client for upload tests: it sends a request body the way an attacker or a
slow client would (as fast as the server takes it, or paced), reads the answer while it
sends, and reports how many bytes of the body it had sent when the answer began, and
what became of the connection afterwards.

Its socket has a small send buffer (`SEND_BUFFER`), so that "bytes sent" is close to
"bytes the server could have read": with the server's own small receive buffer
(`small_listener`), at most a few hundred KiB are in flight between the two.
"""

from __future__ import annotations

import errno
import select
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

SEND_BUFFER = 64 * 1024
RECEIVE_BUFFER = 64 * 1024


def small_listener() -> socket.socket:
    """A listening socket on 127.0.0.1 whose connections have a small receive buffer,
    inheritable by a server process."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


@dataclass
class Reply:
    """What came back for one request."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    sent_at_answer: int = -1
    """Body bytes sent when the first byte of the answer arrived (-1: no answer)."""
    sent: int = 0
    """Body bytes sent in all."""
    seconds: float = 0.0
    """From the first byte of the request to the end of the answer."""
    reset: bool = False
    """The connection was reset (ECONNRESET, EPIPE) while sending or reading."""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def request_head(
    path: str, length: int | None, content_type: str, extra: Iterable[str] = ()
) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: test", f"Content-Type: {content_type}"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines.extend(extra)
    # Header bytes as a client sends them: UTF-8, a lone surrogate as the byte it stands for.
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


def pieces(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


class Connection:
    """One client connection to 127.0.0.1:`port`."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setblocking(False)
        self._buffer = bytearray()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exchange(
        self,
        head: bytes,
        body: Iterable[bytes] = (),
        *,
        pace: float = 0.0,
        timeout: float = 30.0,
    ) -> Reply:
        """Send `head`, then the pieces of `body` (`pace` seconds apart), reading the
        answer meanwhile; stop sending when the answer begins. Returns when the answer
        is complete (its ``Content-Length``), the connection closed, or `timeout`
        passed (then ``reply.status`` is 0)."""
        reply = Reply()
        started = time.monotonic()
        deadline = started + timeout
        source = iter(body)
        pending = memoryview(head)
        counting = False  # the head is not body
        next_send = started
        done_sending = False
        sock = self.sock
        while not self._parse(reply):
            now = time.monotonic()
            if now >= deadline:
                return reply
            sending = not done_sending and reply.sent_at_answer < 0
            if sending and not pending and now >= next_send:
                piece = next(source, None)
                if piece is None:
                    done_sending = sending = False
                else:
                    pending = memoryview(piece)
                    counting = True
                    next_send = now + pace
            wait = deadline - now
            if sending and not pending:
                wait = min(wait, next_send - now)
            writers = [sock] if sending and pending else []
            readable, writable, _ = select.select([sock], writers, [], max(wait, 0.0))
            if writable:
                try:
                    count = sock.send(pending)
                except OSError as exc:
                    if exc.errno not in (errno.ECONNRESET, errno.EPIPE):
                        raise
                    reply.reset = True
                    done_sending = True
                else:
                    pending = pending[count:]
                    if counting:
                        reply.sent += count
            if readable:
                try:
                    data = sock.recv(65536)
                except OSError as exc:
                    if exc.errno != errno.ECONNRESET:
                        raise
                    reply.reset = True
                    data = b""
                if not data:
                    self._parse(reply)
                    break
                if reply.sent_at_answer < 0:
                    reply.sent_at_answer = reply.sent
                self._buffer += data
        reply.seconds = time.monotonic() - started
        return reply

    def _parse(self, reply: Reply) -> bool:
        """Fill `reply` from the buffer; True once the answer is complete."""
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if len(buffer) < end + 4 + length:
            return False
        reply.status = int(lines[0].split()[1])
        reply.headers = headers
        reply.body = bytes(buffer[end + 4 : end + 4 + length])
        del buffer[: end + 4 + length]
        return True

    def closed_by_server(self, seconds: float) -> bool:
        """True if the server closes the connection (end of stream or reset) within
        `seconds`, reading and dropping anything it sends meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.sock], [], [], left)
            if not readable:
                continue
            try:
                if not self.sock.recv(65536):
                    return True
            except OSError as exc:
                if exc.errno == errno.ECONNRESET:
                    return True
                raise
        return False
