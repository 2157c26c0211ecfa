"""An app for the broadcast HTTP tests: one hub, an SSE route and a publish route.

With ``STREAMFX_REDIS_URL`` set the hub runs on `RedisStreamsBackend` (with
``STREAMFX_REDIS_PREFIX``), so that several ``uvicorn --workers`` processes share its
topics; without it, in process. Every response says which process served it
(``x-worker``), and a publish Redis could not take is answered 503.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import streamfx
from streamfx.adapters.asgi import to_asgi
from streamfx.broadcast import Broadcast, BroadcastError, RedisStreamsBackend

WORKER = str(os.getpid())


def make_hub() -> Broadcast:
    url = os.environ.get("STREAMFX_REDIS_URL")
    if not url:
        return Broadcast()
    prefix = os.environ.get("STREAMFX_REDIS_PREFIX", "streamfx:")
    return Broadcast(backend=RedisStreamsBackend(url, prefix=prefix))


hub = make_hub()


async def events(request: Request) -> object:
    response = hub.sse(
        request.path_params["topic"],
        last_event_id=request.headers.get("last-event-id"),
        heartbeat=float(request.query_params.get("heartbeat", "15")),
    )
    response.headers.append(("x-worker", WORKER))
    return to_asgi(response)


async def publish(request: Request) -> Response:
    data = (await request.body()).decode()
    try:
        event_id = await hub.publish(request.path_params["topic"], data)
    except BroadcastError as exc:
        return JSONResponse({"error": str(exc), "worker": WORKER}, status_code=503)
    return JSONResponse({"id": event_id, "worker": WORKER})


async def health(request: Request) -> Response:
    return JSONResponse({"healthy": hub.healthy, "worker": WORKER})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with hub:
        streamfx.drain_on_signals()  # uvicorn has installed its handlers by now
        yield


app = Starlette(
    routes=[
        Route("/events/{topic}", events),
        Route("/publish/{topic}", publish, methods=["POST"]),
        Route("/health", health),
    ],
    lifespan=lifespan,
)
