"""The broadcast benchmarks' raw-socket client (`bench._subscribers`): what it takes
for an event's arrival, and how it finds the newest complete event in what it reads."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from bench._subscribers import Subscriber, Subscribers, percentiles


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A loopback TCP connection: (the server's end, the client's end)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    with server, client:
        yield server, client


def test_feed_notes_the_newest_complete_event_once_it_is_whole() -> None:
    subscriber = Subscriber(socket.socket())
    subscriber.sock.close()
    subscriber.feed(b": \n\nid: x-0\n\ndata: 1 5.0 xx\n\ndata: 2 5.1 ", 10.0)
    assert (subscriber.seq, subscriber.times, subscriber.seqs) == (1, [10.0], [1])
    subscriber.feed(b"xx\n\n: ping\n\n", 11.0)  # event 2 completes here; a ping is no event
    assert (subscriber.seq, subscriber.times, subscriber.seqs) == (2, [10.0, 11.0], [1, 2])
    subscriber.feed(b"data: 3 5.2 xx\r\n\r\ndata: 4", 12.0)  # sse-starlette's line ends
    assert (subscriber.seq, subscriber.seqs) == (3, [1, 2, 3])
    subscriber.feed(b"2 5.3 xx\r\n\r\n", 13.0)  # k split across two reads
    assert (subscriber.seq, subscriber.seqs) == (42, [1, 2, 3, 42])


def wait_until_the_kernel_stamps(server: socket.socket, client: socket.socket) -> None:
    """Send comments until `client` receives one with its kernel timestamp. Linux turns
    receive stamping on lazily, once the first socket asks for it: on a fresh machine
    the first packets after that come unstamped."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        server.sendall(b": prime\n\n")
        _, ancillary, _, _ = client.recvmsg(4096, socket.CMSG_SPACE(16))
        if ancillary:
            return
        time.sleep(0.01)
    pytest.fail("the kernel stamped no packet this socket received within 5 s")


def test_arrival_is_when_the_kernel_received_the_data_not_when_it_was_read(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    client.setsockopt(socket.SOL_SOCKET, 35, 1)  # SO_TIMESTAMPNS, as open_stream does
    wait_until_the_kernel_stamps(server, client)
    pool = Subscribers(0, "/", 1)
    subscriber = Subscriber(client)
    pool.readers.append(subscriber)
    t0 = time.perf_counter()
    server.sendall(b"data: 1 0.0 x\n\n")
    time.sleep(0.2)  # the client reads late: that must not count
    pool.run(1, time.perf_counter() + 5)
    read_at = time.perf_counter()
    assert subscriber.seq == 1
    arrival = subscriber.times[0]
    assert t0 <= arrival < t0 + 0.1 < read_at
    latency = percentiles(pool.latencies(t0, 1.0))
    assert latency["p50"] < 100


def test_run_ends_a_subscriber_whose_server_closed(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    pool = Subscribers(0, "/", 1)
    pool.readers.append(Subscriber(client))
    server.sendall(b"data: 1 0.0 x\n\n")
    server.shutdown(socket.SHUT_WR)
    pool.run(5, time.perf_counter() + 5)
    assert pool.readers[0].ended
    assert pool.delivered() == 1
