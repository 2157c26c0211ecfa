"""The client side of the adapter tests: raw HTTP/1.1 over sockets (for disconnects,
slow readers and framing that httpx hides), and waiting for a condition.

Every wait has a deadline and fails with a message that says what never happened; none
of them measures speed (a deadline is a hang guard, set generously).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable

import pytest

Condition = Callable[[], bool | Awaitable[bool]]


async def wait_until(condition: Condition, what: str, seconds: float = 10.0) -> None:
    """Poll `condition` (a function, sync or async) until it holds; fail after
    `seconds` with "gave up waiting for `what`"."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        held = condition()
        if not isinstance(held, bool):
            held = await held
        if held:
            return
        if loop.time() > deadline:
            pytest.fail(f"gave up waiting for {what} ({seconds} s)")
        await asyncio.sleep(0.01)


def wait_until_sync(condition: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    """`wait_until` for code that runs outside an event loop."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what} ({seconds} s)")
        time.sleep(0.01)


def request_bytes(method: str, path: str, *, http10: bool = False, headers: str = "") -> bytes:
    if http10:
        return f"{method} {path} HTTP/1.0\r\n{headers}\r\n".encode()
    return f"{method} {path} HTTP/1.1\r\nHost: test\r\n{headers}\r\n".encode()


async def open_raw(
    port: int,
    path: str,
    *,
    rcvbuf: int | None = None,
    http10: bool = False,
    send: bytes | None = None,
) -> socket.socket:
    """A non-blocking socket that sent ``GET path`` (or `send`); `rcvbuf` is set before
    connecting, so the kernel's receive window stays that small."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, send or request_bytes("GET", path, http10=http10))
    except BaseException:
        sock.close()
        raise
    return sock


async def recv_until(
    sock: socket.socket,
    marker: bytes,
    received: bytes = b"",
    *,
    count: int = 1,
    seconds: float = 10.0,
    piece: int = 65536,
) -> bytes:
    """Read until `marker` has arrived `count` times (counting in `received` too);
    returns `received` and all read after it."""
    loop = asyncio.get_running_loop()
    data = bytearray(received)
    seen = data.count(marker)
    searched = max(0, len(data) - len(marker) + 1)
    async with asyncio.timeout(seconds):
        while seen < count:
            chunk = await loop.sock_recv(sock, piece)
            assert chunk, f"connection closed before {marker!r}: {bytes(data[-200:])!r}"
            data += chunk
            seen += data.count(marker, searched)
            searched = max(0, len(data) - len(marker) + 1)
    return bytes(data)


END_OF_CHUNKED = b"\r\n0\r\n\r\n"


async def recv_body(sock: socket.socket, received: bytes = b"", seconds: float = 30.0) -> bytes:
    """Read until a chunked body's terminating chunk (or the server closes)."""
    loop = asyncio.get_running_loop()
    data = bytearray(received)
    async with asyncio.timeout(seconds):
        while not data.endswith(END_OF_CHUNKED):
            chunk = await loop.sock_recv(sock, 65536)
            if not chunk:
                break
            data += chunk
    return bytes(data)


async def read_to_eof(sock: socket.socket, seconds: float = 30.0, piece: int = 65536) -> bytes:
    """Everything until the server closes the connection (a reset raises)."""
    loop = asyncio.get_running_loop()
    parts: list[bytes] = []
    async with asyncio.timeout(seconds):
        while chunk := await loop.sock_recv(sock, piece):
            parts.append(chunk)
    return b"".join(parts)


async def raw_get(port: int, path: str, seconds: float = 10.0) -> bytes:
    """All a raw ``GET path`` receives until the server closes the connection."""
    sock = await open_raw(port, path)
    with sock:
        return await read_to_eof(sock, seconds)


def close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.close()


def dechunk(raw: bytes) -> tuple[bytes, bool]:
    """The body of a chunked response (head included in `raw`), and whether it ended
    with the terminating chunk."""
    _, _, rest = raw.partition(b"\r\n\r\n")
    body = bytearray()
    while rest:
        size_line, separator, rest = rest.partition(b"\r\n")
        if not separator:
            return bytes(body), False
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return bytes(body), rest.startswith(b"\r\n")
        if len(rest) < size + 2:
            body += rest[:size]
            return bytes(body), False
        body += rest[:size]
        rest = rest[size + 2 :]
    return bytes(body), False


def tcp_in_flight_limit(rcvbuf: int) -> int:
    """Bytes the kernel may hold between a server and a client that does not read: the
    sender's largest send buffer plus the receiver's buffer (Linux doubles it)."""
    with open("/proc/sys/net/ipv4/tcp_wmem") as file:
        wmem_max = int(file.read().split()[2])
    return wmem_max + 2 * rcvbuf


async def post_reading_early(
    port: int, path: str, body: bytes, headers: dict[str, str], *, chunked: bool = False
) -> tuple[int, dict[str, str], bytes]:
    """POST `body` (in 50 KB pieces; chunked or with a ``Content-Length``) while reading
    the answer, as a browser does: ``(status, headers, body)``.

    A server that refuses an upload early answers before it has read the body and
    then closes the connection, which resets it (unread data was left). A client that
    reads only once it has sent everything (httpx), or whose failed write closes its
    reading side too (an asyncio stream), may lose the answer; this one reads from the
    start on a plain socket and goes on sending while the server takes it; when the
    answer says ``Connection: close`` it then waits until the server has closed the
    connection, so that the server is done with the request when this returns.
    """
    loop = asyncio.get_running_loop()
    framing = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(len(body))}
    head = "".join(f"{name}: {value}\r\n" for name, value in {**headers, **framing}.items())
    request = f"POST {path} HTTP/1.1\r\nHost: test\r\n{head}\r\n".encode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)

    async def send() -> None:
        with contextlib.suppress(OSError):  # the server may stop taking it at any point
            await loop.sock_sendall(sock, request)
            for start in range(0, len(body), 50_000):
                piece = body[start : start + 50_000]
                await loop.sock_sendall(
                    sock, b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
                )
            if chunked:
                await loop.sock_sendall(sock, b"0\r\n\r\n")

    with sock:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        sender = asyncio.create_task(send())
        try:
            async with asyncio.timeout(30):
                received = await recv_until(sock, b"\r\n\r\n")
                raw_head, _, content = received.partition(b"\r\n\r\n")
                status_line, *lines = raw_head.decode().split("\r\n")
                answer = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in lines)
                }
                length = int(answer["content-length"])
                while len(content) < length:
                    chunk = await loop.sock_recv(sock, 65536)
                    assert chunk, "the connection closed before the end of the answer"
                    content += chunk
                await sender
                if answer.get("connection", "").lower() == "close":
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_WR)  # done sending: the server may close
                        while await loop.sock_recv(sock, 65536):
                            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
    return int(status_line.split()[1]), answer, content[:length]
