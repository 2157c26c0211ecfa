"""The shared routes (tests/_stream_routes.py) behind `to_django`, served by Django's
ASGI handler. This module is also the URLconf (Django is configured on import).

The URLconf is built once per process, so the views read the running test's tally and
root from `Current`. A route's `StreamfxError` raised before a response exists
(``download()`` refusing a path) is answered with ``error_response`` in the view (the
Django idiom the README shows); ``?write_timeout=`` is passed to `to_django`.
``POST /upload`` stores the parts of `streamfx.adapters.django.parts`
(tests/apps/uploads.py); Django's handler has read the whole body before the view runs.

`beside_django(tally, root)`: the streaming way the README shows for Django, an ASGI
app that serves ``POST /stream-upload`` with `streamfx.adapters.asgi.parts_from_asgi`
(the body read only as the parts are consumed) and hands every other request to
Django's application.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import django
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.urls import URLPattern, path

from streamfx import StreamfxError, StreamResponse, UploadError
from streamfx.adapters import asgi as asgi_adapter
from streamfx.adapters.asgi import Receive, Scope, Send
from streamfx.adapters.django import StreamfxHttpResponse, error_response, parts, to_django
from tests._stream_routes import make_routes, once
from tests.apps.tally import Tally
from tests.apps.uploads import Upload, limits

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="streamfx tests",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
    )
    django.setup()


class Current:
    """The tally and root of the running test."""

    tally = Tally()
    root = Path()


def view(route_path: str) -> Callable[..., Any]:
    async def handler(request: HttpRequest, name: str = "") -> HttpResponseBase:
        route = make_routes(Current.tally, Current.root)[route_path]
        try:
            response = route(request.GET.dict(), name)
        except StreamfxError as exc:
            return error_response(exc)
        write_timeout = float(request.GET.get("write_timeout", "60"))
        reply = await to_django(request, response, write_timeout=write_timeout)
        assert isinstance(reply, StreamfxHttpResponse)
        return reply

    return handler


async def upload(request: HttpRequest) -> HttpResponseBase:
    store = Upload(Current.root, Current.tally)
    try:
        async with parts(request, **limits(request.GET.dict())) as stream:
            result = await store.store_async(stream)
    except UploadError as exc:
        store.refuse(exc)
        return error_response(exc)
    return JsonResponse(result)


urlpatterns: list[URLPattern] = [
    path(route.lstrip("/").replace("{name}", "<str:name>"), view(route))
    for route in make_routes(Tally(), Path())
]
urlpatterns.append(path("upload", upload))


def beside_django(tally: Tally, root: Path) -> Callable[[Scope, Receive, Send], Any]:
    """Django's application, with ``POST /stream-upload`` served by the ASGI adapter."""
    django_application: Any = django_app(tally, root)  # typed for WSGI-style dict scopes

    async def stream_upload(scope: Scope, receive: Receive, send: Send) -> None:
        store = Upload(root, tally)
        query = dict(parse_qsl(scope["query_string"].decode()))
        try:
            async with asgi_adapter.parts_from_asgi(scope, receive, **limits(query)) as stream:
                result = await store.store_async(stream)
            body = once(json.dumps(result).encode())
            reply = asgi_adapter.to_asgi(
                StreamResponse(200, [("content-type", "application/json")], body)
            )
        except UploadError as exc:
            store.refuse(exc)
            reply = asgi_adapter.error_response(exc)
        await reply(scope, receive, send)

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/stream-upload":
            await stream_upload(scope, receive, send)
        else:
            await django_application(scope, receive, send)

    return application


def django_app(tally: Tally, root: Path) -> ASGIHandler:
    Current.tally = tally
    Current.root = root
    return get_asgi_application()
