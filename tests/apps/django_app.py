"""The shared routes (tests/_stream_routes.py) behind `to_django`, served by Django's
ASGI handler. This module is also the URLconf (Django is configured on import).

The URLconf is built once per process, so the views read the running test's tally and
root from `Current`. A route's `DownloadError` becomes a body that raises it, so
`to_django` answers it with its status; ``?write_timeout=`` is passed to `to_django`.
No ``/upload``: streamfx has no upload helper for Django (Django reads the body itself).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import django
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase
from django.urls import URLPattern, path

from streamfx import DownloadError
from streamfx.adapters.django import StreamfxHttpResponse, to_django
from tests._stream_routes import make_routes, raising
from tests.apps.tally import Tally

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
        except DownloadError as exc:
            response = raising(exc)
        write_timeout = float(request.GET.get("write_timeout", "60"))
        reply = await to_django(request, response, write_timeout=write_timeout)
        assert isinstance(reply, StreamfxHttpResponse)
        return reply

    return handler


urlpatterns: list[URLPattern] = [
    path(route.lstrip("/").replace("{name}", "<str:name>"), view(route))
    for route in make_routes(Tally(), Path())
]


def django_app(tally: Tally, root: Path) -> ASGIHandler:
    Current.tally = tally
    Current.root = root
    return get_asgi_application()
