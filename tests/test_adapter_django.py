"""`streamfx.adapters.django.to_django` in a Django app served by Django's ASGI handler
under uvicorn and hypercorn. This module is also the app's URLconf."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import django
import httpx
import pytest
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.http import HttpRequest, HttpResponseBase
from django.test import RequestFactory
from django.urls import URLPattern, path

from streamfx.adapters.django import StreamfxHttpResponse, to_django
from tests._adapter_contract import (  # noqa: F401 - the shared tests, collected here
    Running,
    settle,
    test_a_client_that_stops_reading_is_gone_after_the_write_timeout,
    test_clients_disconnecting_mid_stream,
    test_download_range_conditional_head,
    test_each_export_format,
    test_error_after_start_never_looks_complete,
    test_error_before_start_is_500_or_its_status,
    test_sse_with_heartbeats,
    test_streams_whole_body_and_closes,
)
from tests._servers import SERVERS, Server, serve
from tests._stream_routes import Tally, make_routes

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


# Django's ASGIHandler re-raises an error from a streaming body (which is what aborts the
# connection) without closing the request's SpooledTemporaryFile; Python warns when that
# file is collected. Django's leak, not streamfx's: the streamfx body is closed (the
# tests count its finalizers). Only that warning is ignored.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function SpooledTemporaryFile.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)


class Current:
    """The tally of the running test (the URLconf is built once per process)."""

    tally = Tally()


def view(route_path: str) -> Callable[..., Any]:
    async def handler(request: HttpRequest, name: str = "") -> HttpResponseBase:
        route = make_routes(Current.tally)[route_path]
        write_timeout = float(request.GET.get("write_timeout", "60"))
        reply = await to_django(
            request, route(request.GET.dict(), name), write_timeout=write_timeout
        )
        assert isinstance(reply, StreamfxHttpResponse)
        return reply

    return handler


urlpatterns: list[URLPattern] = [
    path(route.lstrip("/").replace("{name}", "<str:name>"), view(route))
    for route in make_routes(Tally())
]


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> Server:
    name: Server = request.param
    return name


@contextlib.asynccontextmanager
async def running(tally: Tally, server: Server) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    Current.tally = tally
    async with (
        serve(get_asgi_application(), server) as (host, port),
        httpx.AsyncClient(base_url=f"http://{host}:{port}") as client,
    ):
        yield client, port


@pytest.fixture
def running_app() -> Running:
    return running


async def test_close_closes_a_body_django_never_iterated() -> None:
    from asgiref.sync import sync_to_async

    tally = Tally()
    routes = make_routes(tally)
    request = RequestFactory().get("/lines")
    in_thread = await to_django(request, routes["/lines"]({"n": "100"}, ""))
    in_loop = await to_django(request, routes["/lines"]({"n": "100"}, ""))
    assert tally.started == 2
    assert tally.finalized == 0
    await sync_to_async(in_thread.close)()  # as Django calls it
    assert tally.finalized == 1
    in_loop.close()
    await settle(lambda: tally.finalized == 2)
    in_loop.close()
    in_thread.close()
    assert tally.finalized == 2


async def test_write_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="write_timeout"):
        await to_django(
            RequestFactory().get("/"),
            make_routes(Tally())["/lines"]({}, ""),
            write_timeout=0,
        )
