"""Raw-socket SSE subscribers for the broadcast benchmarks, read with one epoll loop.

`Subscribers.open` connects `n` sockets to a server on 127.0.0.1, sends ``GET path``
and reads the response headers (noting the ``x-worker`` header when there is one).
`run` then reads every socket until each has received event `count` (or ended, or
the deadline passed). It does not parse every event: on each read it notes the
*arrival* and the number of the newest complete event received (``data: <k> ...``),
which is enough, since a subscriber receives events in order, to know when each event
arrived. `latencies` turns that into one latency per delivered event, measured
against the schedule (event k due at ``t0 + (k - 1) / rate``): the events completed
by one read all arrived then.

What "arrival" means: the time the kernel received the data on the client's socket
(``SO_TIMESTAMPNS``, read with ``recvmsg``), not the time this process got round to
reading it. So a client that reads late (it shares the machine with the server and
reads a thousand sockets in one Python loop) does not add its own queueing to the
latency it measures. When one read takes data that came in several packets, the
kernel reports the newest packet's time, and every event completed by that read is
given it: an event is never counted as earlier than it was, only, at worst, as late
as the next packet that came with it. The kernel's clock is ``CLOCK_REALTIME``; it is
turned into `time.perf_counter` (``CLOCK_MONOTONIC``, the server's clock for the
schedule) with an offset taken afresh every `TICK`. Where the kernel gives no
timestamp, the time of the read stands in.

Cheap on purpose, since it shares two cores with the server: ``select.epoll``
directly, reads of up to 64 KiB, per read a few ``bytes`` searches (no regular
expression) on the end of what came, and at most one round of reads per `ROUND`
(1 ms): the sockets that became readable meanwhile are read together, instead of the
server's every write waking this process (on loopback the writer pays for that
wake-up). Reading a socket up to `ROUND` later does not move its arrival times; it
only makes packets that came within that millisecond share the newest one's time.

``stalled`` sockets connect with a small receive buffer and are never read.
"""

from __future__ import annotations

import re
import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

_WORKER = re.compile(rb"(?im)^x-worker: *(\d+)")
_STAMPED = re.compile(rb"data: \d+ (\d+\.\d+)")
STALLED_RECEIVE_BUFFER = 4096
TICK = 0.25
READ_SIZE = 1 << 16
ROUND = 0.001
# Linux's SO_TIMESTAMPNS (= SCM_TIMESTAMPNS): Python's socket module does not name it.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")  # struct timespec (64-bit Linux): seconds, nanoseconds
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)


def realtime_to_perf() -> float:
    """What to add to a ``CLOCK_REALTIME`` reading to get `time.perf_counter`'s, now."""
    before = time.time()
    perf = time.perf_counter()
    after = time.time()
    return perf - (before + after) / 2


def kernel_arrival(ancillary: list[tuple[int, int, bytes]], offset: float) -> float | None:
    """The kernel's receive time of a ``recvmsg`` (on the perf_counter clock), or None."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return int(seconds) + int(nanoseconds) * 1e-9 + offset
    return None


@dataclass
class Subscriber:
    sock: socket.socket
    worker: int | None = None
    first_body: bytes = b""
    """What came with the response headers (the start of the body)."""
    tail: bytes = b""
    seq: int = 0
    ended: bool = False
    times: list[float] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    stamped: list[float] | None = None
    """With a list: every complete event's publish-to-arrival seconds go there."""

    def feed(self, data: bytes, now: float) -> None:
        """`data` arrived at `now`: note the newest event it completes."""
        buffer = self.tail + data if self.tail else data
        end = buffer.rfind(b"\n\n")
        if end >= 0:
            self.tail = buffer[end + 2 :]
        else:
            end = buffer.rfind(b"\r\n\r\n")
            if end < 0:
                self.tail = buffer[-4096:]
                return
            self.tail = buffer[end + 4 :]
        if self.stamped is not None:
            stamps = _STAMPED.findall(buffer, 0, end)
            self.stamped.extend(now - float(stamp) for stamp in stamps)
        start = buffer.rfind(b"data: ", 0, end)
        if start < 0:
            return
        start += 6
        stop = start
        while 48 <= buffer[stop] <= 57:  # the digits of k (a space or a line end follows)
            stop += 1
        if stop == start:
            return
        seq = int(buffer[start:stop])
        if seq > self.seq:
            self.seq = seq
            self.times.append(now)
            self.seqs.append(seq)


def open_stream(port: int, path: str, headers: str = "", stalled: bool = False) -> Subscriber:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if stalled:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RECEIVE_BUFFER)
    else:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n{headers}\r\n".encode())
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"{path}: closed before the headers")
        received += chunk
    if not received.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"{path}: {received[:200]!r}")
    head, _, body = received.partition(b"\r\n\r\n")
    worker = _WORKER.search(head)
    subscriber = Subscriber(sock, int(worker[1]) if worker else None, body)
    if body and not stalled:
        subscriber.feed(body, time.perf_counter())
    return subscriber


class Subscribers:
    """`n` subscribers to ``path`` on 127.0.0.1:`port` (`stalled` of them never read)."""

    def __init__(
        self, port: int, path: str, n: int, *, stalled: int = 0, stamped: bool = False
    ) -> None:
        self.stamped = stamped
        self.port = port
        self.path = path
        self.n = n
        self.stalled_count = stalled
        self.readers: list[Subscriber] = []
        self.stalled: list[Subscriber] = []

    def open(self) -> None:
        for index in range(self.n):
            is_stalled = index < self.stalled_count
            path = self.path
            if is_stalled:
                path += ("&" if "?" in path else "?") + "name=stalled"
            subscriber = open_stream(self.port, path, stalled=is_stalled)
            if self.stamped and not is_stalled:
                subscriber.stamped = []
            (self.stalled if is_stalled else self.readers).append(subscriber)

    def run(self, count: int, deadline: float, on_tick: Callable[[], object] | None = None) -> None:
        """Read until every reader has event `count`, has ended, or `deadline` passed;
        call `on_tick` about every quarter of a second meanwhile."""
        now = time.perf_counter()
        next_tick = now + TICK
        offset = realtime_to_perf()
        poller = select.epoll()
        # One buffer for every read: a fresh 64 KiB ``bytes`` per read would cost an
        # mmap and a munmap each (glibc serves it from its own mapping).
        read = bytearray(READ_SIZE)
        view = memoryview(read)
        into = [view]
        by_fd: dict[int, Subscriber] = {}
        for subscriber in self.readers:
            if subscriber.seq < count:
                subscriber.sock.setblocking(False)
                fd = subscriber.sock.fileno()
                poller.register(fd, select.EPOLLIN)
                by_fd[fd] = subscriber
        started = now
        try:
            while by_fd and now < deadline:
                if now >= next_tick:
                    if on_tick is not None:
                        on_tick()
                    offset = realtime_to_perf()
                    next_tick = time.perf_counter() + TICK
                for fd, _ in poller.poll(TICK):
                    subscriber = by_fd[fd]
                    try:
                        size, ancillary, _, _ = subscriber.sock.recvmsg_into(into, _ANCILLARY)
                    except BlockingIOError:
                        continue
                    except ConnectionError:
                        size = 0
                    data = bytes(view[:size])
                    if not data:
                        subscriber.ended = True
                    else:
                        arrived = kernel_arrival(ancillary, offset)
                        subscriber.feed(data, time.perf_counter() if arrived is None else arrived)
                    if subscriber.ended or subscriber.seq >= count:
                        poller.unregister(fd)
                        del by_fd[fd]
                # At most one round per ROUND: the readiness of sockets written meanwhile
                # is gathered for the next one instead of waking this process per write.
                now = time.perf_counter()
                if now - started < ROUND:
                    time.sleep(ROUND - (now - started))
                    now = time.perf_counter()
                started = now
        finally:
            poller.close()

    def close(self) -> None:
        for subscriber in self.readers + self.stalled:
            subscriber.sock.close()

    def delivered(self) -> int:
        return sum(subscriber.seq for subscriber in self.readers)

    def last_arrival(self) -> float:
        return max((s.times[-1] for s in self.readers if s.times), default=0.0)

    def workers(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for subscriber in self.readers:
            if subscriber.worker is not None:
                counts[subscriber.worker] = counts.get(subscriber.worker, 0) + 1
        return counts

    def publish_to_arrival(self) -> list[float]:
        """Seconds from each event's publish to its arrival (with `stamped`)."""
        return [value for s in self.readers for value in s.stamped or ()]

    def latencies(self, t0: float, rate: float) -> list[float]:
        """Seconds from each delivered event's due time to its arrival."""
        found: list[float] = []
        for subscriber in self.readers:
            previous = 0
            for arrived, seq in zip(subscriber.times, subscriber.seqs, strict=True):
                found.extend(arrived - (t0 + (k - 1) / rate) for k in range(previous + 1, seq + 1))
                previous = seq
        return found


def percentiles(values: list[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds (NaN when empty)."""
    if not values:
        return {"p50": float("nan"), "p99": float("nan")}
    values.sort()
    last = len(values) - 1
    return {
        "p50": values[round(0.50 * last)] * 1000,
        "p99": values[round(0.99 * last)] * 1000,
    }
