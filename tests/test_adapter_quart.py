"""`streamfx.adapters.quart.to_quart` in a Quart app under uvicorn and hypercorn."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from quart import Quart, Response, request

from streamfx import StreamResponse
from streamfx.adapters.quart import to_quart
from tests._adapter_contract import (  # noqa: F401 - the shared tests, collected here
    Running,
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
from tests._stream_routes import Route, Tally, make_routes


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> Server:
    name: Server = request.param
    return name


def quart_app(tally: Tally) -> Quart:
    app = Quart(__name__)

    def view(route: Route) -> Callable[..., Any]:
        async def handler(name: str = "") -> Response:
            response: StreamResponse = route(request.args, name)
            write_timeout = float(request.args.get("write_timeout", "60"))
            return await to_quart(response, write_timeout=write_timeout)

        return handler

    for path, route in make_routes(tally).items():
        rule = path.replace("{name}", "<name>")
        app.add_url_rule(rule, rule, view(route), methods=["GET", "HEAD"])
    return app


@contextlib.asynccontextmanager
async def running(tally: Tally, server: Server) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    async with (
        serve(quart_app(tally), server) as (host, port),
        httpx.AsyncClient(base_url=f"http://{host}:{port}") as client,
    ):
        yield client, port


@pytest.fixture
def running_app() -> Running:
    return running


async def test_write_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="write_timeout"):
        await to_quart(make_routes(Tally())["/lines"]({}, ""), write_timeout=0)
