"""Raw-socket SSE subscribers for the broadcast benchmarks, read with one epoll loop.

`Subscribers.open` connects `n` sockets to a server on 127.0.0.1, sends ``GET path``
and reads the response headers (noting the ``x-worker`` header when there is one).
`run` then reads every socket until each has received event `count` (or ended, or
the deadline passed). It does not parse every event: on each read it notes the time
and the number of the newest complete event received (``data: <k> ...``), which is
enough, since a subscriber receives events in order, to know when each event
arrived. `latencies` turns that into one latency per delivered event, measured
against the schedule (event k due at ``t0 + (k - 1) / rate``): the events that came
in one read all arrived then.

``stalled`` sockets connect with a small receive buffer and are never read.
"""

from __future__ import annotations

import re
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

_WORKER = re.compile(rb"(?im)^x-worker: *(\d+)")
_SEQ = re.compile(rb"data: (\d+)")
_STAMPED = re.compile(rb"data: \d+ (\d+\.\d+)")
STALLED_RECEIVE_BUFFER = 4096
TICK = 0.25


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
        buffer = self.tail + data
        end = max(buffer.rfind(b"\n\n"), buffer.rfind(b"\r\n\r\n"))
        if end < 0:
            self.tail = buffer[-4096:]
            return
        found = None
        start = buffer.rfind(b"data: ", 0, end)
        if start >= 0:
            found = _SEQ.match(buffer, start)
        if self.stamped is not None:
            stamps = _STAMPED.findall(buffer, 0, end)
            self.stamped.extend(now - float(stamp) for stamp in stamps)
        self.tail = buffer[end:]
        if found is not None:
            seq = int(found[1])
            if seq > self.seq:
                self.seq = seq
                self.times.append(now)
                self.seqs.append(seq)


def open_stream(port: int, path: str, headers: str = "", stalled: bool = False) -> Subscriber:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if stalled:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RECEIVE_BUFFER)
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
        next_tick = time.perf_counter() + TICK
        selector = selectors.DefaultSelector()
        waiting = 0
        for subscriber in self.readers:
            if subscriber.seq < count:
                subscriber.sock.setblocking(False)
                selector.register(subscriber.sock, selectors.EVENT_READ, subscriber)
                waiting += 1
        while waiting and time.perf_counter() < deadline:
            if on_tick is not None and time.perf_counter() >= next_tick:
                on_tick()
                next_tick = time.perf_counter() + TICK
            for key, _ in selector.select(timeout=TICK):
                subscriber = key.data
                try:
                    data = subscriber.sock.recv(1 << 18)
                except BlockingIOError:
                    continue
                now = time.perf_counter()
                if not data:
                    subscriber.ended = True
                else:
                    subscriber.feed(data, now)
                if subscriber.ended or subscriber.seq >= count:
                    selector.unregister(subscriber.sock)
                    waiting -= 1
        selector.close()

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
