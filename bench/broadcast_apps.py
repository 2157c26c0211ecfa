"""The server side of the broadcast benchmarks: one publisher, many SSE subscribers.

One ASGI app (served by uvicorn, uvloop, httptools) holds every contender; the load
scripts start a fresh server per contender and scenario:

- ``streamfx``: `streamfx.broadcast.Broadcast` (defaults: buffer 64, ``"disconnect"``,
  history 1000), ``to_asgi(hub.sse(topic, last_event_id=...))``; with ``BENCH_REDIS``
  set, on a `RedisStreamsBackend`;
- ``sse-starlette``: sse-starlette's broadcasting example as its repository writes it
  (``examples/02_broadcasting.py``): a broadcaster keeps one unbounded
  ``asyncio.Queue`` per client and ``put_nowait``s one ``ServerSentEvent`` into every
  queue; each client's stream checks ``request.is_disconnected()`` and then awaits
  its queue, inside ``EventSourceResponse`` (re-implemented here, same structure);
- ``broadcaster``: the ``broadcaster`` package (``Broadcast("memory://")``, or its
  Redis pub/sub backend with ``BENCH_REDIS``), each client ``async with
  broadcast.subscribe(channel)`` inside ``EventSourceResponse``;
- ``sse-starlette-gen``: no broadcast at all, one generator per client that sleeps
  until each event's time and yields it (what an app without a hub does);
- ``raw``: the floor, not a peer: `RawFanout`, the least a correct fan-out in plain
  ASGI does (a shared list of encoded frames, one `asyncio.Event` replaced per publish;
  each connection waits on it and sends everything new in one ``send``). It has no
  heartbeat, no write timeout, no bound on a slow client and no history limit (the
  list keeps every frame): what it costs is what uvicorn and the kernel's TCP path
  cost per write, with no library in between.

Every event is ``data: <k> <published> <padding>`` where ``k`` counts from 1 and
``published`` is ``time.perf_counter()`` when it was published; event ``k`` is due
at ``t0 + (k - 1) / rate`` (``time.perf_counter``, the system-wide monotonic clock, so
the client in another process measures latency against the same schedule). The
publisher sleeps until an event is due and publishes everything due (catching up in
one go when the loop was busy, 64 events at most before it yields), one after the
other, except streamfx on Redis: all at once (``asyncio.gather``, as an app whose
events come from many sources does; its backend pipelines them in call order).
broadcaster on Redis publishes one by one because that is its best: published at
once, each of its publishes took a pooled connection of its own (so they may also
reorder) and it fell seconds behind (p50 3.2 s from publish to delivery in a trial
run, against 3.5 ms one by one).

Control: ``POST /start?contender=&count=&rate=&t0=&size=`` starts the publisher (all
``*-gen`` streams wait for it); ``POST /fill?n=`` publishes n events to topic
``replay`` at once and answers the id of event ``n - 1000``; ``GET /stats``: subscribers
open per contender (streamfx, sse-starlette, raw), the seconds at which each
``stalled`` stream ended, and every garbage collection since the last ``/start``
(`Collections`: when it started, its generation, how long it took), so the load
scripts can tell which pauses fell in their measured window. The same hook is
installed for every contender.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import resource
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request

from streamfx.metrics import NullMetrics, Outcome

CONTENDERS = ("streamfx", "sse-starlette", "broadcaster", "sse-starlette-gen", "raw")
TOPIC = "bench"
MAX_BATCH = 64


def payload(k: int, size: int) -> str:
    """Event k, stamped with the time it is published, padded to `size` characters."""
    text = f"{k} {time.perf_counter():.6f} "
    return text + "x" * max(0, size - len(text))


class Schedule:
    """When the publisher starts, and its parameters (set by ``POST /start``)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.count = 0
        self.rate = 1.0
        self.t0 = 0.0
        self.size = 64

    def due(self, k: int) -> float:
        return self.t0 + (k - 1) / self.rate


class QueueBroadcaster:
    """sse-starlette's example broadcaster: one unbounded queue per client."""

    def __init__(self) -> None:
        self.clients: list[asyncio.Queue[Any]] = []

    def add_client(self) -> asyncio.Queue[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self.clients.append(queue)
        return queue

    def remove_client(self, queue: asyncio.Queue[Any]) -> None:
        if queue in self.clients:
            self.clients.remove(queue)

    def broadcast(self, message: str) -> None:
        from sse_starlette import ServerSentEvent

        event = ServerSentEvent(data=message)
        for queue in self.clients:
            queue.put_nowait(event)


class RawFanout:
    """The floor of a fan-out in plain ASGI: `publish` encodes an event once into a
    shared list and wakes every connection through one `asyncio.Event`, replaced per
    publish; `serve` answers one subscriber: it waits for the event, then sends every
    frame it has not sent yet in one ``http.response.body``. A connection ends when its
    client leaves: a second task per connection awaits ``receive()`` until
    ``http.disconnect`` (uvicorn's ``send`` returns silently once the client has gone,
    so the writer alone would never learn it) and then cancels the writer.

    Not a peer: no heartbeat, no write timeout, no overflow handling (a slow client's
    frames wait in uvicorn's transport), no ids, no replay, and the list is never
    trimmed. It is what the machine costs per write with no library in between."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.published = asyncio.Event()
        self.subscribers = 0

    def publish(self, data: str) -> None:
        self.frames.append(f"data: {data}\n\n".encode())
        published, self.published = self.published, asyncio.Event()
        published.set()

    async def serve(self, receive: Any, send: Any, headers: list[tuple[bytes, bytes]]) -> None:
        start = {"type": "http.response.start", "status": 200, "headers": headers}
        await send(start)
        writer = asyncio.create_task(self.write(send, len(self.frames)))
        self.subscribers += 1
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        finally:
            self.subscribers -= 1
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def write(self, send: Any, cursor: int) -> None:
        frames = self.frames
        while True:
            published = self.published  # taken before the check: no publish slips by
            if cursor == len(frames):
                await published.wait()
            end = len(frames)
            body = b"".join(frames[cursor:end])
            await send({"type": "http.response.body", "body": body, "more_body": True})
            cursor = end


class Collections:
    """Every garbage collection of this process since `clear`: ``[started, generation,
    seconds]``, ``started`` on the `time.perf_counter` clock (a `gc.callbacks` entry:
    two clock readings and an append per collection)."""

    def __init__(self) -> None:
        self.log: list[tuple[float, int, float]] = []
        self.started = 0.0
        gc.callbacks.append(self.observe)

    def observe(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            seconds = time.perf_counter() - self.started
            self.log.append((self.started, info["generation"], seconds))

    def clear(self) -> None:
        self.log = []


class Closures(NullMetrics):
    """A metrics hook that notes when each broadcast stream closed, by name (and
    records nothing else: its other methods are `NullMetrics`' plain no-ops, so that
    the calls made per delivery cost what a cheap hook costs)."""

    def __init__(self) -> None:
        self.closed: dict[str, list[float]] = {}

    def stream_closed(self, kind: str, name: str, duration: float, outcome: Outcome) -> None:
        self.closed.setdefault(name, []).append(time.perf_counter())


def build_app(redis_url: str | None = None, write_timeout: float = 60.0) -> Any:
    from broadcaster import Broadcast as Broadcaster
    from sse_starlette import EventSourceResponse

    from streamfx.adapters.asgi import to_asgi
    from streamfx.broadcast import Broadcast, RedisStreamsBackend
    from streamfx.metrics import set_metrics

    closures = Closures()
    set_metrics(closures)
    collections = Collections()
    backend = None if redis_url is None else RedisStreamsBackend(redis_url, prefix="bench:")
    hub = Broadcast(backend=backend, history=2000 if redis_url is None else 100)
    # broadcaster's Redis Streams backend: its pub/sub one ("redis://") delivered
    # nothing with redis-py 8 here (its listener starts before SUBSCRIBE completes,
    # finds no subscription and stops waiting for messages).
    broadcaster = Broadcaster(
        url=redis_url.replace("redis://", "redis-stream://", 1) if redis_url else "memory://"
    )
    recipe = QueueBroadcaster()
    raw = RawFanout()
    schedule = Schedule()
    tasks: set[asyncio.Task[None]] = set()

    async def run_publisher(contender: str) -> None:
        k = 1
        while k <= schedule.count:
            delay = schedule.due(k) - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.perf_counter()
            batch = 0
            due: list[Awaitable[Any]] = []
            while k <= schedule.count and schedule.due(k) <= now and batch < MAX_BATCH:
                data = payload(k, schedule.size)
                if contender == "streamfx" and redis_url is not None:
                    due.append(hub.publish(TOPIC, data))
                elif contender == "streamfx":
                    await hub.publish(TOPIC, data)
                elif contender == "sse-starlette":
                    recipe.broadcast(data)
                elif contender == "broadcaster":
                    await broadcaster.publish(TOPIC, data)
                elif contender == "raw":
                    raw.publish(data)
                k += 1
                batch += 1
            if len(due) == 1:
                await due[0]
            elif due:  # streamfx on Redis: everything due at once, not one by one
                await asyncio.gather(*due)
            if batch == MAX_BATCH:
                await asyncio.sleep(0)

    async def recipe_stream(request: Request) -> AsyncIterator[Any]:
        queue = recipe.add_client()
        try:
            while True:
                if await request.is_disconnected():
                    return
                yield await queue.get()
        finally:
            recipe.remove_client(queue)

    async def broadcaster_stream() -> AsyncIterator[str]:
        async with broadcaster.subscribe(TOPIC) as subscriber:
            async for event in subscriber:  # type: ignore[union-attr]
                if event is not None:
                    yield event.message

    async def generator_stream() -> AsyncIterator[str]:
        await schedule.started.wait()
        for k in range(1, schedule.count + 1):
            delay = schedule.due(k) - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            yield payload(k, schedule.size)

    async def answer(send: Any, status: int, body: dict[str, Any]) -> None:
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        path = scope["path"]
        query = {
            key: values[-1] for key, values in parse_qs(scope["query_string"].decode()).items()
        }
        worker = [(b"x-worker", str(os.getpid()).encode())]
        if path == "/sub/streamfx":
            headers = dict(scope["headers"])
            last = headers.get(b"last-event-id")
            response = hub.sse(
                query.get("topic", TOPIC),
                last_event_id=last.decode("latin-1") if last else None,
                name=query.get("name", ""),
            )
            response.headers += [(k.decode(), v.decode()) for k, v in worker]
            # A subscription lasts: this harness's own parsing is not held meanwhile (the
            # same in every branch), so the idle memory measured is the contender's.
            del query, worker, headers, last
            await to_asgi(response, write_timeout=write_timeout)(scope, receive, send)
        elif path == "/sub/sse-starlette":
            del query, worker
            request = Request(scope, receive)
            await EventSourceResponse(
                recipe_stream(request), headers={"x-worker": str(os.getpid())}
            )(scope, receive, send)
        elif path == "/sub/broadcaster":
            del query, worker
            headers = {"x-worker": str(os.getpid())}
            await EventSourceResponse(broadcaster_stream(), headers=headers)(scope, receive, send)
        elif path == "/sub/sse-starlette-gen":
            del query, worker
            await EventSourceResponse(generator_stream())(scope, receive, send)
        elif path == "/sub/raw":
            del query
            sse_headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
            await raw.serve(receive, send, sse_headers + worker)
        elif path == "/start":
            schedule.count = int(query["count"])
            schedule.rate = float(query["rate"])
            schedule.t0 = float(query["t0"])
            schedule.size = int(query.get("size", "64"))
            schedule.started.set()
            collections.clear()
            contender = query["contender"]
            if contender != "sse-starlette-gen":
                task = asyncio.create_task(run_publisher(contender))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await answer(send, 200, {"worker": os.getpid()})
        elif path == "/fill":
            ids = [
                await hub.publish("replay", payload(k, schedule.size))
                for k in range(1, int(query["n"]) + 1)
            ]
            await answer(send, 200, {"after": ids[-1001], "last": ids[-1]})
        elif path == "/stats":
            await answer(
                send,
                200,
                {
                    "worker": os.getpid(),
                    "streamfx": hub.subscribers,
                    "sse-starlette": len(recipe.clients),
                    "raw": raw.subscribers,
                    "closed": closures.closed,
                    "gc": collections.log,
                },
            )
        else:
            await answer(send, 404, {"error": path})

    async def lifespan(receive: Any, send: Any) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        await hub.start()
        await broadcaster.connect()
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        await hub.close(grace=0.5)
        await broadcaster.disconnect()
        await send({"type": "lifespan.shutdown.complete"})

    return app


def raise_open_files() -> None:
    """Thousands of sockets: lift the soft limit on open files to the hard one."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def redis_app() -> Any:
    """The app for ``uvicorn --workers N --factory`` (configured by the environment)."""
    raise_open_files()
    return build_app(os.environ["BENCH_REDIS"], float(os.environ.get("BENCH_WRITE_TIMEOUT", "60")))
