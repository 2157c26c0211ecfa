"""The soak's Django app (`to_django`) under Django's ASGI handler, served by uvicorn.
This module is also its URLconf; a small ASGI wrapper answers the lifespan (Django's
handler does not) so that SIGTERM drains open streams. Routes: see
`bench.soak.server_side`."""

from __future__ import annotations

import asyncio
from typing import Any

import django
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.urls import URLPattern, path

import streamfx
from bench.soak.server_side import (
    Params,
    configure_logging,
    install_hook,
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


async def sse_route(request: HttpRequest) -> HttpResponseBase:
    params = Params.parse(request.GET.dict())
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
