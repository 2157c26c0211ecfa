"""A healthy SSE reader whose latencies are the server's, not this process's.

The readers scenario's yardstick is the publish-to-arrival latency of the healthy
clients, alone (run A) and beside the stalled and slow ones (run B). Read through an
asyncio ``StreamReader``, "arrival" is when this process got round to the data: the
client's own queueing (parsing 20 streams' events in Python, the slow readers, the
stalled connects and the ``/stats`` polls of run B, another process on the machine
delaying this one) is counted as the server's, and differs between A and B.

So a `StampedReader` reads its socket with ``recvmsg`` and takes the time the kernel
received the data (``SO_TIMESTAMPNS``, `bench._subscribers.kernel_arrival`): every
event a read completes arrived then (the newest packet's time when a read takes
several: an event is never counted earlier than it came, at worst as late as the next
packet read with it). Where the kernel gives no stamp, the time of the read stands in.

It reads from a loop reader callback (`asyncio.AbstractEventLoop.add_reader`): all
that is readable is read, parsed (h11, `streamfx.SSEDecoder`) and noted in one call,
with no task step per read.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable

import h11

from bench._subscribers import SO_TIMESTAMPNS, kernel_arrival, realtime_to_perf
from bench.soak.client import LINGER_ZERO, send_get
from streamfx import SSEDecoder

READ_SIZE = 1 << 16
ANCILLARY_SIZE = socket.CMSG_SPACE(16)  # one struct timespec
OnEvent = Callable[[float, str], object]  # (kernel arrival on perf_counter, data)


class StampedReader:
    """One ``GET path`` whose SSE events are passed to `on_event` with their kernel
    arrival time, until the response ends, the connection fails, or `close`."""

    def __init__(self, sock: socket.socket, on_event: OnEvent) -> None:
        self.sock = sock
        self.on_event = on_event
        self.http = h11.Connection(h11.CLIENT, max_incomplete_event_size=1 << 20)
        self.decoder = SSEDecoder()
        self.status = 0
        self.loop = asyncio.get_running_loop()
        self.headers = self.loop.create_future()  # the status, once the headers came
        self.ended = self.loop.create_future()  # set when the response or connection ends
        self.offset = realtime_to_perf()
        self.offset_at = time.perf_counter()
        self.loop.add_reader(sock.fileno(), self._readable)

    @classmethod
    async def get(cls, port: int, path: str, on_event: OnEvent) -> StampedReader:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        await send_get(sock, port, path)
        reader = cls(sock, on_event)
        reader.http.send(h11.Request(method="GET", target=path, headers=[("Host", "soak")]))
        reader.http.send(h11.EndOfMessage())
        return reader

    def _readable(self) -> None:
        try:
            data, ancillary, _, _ = self.sock.recvmsg(READ_SIZE, ANCILLARY_SIZE)
        except BlockingIOError:
            return
        except OSError:
            self._end()
            return
        now = time.perf_counter()
        if now - self.offset_at > 0.25:  # the clocks drift apart slowly: re-pair them
            self.offset, self.offset_at = realtime_to_perf(), now
        arrival = kernel_arrival(ancillary, self.offset)
        self.http.receive_data(data)
        try:
            self._parse(now if arrival is None else arrival)
        except h11.RemoteProtocolError:
            self._end()
            return
        if not data:
            self._end()

    def _parse(self, arrival: float) -> None:
        while True:
            event = self.http.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Response):
                self.status = event.status_code
                if not self.headers.done():
                    self.headers.set_result(self.status)
            elif isinstance(event, h11.Data):
                for sse in self.decoder.feed(bytes(event.data)):
                    self.on_event(arrival, sse.data or "")
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                self._end()
                return

    def _end(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        if not self.headers.done():
            self.headers.set_result(0)
        if not self.ended.done():
            self.ended.set_result(None)

    def close(self) -> None:
        """Stop reading and reset the connection (RST), as a client that vanishes does."""
        if self.sock.fileno() >= 0:
            self._end()
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
            self.sock.close()
