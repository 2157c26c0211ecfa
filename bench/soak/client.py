"""The soak's HTTP client: raw asyncio connections parsed with h11, so that a client
can stall (never read, a tiny receive buffer), read slowly, or abort with a TCP reset,
and so that the end of every response is seen exactly: a clean end (the last chunk),
an aborted one (EOF before it), or a reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from typing import Any, Literal

import h11

from streamfx import ServerSentEvent, SSEDecoder

Ending = Literal["clean", "aborted", "reset", "open"]
LINGER_ZERO = struct.pack("ii", 1, 0)


class Client:
    """One ``GET`` on its own connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.http = h11.Connection(h11.CLIENT, max_incomplete_event_size=1 << 20)
        self.status = 0
        self.ending: Ending = "open"
        self.decoder = SSEDecoder()

    @classmethod
    async def get(
        cls,
        port: int,
        path: str,
        *,
        rcvbuf: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> Client:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        except BaseException:
            sock.close()
            raise
        client = cls(reader, writer)
        fields = [("Host", "soak"), *(headers or {}).items()]
        writer.write(client.http.send(h11.Request(method="GET", target=path, headers=fields)))
        writer.write(client.http.send(h11.EndOfMessage()))
        return client

    async def _events(self) -> list[Any]:
        """The next h11 events (at least one unless the connection ended)."""
        while True:
            event = self.http.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await self.reader.read(65536)
                except ConnectionResetError:
                    self.ending = "reset"
                    return []
                if not data:
                    try:
                        self.http.receive_data(b"")
                        event = self.http.next_event()
                    except h11.RemoteProtocolError:
                        self.ending = "aborted"
                        return []
                    if isinstance(event, h11.ConnectionClosed):
                        self.ending = "clean" if self.status else "aborted"
                        return []
                    return [event]
                self.http.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                self.status = event.status_code
            elif isinstance(event, h11.EndOfMessage):
                self.ending = "clean"
            return [event]

    async def head(self) -> int:
        """Wait for the status line and headers; the status (0 if the connection ended)."""
        while not self.status and self.ending == "open":
            await self._events()
        return self.status

    async def chunk(self) -> bytes | None:
        """The next piece of the body; None once the response or the connection ended."""
        while self.ending == "open":
            for event in await self._events():
                if isinstance(event, h11.Data):
                    return bytes(event.data)
        return None

    async def events(self) -> list[ServerSentEvent]:
        """The SSE events the next piece of the body completes; None-safe: [] at the end."""
        data = await self.chunk()
        return [] if data is None else self.decoder.feed(data)

    async def body(self) -> bytes:
        """The rest of the body, until it ends (cleanly or not)."""
        parts = []
        while (data := await self.chunk()) is not None:
            parts.append(data)
        return b"".join(parts)

    def abort(self) -> None:
        """Reset the connection (RST), as a client that vanishes does."""
        if self.writer.transport.is_closing():
            return
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
        self.writer.transport.abort()

    def close(self) -> None:
        self.writer.close()


class KeepAlive:
    """Requests one after another on one kept-alive connection (reopened if the server
    closed it), so that asking a server for its figures does not change them."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.client: Client | None = None

    async def get(self, path: str, seconds: float = 10.0) -> tuple[int, bytes]:
        async with asyncio.timeout(seconds):
            client = self.client
            if client is not None and client.http.our_state is h11.DONE:
                try:
                    client.http.start_next_cycle()
                except h11.LocalProtocolError:
                    client.close()
                    client = None
            elif client is not None:
                client.close()
                client = None
            reused = client is not None
            if client is None:
                client = await Client.get(self.port, path)
            else:
                client.status, client.ending = 0, "open"
                request = h11.Request(method="GET", target=path, headers=[("Host", "soak")])
                client.writer.write(client.http.send(request))
                client.writer.write(client.http.send(h11.EndOfMessage()))
            self.client = client
            status = await client.head()
            if not status and reused:  # the server had closed the idle connection
                self.close()
                return await self.get(path, seconds)
            return status, await client.body()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


ETHERNET_MSS = 1400


async def stalled(port: int, path: str) -> socket.socket:
    """A connection that sends ``GET path`` and then never reads: a 4 KB receive
    buffer, no event loop reading it (an asyncio transport would read ahead), and the
    segment size of a real network path (`ETHERNET_MSS`): on loopback the 64 KiB
    segments make the kernel give the server a send buffer of megabytes for a client
    that reads nothing, which a real client never gets."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, ETHERNET_MSS)
    await send_get(sock, port, path)
    return sock


async def send_get(sock: socket.socket, port: int, path: str) -> None:
    """Connect `sock` (made non-blocking) to 127.0.0.1:`port` and send ``GET path``;
    `sock` is closed if that fails."""
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, f"GET {path} HTTP/1.1\r\nHost: soak\r\n\r\n".encode())
    except BaseException:
        sock.close()
        raise


def reset(sock: socket.socket) -> None:
    """Close `sock` with a TCP reset."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
    sock.close()


async def fetch(port: int, path: str, seconds: float = 10.0) -> tuple[int, bytes]:
    """Status and whole body of ``GET path``, on a connection of its own that the server
    closes after the response (``Connection: close``): hypercorn keeps a kept-alive
    connection whose client sent its FIN until its keep-alive timeout (5 s), and each
    case that waits for the server's descriptors to come back waited that out."""
    async with asyncio.timeout(seconds):
        client = await Client.get(port, path, headers={"Connection": "close"})
        try:
            status = await client.head()
            return status, await client.body()
        finally:
            client.close()


async def fetch_json(port: int, path: str, via: KeepAlive | None = None) -> dict[str, Any]:
    status, body = await (fetch(port, path) if via is None else via.get(path))
    if status != 200 or not body.startswith(b"{"):
        raise RuntimeError(f"GET {path}: {status} {body[:200]!r}")
    result: dict[str, Any] = json.loads(body)
    return result
