"""The soak's Django app (`to_django`) under Django's ASGI handler, served by uvicorn,
or, with ``SOAK_IMPL=django-bare`` (a peer), a bare async view returning Django's own
``StreamingHttpResponse`` over the same source: what Django's handler costs without
streamfx. This module is also its URLconf; a small ASGI wrapper answers the lifespan
(Django's handler does not) so that SIGTERM drains open streams. Routes: see
`bench.soak.server_side`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import django
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import URLPattern, path

import streamfx
from bench.soak.server_side import (
    Params,
    configure_logging,
    install_hook,
    source,
    stats,
    streamfx_export,
    streamfx_sse,
    tasks_on,
)
from streamfx.adapters.django import to_django

configure_logging()
if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="streamfx soak",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        LOGGING_CONFIG=None,
    )
    django.setup()
BARE = os.environ.get("SOAK_IMPL") == "django-bare"


async def bare_events(params: Params) -> AsyncIterator[bytes]:
    """`source` as SSE ``data:`` events, with no heartbeat, no write timeout, no buffer."""
    async for item in source(params):
        yield f"data: {item}\n\n".encode()


async def sse_route(request: HttpRequest) -> HttpResponseBase:
    params = Params.parse(request.GET.dict())
    if BARE:
        events = bare_events(params)
        return StreamingHttpResponse(events, content_type="text/event-stream")
    return await to_django(request, streamfx_sse(params), write_timeout=params.write_timeout)


async def export_route(request: HttpRequest) -> HttpResponseBase:
    return await to_django(request, streamfx_export(request.GET.dict()))


async def hook_route(request: HttpRequest) -> HttpResponseBase:
    install_hook(request.GET.get("mode", "none"))
    return HttpResponse("ok")


async def ping(request: HttpRequest) -> HttpResponseBase:
    return HttpResponse("pong")


async def stats_route(request: HttpRequest) -> HttpResponseBase:
    return JsonResponse(stats(lambda: tasks_on(asyncio.get_running_loop())))


urlpatterns: list[URLPattern] = [
    path("sse", sse_route),
    path("export", export_route),
    path("hook", hook_route),
    path("ping", ping),
    path("stats", stats_route),
]

django_app = get_asgi_application()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                streamfx.drain_on_signals()  # uvicorn has installed its handlers by now
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await django_app(scope, receive, send)
