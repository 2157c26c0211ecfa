"""The same few routes served by every adapter under real servers, for the tests that
check that all adapters behave alike (tests/test_adapter_errors.py,
tests/test_adapter_core.py).

Every site runs in this process (so a test sees the server's log records and the
bodies' counters): ASGI (Starlette) and the Quart and Django apps under uvicorn and
hypercorn, aiohttp under its own runner, WSGI under waitress on a thread.

Routes (query parameters only, so that every router sees the same thing):

- ``GET /files?name=N``: ``download(N, root=root)``; a refusal is answered with the
  adapter's own tool: ``error_response(exc)`` (ASGI, WSGI, Quart, Django), the
  ``streamfx_errors`` middleware (aiohttp);
- ``GET /stream?name=N``: a response whose first body chunk raises that refusal;
- ``GET /fail``: a response whose first body chunk raises a `RuntimeError` naming a
  server path;
- ``GET /endless?write_timeout=T``: 64 KiB chunks for ever;
- ``GET /sized?chunks=N&write_timeout=T``: `N` chunks of 64 KiB.

The bodies count what they did in a `Counts` (``started``, ``produced``,
``finalized``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl
from wsgiref.types import StartResponse, WSGIEnvironment

import django
from aiohttp import web
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.test.utils import override_settings
from django.urls import URLPattern, path
from quart import Quart, request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from waitress.server import TcpWSGIServer, create_server

from streamfx import DownloadError, StreamResponse, download
from streamfx.adapters import aiohttp as aiohttp_adapter
from streamfx.adapters import asgi as asgi_adapter
from streamfx.adapters import django as django_adapter
from streamfx.adapters import quart as quart_adapter
from streamfx.adapters import wsgi as wsgi_adapter
from tests._servers import Server, serve

SITES = (
    "asgi-uvicorn",
    "asgi-hypercorn",
    "quart-uvicorn",
    "quart-hypercorn",
    "django-uvicorn",
    "django-hypercorn",
    "aiohttp",
    "wsgi-waitress",
)
CHUNK = 64 * 1024
PATH_IN_MESSAGE = "/srv/streamfx-secret/db.sqlite"


@dataclass
class Counts:
    started: int = 0
    produced: int = 0
    finalized: int = 0


@dataclass
class Site:
    """What the routes of one running site share."""

    root: Path
    counts: Counts

    def route(self, route_path: str, query: Mapping[str, str]) -> StreamResponse:
        """The response for `route_path`; ``/files`` raises `DownloadError` itself."""
        name = query.get("name", "")
        if route_path == "/files":
            return download(name, root=self.root)
        if route_path == "/stream":
            return _text(_refusal(name, self.root))
        if route_path == "/fail":
            return _text(_failure())
        chunks = int(query["chunks"]) if "chunks" in query else None
        return _text(_chunks(self.counts, chunks))


def write_timeout(query: Mapping[str, str]) -> float:
    return float(query.get("write_timeout", "60"))


def _text(body: AsyncIterator[bytes]) -> StreamResponse:
    return StreamResponse(200, [("content-type", "application/octet-stream")], body)


async def _refusal(name: str, root: Path) -> AsyncIterator[bytes]:
    download(name, root=root)  # refuses: the first chunk raises its error
    yield b"never"


async def _failure() -> AsyncIterator[bytes]:
    raise RuntimeError(f"could not open {PATH_IN_MESSAGE}")
    yield b""  # pragma: no cover - makes this an async generator


async def _chunks(counts: Counts, total: int | None) -> AsyncIterator[bytes]:
    counts.started += 1
    try:
        sent = 0
        while total is None or sent < total:
            counts.produced += 1
            sent += 1
            yield b"x" * CHUNK
            await asyncio.sleep(0)  # a failing test must end, not spin
    finally:
        counts.finalized += 1


# -- the sites ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(name: str, site: Site) -> AsyncIterator[str]:
    """Serve `site`'s routes with the adapter and server `name` (one of `SITES`);
    yields the base URL."""
    adapter, _, server = name.partition("-")
    if adapter == "aiohttp":
        async with _serve_aiohttp(site) as url:
            yield url
    elif adapter == "wsgi":
        async with _serve_waitress(site) as url:
            yield url
    else:
        app = {"asgi": _starlette_app, "quart": _quart_app, "django": _django_app}[adapter](site)
        async with contextlib.AsyncExitStack() as stack:
            if adapter == "django":
                stack.enter_context(override_settings(ROOT_URLCONF=__name__))
                _Current.site = site
            server_name: Server = "uvicorn" if server == "uvicorn" else "hypercorn"
            host, port = await stack.enter_async_context(serve(app, server_name))
            yield f"http://{host}:{port}"


def _starlette_app(site: Site) -> Starlette:
    def view(route_path: str) -> Callable[[Request], Awaitable[Any]]:
        async def endpoint(request: Request) -> Any:
            query = request.query_params
            try:
                response = site.route(route_path, query)
            except DownloadError as exc:
                return asgi_adapter.error_response(exc)
            return asgi_adapter.to_asgi(response, write_timeout=write_timeout(query))

        return endpoint

    return Starlette(routes=[Route(route, view(route)) for route in ROUTES])


def _quart_app(site: Site) -> Quart:
    app = Quart(__name__)

    def view(route_path: str) -> Callable[[], Awaitable[Any]]:
        async def endpoint() -> Any:
            query = request.args
            try:
                response = site.route(route_path, query)
            except DownloadError as exc:
                return quart_adapter.error_response(exc)
            return await quart_adapter.to_quart(response, write_timeout=write_timeout(query))

        return endpoint

    for route in ROUTES:
        app.add_url_rule(route, route, view(route))
    return app


class _Current:
    """The site the Django views serve (the URLconf is this module, built once)."""

    site = Site(Path(), Counts())


def _django_view(route_path: str) -> Callable[..., Any]:
    async def view(request: HttpRequest) -> HttpResponseBase:
        query = request.GET.dict()
        try:
            response = _Current.site.route(route_path, query)
        except DownloadError as exc:
            return django_adapter.error_response(exc)
        return await django_adapter.to_django(request, response, write_timeout=write_timeout(query))

    return view


ROUTES = ("/files", "/stream", "/fail", "/endless", "/sized")
urlpatterns: list[URLPattern] = [path(route.lstrip("/"), _django_view(route)) for route in ROUTES]


def _django_app(site: Site) -> Any:
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
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


@contextlib.asynccontextmanager
async def _serve_aiohttp(site: Site) -> AsyncIterator[str]:
    async def handler(request: web.Request) -> web.StreamResponse:
        query = request.query
        response = site.route(request.path, query)  # DownloadError: the middleware answers
        timeout = write_timeout(query)
        return await aiohttp_adapter.to_aiohttp(request, response, write_timeout=timeout)

    app = web.Application(middlewares=[aiohttp_adapter.streamfx_errors])
    for route in ROUTES:
        app.router.add_get(route, handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def _serve_waitress(site: Site) -> AsyncIterator[str]:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
        try:
            response = site.route(environ["PATH_INFO"], query)
        except DownloadError as exc:
            return wsgi_adapter.error_response(exc)(environ, start_response)
        stream = wsgi_adapter.to_wsgi(response, write_timeout=write_timeout(query))
        return stream(environ, start_response)

    server = create_server(
        app,
        host="127.0.0.1",
        port=0,
        threads=8,
        outbuf_high_watermark=256 * 1024,
        expose_tracebacks=False,
    )
    assert isinstance(server, TcpWSGIServer)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        # The request threads first (they finish what they are doing), then the socket.
        await asyncio.to_thread(server.task_dispatcher.shutdown)
        server.close()
        await asyncio.to_thread(thread.join, 5)
