"""Fan-out in memory: one publisher, 1,000 subscribers draining, deliveries per second.

Run: ``.venv/bin/python -m pytest bench/test_bench_broadcast.py --benchmark-enable -q``.

Every round publishes `EVENTS` JSON items to one topic that `SUBSCRIBERS` tasks follow
(each task stands for one connection: it takes every chunk its subscription yields, and
stops after the last event). The publisher lets the loop run after every publish
(``"one per turn"``), or after every ten (``"bursts of 10"``). A round's time divided
into ``EVENTS * SUBSCRIBERS`` gives deliveries per second. Side by side, in the same
process and loop:

- ``streamfx Broadcast``: `Broadcast.subscribe` (a cursor into the shared log; one
  encoding per publish; everything due leaves in one chunk);
- ``Queue per subscriber, encode per subscriber``: the recipe the peers document
  (sse-starlette's broadcast example, flask-sse): an unbounded ``asyncio.Queue`` per
  subscriber and each subscriber's generator encoding the event for its client;
- ``Queue per subscriber, encoded once``: the same queues carrying bytes encoded once
  by the publisher (the fairest peer for the data structure alone).

No HTTP here: this measures the hub, not a server (``bench/`` load scripts do that).

``streamfx Broadcast through to_asgi`` (its own group) is the server's whole Python
path per delivery without the network: each subscriber is ``to_asgi(hub.sse(...))``
called as an ASGI server would call it, with a ``send`` that only counts the events
(where uvicorn would write to the socket) and a ``receive`` that reports the
disconnect once the last event came. The time per delivery of this row is the
per-delivery CPU cost of the hub, the subscription and the ASGI adapter together
(wake-up, collect, metrics, write timeout, one ``send``), the part of the server's
cost per delivery that streamfx controls. Beside it, ``raw ASGI app`` is the floor: a
hand-written app (a shared list of frames, one ``asyncio.Event``, one ``send`` per
wake-up) in the same harness. What this group leaves out of a real server's write:
uvicorn's own ``send`` (Python) and the socket write (system time), and the metrics
hook (the default no-op here); its ``receive`` is not uvicorn's, so the disconnect
watch runs a task (once per stream, not per write). The server's whole CPU per write,
streamfx beside the same raw app, is ``python -m bench.load_broadcast_cpu``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import pytest

from streamfx import ServerSentEvent
from streamfx.adapters.asgi import to_asgi
from streamfx.broadcast import Broadcast

SUBSCRIBERS = 1000
EVENTS = 200
Runner = Callable[[Callable[[], Awaitable[Any]]], Any]


def item(n: int) -> dict[str, int]:
    return {"seq": n, "progress": n % 100}


async def publish_all(hub: Broadcast, burst: int) -> None:
    """Publish EVENTS items, letting the loop run once after every `burst` of them."""
    for n in range(EVENTS):
        await hub.publish("topic", item(n))
        if (n + 1) % burst == 0:
            await asyncio.sleep(0)


async def hub_round(burst: int) -> int:
    hub = Broadcast()
    started = asyncio.Event()
    ready = 0

    async def subscriber() -> int:
        nonlocal ready
        body = hub.subscribe("topic", heartbeat=None)
        received = 0
        async for chunk in body:
            if not received and chunk.startswith(b":"):
                ready += 1
                if ready == SUBSCRIBERS:
                    started.set()
            received += chunk.count(b"data: ")
            if received >= EVENTS:
                break
        await body.aclose()  # type: ignore[attr-defined]
        return received

    tasks = [asyncio.create_task(subscriber()) for _ in range(SUBSCRIBERS)]
    await started.wait()
    await publish_all(hub, burst)
    return sum(await asyncio.gather(*tasks))


async def asgi_round(burst: int) -> int:
    hub = Broadcast()
    started = asyncio.Event()
    ready = 0
    scope: dict[str, Any] = {"type": "http", "method": "GET", "headers": [], "path": "/"}

    async def subscriber() -> int:
        done = asyncio.Event()
        received = 0

        async def receive() -> dict[str, Any]:
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal ready, received
            if message["type"] != "http.response.body":
                return
            body = message["body"]
            if not received and body.startswith(b":"):
                ready += 1
                if ready == SUBSCRIBERS:
                    started.set()
            received += body.count(b"data: ")
            if received >= EVENTS:
                done.set()

        await to_asgi(hub.sse("topic", heartbeat=None))(scope, receive, send)
        return received

    tasks = [asyncio.create_task(subscriber()) for _ in range(SUBSCRIBERS)]
    await started.wait()
    await publish_all(hub, burst)
    return sum(await asyncio.gather(*tasks))


async def raw_asgi_round(burst: int) -> int:
    """The floor under `asgi_round`: a hand-written ASGI app, the same harness.

    A shared list of encoded frames and one ``asyncio.Event`` that the publisher sets
    and replaces per publish; each subscriber, on every wake, sends everything after its
    index in one ``send`` (no watch for a disconnect, no write timeout, no metrics, no
    heartbeat, no replay, no overflow rule)."""
    frames: list[bytes] = []
    news = [asyncio.Event()]
    started = asyncio.Event()
    ready = 0
    scope: dict[str, Any] = {"type": "http", "method": "GET", "headers": [], "path": "/"}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b": ok\n\n", "more_body": True})
        sent = len(frames)
        while True:
            if sent == len(frames):
                await news[0].wait()
            chunk = b"".join(frames[sent:])
            sent = len(frames)
            if not await send({"type": "http.response.body", "body": chunk, "more_body": True}):
                return

    async def subscriber() -> int:
        received = 0

        async def receive() -> dict[str, Any]:
            raise AssertionError("not called")

        async def send(message: MutableMapping[str, Any]) -> bool:
            nonlocal ready, received
            if message["type"] != "http.response.body":
                return True
            body = message["body"]
            if not received and body.startswith(b":"):
                ready += 1
                if ready == SUBSCRIBERS:
                    started.set()
            received += body.count(b"data: ")
            return bool(received < EVENTS)  # the harness's stand-in for a disconnect

        await app(scope, receive, send)
        return received

    tasks = [asyncio.create_task(subscriber()) for _ in range(SUBSCRIBERS)]
    await started.wait()
    for n in range(EVENTS):
        frames.append(ServerSentEvent(json.dumps(item(n)), id=str(n)).encode())
        event, news[0] = news[0], asyncio.Event()
        event.set()
        if (n + 1) % burst == 0:
            await asyncio.sleep(0)
    return sum(await asyncio.gather(*tasks))


async def queue_round(burst: int, encode_once: bool) -> int:
    queues: list[asyncio.Queue[Any]] = []
    started = asyncio.Event()

    async def events(queue: asyncio.Queue[Any]) -> AsyncIterator[bytes]:
        while True:
            value = await queue.get()
            if encode_once:
                yield value
            else:  # what each client's generator does in the peers' recipe
                yield ServerSentEvent(json.dumps(value), id=str(value["seq"])).encode()

    async def subscriber() -> int:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        queues.append(queue)
        if len(queues) == SUBSCRIBERS:
            started.set()
        received = 0
        stream = events(queue)
        async for _ in stream:
            received += 1
            if received >= EVENTS:
                break
        await stream.aclose()  # type: ignore[attr-defined]
        return received

    tasks = [asyncio.create_task(subscriber()) for _ in range(SUBSCRIBERS)]
    await started.wait()
    for n in range(EVENTS):
        value: Any = item(n)
        if encode_once:
            value = ServerSentEvent(json.dumps(value), id=str(n)).encode()
        for queue in queues:
            queue.put_nowait(value)
        if (n + 1) % burst == 0:
            await asyncio.sleep(0)
    return sum(await asyncio.gather(*tasks))


PEERS: dict[str, Callable[[int], Awaitable[int]]] = {
    "streamfx Broadcast": hub_round,
    "Queue per subscriber, encode per subscriber": lambda burst: queue_round(burst, False),
    "Queue per subscriber, encoded once": lambda burst: queue_round(burst, True),
}


@pytest.mark.benchmark(group="broadcast: 1,000 subscribers, one event per turn")
@pytest.mark.parametrize("name", list(PEERS))
def test_fan_out_one_per_turn(benchmark: Any, run: Runner, name: str) -> None:
    measure(benchmark, run, name, 1)


@pytest.mark.benchmark(group="broadcast: 1,000 subscribers, bursts of 10")
@pytest.mark.parametrize("name", list(PEERS))
def test_fan_out_bursts(benchmark: Any, run: Runner, name: str) -> None:
    measure(benchmark, run, name, 10)


ASGI_APPS: dict[str, Callable[[int], Awaitable[int]]] = {
    "streamfx to_asgi(hub.sse())": asgi_round,
    "raw ASGI app (shared list, one Event)": raw_asgi_round,
}


@pytest.mark.benchmark(group="broadcast through to_asgi: 1,000 subscribers, per delivery")
@pytest.mark.parametrize("burst", [1, 10])
@pytest.mark.parametrize("name", list(ASGI_APPS))
def test_fan_out_through_asgi(benchmark: Any, run: Runner, name: str, burst: int) -> None:
    benchmark.extra_info["deliveries"] = SUBSCRIBERS * EVENTS
    delivered = benchmark.pedantic(
        lambda: run(lambda: ASGI_APPS[name](burst)), rounds=5, warmup_rounds=1
    )
    assert delivered == SUBSCRIBERS * EVENTS


def measure(benchmark: Any, run: Runner, name: str, burst: int) -> None:
    benchmark.extra_info["deliveries"] = SUBSCRIBERS * EVENTS
    delivered = benchmark.pedantic(
        lambda: run(lambda: PEERS[name](burst)), rounds=5, warmup_rounds=1
    )
    assert delivered == SUBSCRIBERS * EVENTS
