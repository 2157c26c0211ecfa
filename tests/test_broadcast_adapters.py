"""A hub served by every adapter, under real servers, read by a real HTTP client.

For each site (Starlette under uvicorn, Quart under hypercorn, Django under uvicorn,
aiohttp under its runner, Flask under waitress and under gunicorn's gthread worker):
two subscribers get the same events in the same order; a client that leaves is
unsubscribed (the hub's `subscribers` and the metrics hook's ``stream_closed`` say
so); a reconnect with the last id misses nothing and repeats nothing.

The ASGI and aiohttp sites run in the test's loop, so the test publishes with ``await
hub.publish``. Under WSGI the bodies run on `background_loop()`, which is the loop
the hub belongs to: the test publishes through a sync Flask view that hands the
publish to that loop (``run_coroutine_threadsafe(...).result()``), the way README's
Broadcast section says a WSGI app must (tests/apps/broadcast_wsgi_app.py). Under
gunicorn the hub is in the server's process: the app's ``/subscribers`` route reports
its counts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiohttp import web
from django.core.asgi import get_asgi_application
from django.http import HttpRequest, HttpResponseBase
from django.test.utils import override_settings
from django.urls import URLPattern, path
from quart import Quart
from quart import request as quart_request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from streamfx import ServerSentEvent, SSEDecoder
from streamfx.adapters.aiohttp import to_aiohttp
from streamfx.adapters.asgi import to_asgi
from streamfx.adapters.django import to_django
from streamfx.adapters.quart import to_quart
from streamfx.adapters.wsgi import background_loop
from streamfx.broadcast import Broadcast, RedisStreamsBackend
from streamfx.metrics import set_metrics
from tests._broadcast_metrics import Subscriptions
from tests._redis import RedisServer, redis_prefix, redis_server
from tests._servers import (
    Server,
    gunicorn_command,
    launch,
    listening_socket,
    serve,
    serve_aiohttp,
    serve_waitress,
)
from tests.apps.broadcast_wsgi_app import HEARTBEAT, create_app
from tests.apps.broadcast_wsgi_app import Subscriptions as WSGISubscriptions

__all__ = ["redis_prefix", "redis_server"]  # fixtures

SITES = (
    "asgi-uvicorn",
    "quart-hypercorn",
    "django-uvicorn",
    "aiohttp",
    "flask-waitress",
    "flask-gunicorn-gthread",
)


Counts = tuple[int, int]  # the hub's subscribers, subscriptions closed so far


@dataclass
class Site:
    """One running site: its base URL, how the test publishes to it, and `until(n)`:
    waits until `n` subscriptions are open, then gives the `Counts`."""

    url: str
    publish: Callable[[str, str], Awaitable[str]]
    until: Callable[[int], Awaitable[Counts]]


def counted(hub: Broadcast, subscriptions: Subscriptions) -> Callable[[int], Awaitable[Counts]]:
    async def until(count: int) -> Counts:
        await subscriptions.until(count)
        return hub.subscribers, subscriptions.closed

    return until


def sse_for(hub: Broadcast, topic: str, last_event_id: str | None) -> Any:
    return hub.sse(topic, last_event_id=last_event_id, heartbeat=HEARTBEAT)


@contextlib.asynccontextmanager
async def running(name: str, subscriptions: Subscriptions) -> AsyncIterator[Site]:
    """Serve ``GET /events/<topic>`` with the adapter and server `name` (one of `SITES`)."""
    if name.startswith("flask-"):
        async with serve_flask(name) as url, over_http(url) as flask_site:
            yield flask_site
        return
    hub = Broadcast()
    if name == "aiohttp":
        async with serve_aiohttp(aiohttp_app(hub)) as (host, port):
            yield Site(f"http://{host}:{port}", hub.publish, counted(hub, subscriptions))
        return
    async with contextlib.AsyncExitStack() as stack:
        if name == "asgi-uvicorn":
            app: Any = starlette_app(hub)
        elif name == "quart-hypercorn":
            app = quart_app(hub)
        else:
            app = django_app()
            stack.enter_context(override_settings(ROOT_URLCONF=__name__))
            stack.enter_context(_django_hub(hub))
        server: Server = "hypercorn" if name.endswith("hypercorn") else "uvicorn"
        host, port = await stack.enter_async_context(serve(app, server))
        yield Site(f"http://{host}:{port}", hub.publish, counted(hub, subscriptions))


@contextlib.asynccontextmanager
async def over_http(url: str) -> AsyncIterator[Site]:
    """The site at `url` served by tests/apps/broadcast_wsgi_app.py: publishing and
    counting through its routes."""
    async with httpx.AsyncClient(base_url=url, timeout=20) as http:

        async def publish_over_http(topic: str, item: str) -> str:
            answer = await http.post(f"/publish/{topic}", content=item)
            answer.raise_for_status()
            return answer.text

        async def until_over_http(count: int) -> Counts:
            answer = await http.get("/subscribers", params={"until": count})
            figures = answer.raise_for_status().json()
            return figures["subscribers"], figures["closed"]

        yield Site(url, publish_over_http, until_over_http)


@contextlib.asynccontextmanager
async def serve_flask(name: str, hub: Broadcast | None = None) -> AsyncIterator[str]:
    """tests/apps/broadcast_wsgi_app.py under waitress (in this process, serving `hub`,
    counted by the app's own watch, made the metrics hook meanwhile) or gunicorn's
    gthread worker (its own hub)."""
    if name == "flask-waitress":
        watch = WSGISubscriptions()
        previous = set_metrics(watch)
        try:
            app = create_app(Broadcast() if hub is None else hub, watch)
            async with serve_waitress(app) as (host, port):
                yield f"http://{host}:{port}"
        finally:
            set_metrics(previous)
        return
    sock = listening_socket()
    port = sock.getsockname()[1]
    argv = gunicorn_command(
        sock.fileno(), "gthread", "tests.apps.broadcast_wsgi_app:app_from_env()", preload=True
    )
    ready = f"http://127.0.0.1:{port}/subscribers?until=0"
    try:
        with launch(argv, ready, pass_fds=[sock.fileno()]):
            sock.close()
            yield f"http://127.0.0.1:{port}"
    finally:
        sock.close()


def starlette_app(hub: Broadcast) -> Starlette:
    async def events(request: Request) -> Any:
        last_id = request.headers.get("last-event-id")
        return to_asgi(sse_for(hub, request.path_params["topic"], last_id))

    return Starlette(routes=[Route("/events/{topic}", events)])


def quart_app(hub: Broadcast) -> Quart:
    app = Quart(__name__)

    @app.route("/events/<topic>")
    async def events(topic: str) -> Any:
        last_id = quart_request.headers.get("last-event-id")
        return await to_quart(sse_for(hub, topic, last_id))

    return app


def aiohttp_app(hub: Broadcast) -> web.Application:
    async def events(request: web.Request) -> web.StreamResponse:
        last_id = request.headers.get("last-event-id")
        return await to_aiohttp(request, sse_for(hub, request.match_info["topic"], last_id))

    app = web.Application()
    app.router.add_get("/events/{topic}", events)
    return app


class _DjangoHub:
    """The hub the Django view serves (the URLconf is this module, built once)."""

    hub: Broadcast | None = None


@contextlib.contextmanager
def _django_hub(hub: Broadcast) -> Iterator[None]:
    _DjangoHub.hub = hub
    try:
        yield
    finally:
        _DjangoHub.hub = None


async def _django_events(request: HttpRequest, topic: str) -> HttpResponseBase:
    hub = _DjangoHub.hub
    assert hub is not None
    last_id = request.headers.get("last-event-id")
    return await to_django(request, sse_for(hub, topic, last_id))


urlpatterns: list[URLPattern] = [path("events/<str:topic>", _django_events)]


def django_app() -> Any:
    import tests.apps.django_app  # noqa: F401 - configures Django (once per process)

    return get_asgi_application()


# -- reading ----------------------------------------------------------------------


class Reader:
    """One client's stream: the events decoded so far."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self.chunks = chunks
        self.decoder = SSEDecoder()
        self.events: list[ServerSentEvent] = []

    async def until(self, done: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while not done():
                self.events.extend(self.decoder.feed(await anext(self.chunks)))

    async def started(self) -> None:
        """Until the start (which always names the position) has arrived."""
        await self.until(lambda: bool(self.decoder.last_event_id))

    async def until_count(self, count: int) -> None:
        await self.until(lambda: len(self.events) >= count)

    def data(self) -> list[str | None]:
        return [e.data for e in self.events]


@pytest.fixture(params=SITES)
async def site(request: pytest.FixtureRequest, subscriptions: Subscriptions) -> AsyncIterator[Site]:
    async with running(request.param, subscriptions) as running_site:
        yield running_site


async def test_two_subscribers_get_the_same_events_in_order(site: Site) -> None:
    async with (
        httpx.AsyncClient(base_url=site.url, timeout=10) as client,
        client.stream("GET", "/events/room") as first,
        client.stream("GET", "/events/room") as second,
    ):
        assert first.headers["content-type"] == "text/event-stream; charset=utf-8"
        readers = [Reader(first.aiter_raw()), Reader(second.aiter_raw())]
        for reader in readers:
            await reader.started()
        assert await site.until(2) == (2, 0)
        ids = [await site.publish("room", f"message {n}") for n in range(5)]
        for reader in readers:
            await reader.until_count(5)
    expected = [f"message {n}" for n in range(5)]
    assert [reader.data() for reader in readers] == [expected, expected]
    assert [[e.id for e in reader.events] for reader in readers] == [ids, ids]
    assert await site.until(0) == (0, 2), "both clients left: both unsubscribed"


async def test_a_client_that_leaves_is_unsubscribed_and_resumes_without_gap(site: Site) -> None:
    await leave_and_resume(site)


async def test_a_redis_hub_started_on_the_background_loop_serves_wsgi(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    """README: under WSGI a hub on Redis is started (and closed) on `background_loop()`,
    where its reader, its publishes and its subscribers then all run."""
    hub = Broadcast(backend=RedisStreamsBackend(redis_server.url, prefix=redis_prefix))
    loop = background_loop()
    await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(hub.start(), loop))
    try:
        async with serve_flask("flask-waitress", hub) as url, over_http(url) as site:
            await leave_and_resume(site)
    finally:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(hub.close(), loop))


async def leave_and_resume(site: Site) -> None:
    """A client reads three events and leaves (unsubscribed), three more are published,
    it comes back with its last id: it gets those three and the live one, no reset."""
    async with httpx.AsyncClient(base_url=site.url, timeout=10) as client:
        async with client.stream("GET", "/events/job") as response:
            reader = Reader(response.aiter_raw())
            await reader.started()
            assert await site.until(1) == (1, 0)
            for n in range(3):
                await site.publish("job", str(n))
            await reader.until_count(3)
        assert await site.until(0) == (0, 1), "the server saw the client go"
        for n in range(3, 6):  # published while nobody listens
            await site.publish("job", str(n))
        headers = {"last-event-id": reader.decoder.last_event_id}
        async with client.stream("GET", "/events/job", headers=headers) as response:
            reader.chunks = response.aiter_raw()
            await reader.until_count(6)
            await site.publish("job", "6")
            await reader.until_count(7)
        assert await site.until(0) == (0, 2)
    assert reader.data() == [str(n) for n in range(7)], "no gap, no repeat"
    assert [e.event for e in reader.events] == [None] * 7, "no reset"


async def first_chunk(body: AsyncIterator[bytes]) -> bytes:
    return await anext(body)


def test_a_publish_from_another_loop_is_refused_while_subscribers_wait() -> None:
    """The WSGI trap: a sync view that runs ``asyncio.run(hub.publish(...))`` publishes
    from its own loop, which cannot wake subscribers waiting on `background_loop()`
    (they got the event only when something else woke that loop). It is refused, and
    nothing is published; the supported way (README) delivers at once."""
    hub = Broadcast()
    loop = background_loop()

    def submit(step: Awaitable[Any]) -> concurrent.futures.Future[Any]:
        async def run() -> Any:
            return await step

        return asyncio.run_coroutine_threadsafe(run(), loop)

    def on_loop(step: Awaitable[Any]) -> Any:
        return submit(step).result(timeout=5)

    body = hub.subscribe("news", heartbeat=None)
    on_loop(anext(body))  # the start: the subscriber now waits on the background loop
    with pytest.raises(RuntimeError, match="another event loop"):
        asyncio.run(hub.publish("news", "from the wrong loop"))
    with pytest.raises(RuntimeError, match="another event loop"):
        asyncio.run(first_chunk(hub.subscribe("news")))  # nor may a subscriber from there
    assert hub.subscribers == 1
    waiting = submit(anext(body))
    event_id = on_loop(hub.publish("news", "handed to the loop"))
    assert event_id.endswith("-1"), "the refused publish took no id"
    assert waiting.result(timeout=5) == f"data: handed to the loop\nid: {event_id}\n\n".encode()
    on_loop(body.aclose())  # type: ignore[attr-defined]
    assert hub.subscribers == 0
    assert asyncio.run(hub.publish("news", "nobody follows")).endswith("-2"), (
        "a hub nobody follows belongs to no loop"
    )
