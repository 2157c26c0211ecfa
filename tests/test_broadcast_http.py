"""A hub served over HTTP by uvicorn through `to_asgi`, read by a real HTTP client:
a client that reconnects with ``Last-Event-ID`` misses nothing and repeats nothing,
a client that goes away is unsubscribed, and closing the hub ends every response
cleanly with the farewell."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from streamfx import ServerSentEvent, SSEDecoder
from streamfx.adapters.asgi import to_asgi
from streamfx.broadcast import Broadcast
from tests._broadcast_metrics import Subscriptions
from tests._servers import serve


def app_for(hub: Broadcast) -> Starlette:
    async def events(request: Request) -> object:
        return to_asgi(
            hub.sse(
                request.path_params["topic"],
                last_event_id=request.headers.get("last-event-id"),
                heartbeat=None,
            )
        )

    return Starlette(routes=[Route("/events/{topic}", events)])


async def read_until(
    chunks: AsyncIterator[bytes],
    decoder: SSEDecoder,
    events: list[ServerSentEvent],
    done: Callable[[], bool],
) -> None:
    async with asyncio.timeout(10):
        while not done():
            events.extend(decoder.feed(await anext(chunks)))


async def test_a_client_that_reconnects_with_last_event_id_misses_nothing(
    subscriptions: Subscriptions,
) -> None:
    hub = Broadcast()
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    async with (
        serve(app_for(hub)) as (host, port),
        httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10) as client,
    ):
        async with client.stream("GET", "/events/job") as response:
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            chunks = response.aiter_raw()
            await read_until(chunks, decoder, events, lambda: bool(decoder.last_event_id))
            for n in range(3):
                await hub.publish("job", str(n))
            await read_until(chunks, decoder, events, lambda: len(events) == 3)
        await subscriptions.until(0)  # the server saw the client go
        for n in range(3, 6):
            await hub.publish("job", str(n))
        headers = {"last-event-id": decoder.last_event_id}
        async with client.stream("GET", "/events/job", headers=headers) as response:
            chunks = response.aiter_raw()
            await read_until(chunks, decoder, events, lambda: len(events) == 6)
            await hub.publish("job", "6")
            await read_until(chunks, decoder, events, lambda: len(events) == 7)
    assert [e.data for e in events] == [str(n) for n in range(7)], "no gap, no repeat"
    assert hub.subscribers == 0


async def test_closing_the_hub_ends_every_response_cleanly_with_the_farewell(
    subscriptions: Subscriptions,
) -> None:
    hub = Broadcast()
    async with (
        serve(app_for(hub)) as (host, port),
        httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10) as client,
    ):

        async def listen() -> list[ServerSentEvent]:
            decoder = SSEDecoder()
            received: list[ServerSentEvent] = []
            async with client.stream("GET", "/events/news") as response:
                async for chunk in response.aiter_raw():  # ends cleanly, or raises
                    received.extend(decoder.feed(chunk))
            return received

        listeners = [asyncio.create_task(listen()) for _ in range(5)]
        await subscriptions.until(5)
        await hub.publish("news", "hello")
        await hub.close(farewell=ServerSentEvent("bye", event="farewell"), grace=5)
        results = await asyncio.gather(*listeners)
    for received in results:
        assert [(e.event, e.data) for e in received] == [(None, "hello"), ("farewell", "bye")]
        assert received[-1].retry is not None and 1000 <= received[-1].retry < 2000
