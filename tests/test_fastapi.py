"""FastAPI first-class (issue 12): examples/fastapi_app.py, typed and documented, under
uvicorn with httpx (its routes at work: tests/test_fastapi_litestar_examples.py).

- ``mypy --strict`` accepts the example's natural annotations (``-> Response``,
  ``-> StreamingASGIResponse``): `to_asgi` was typed as returning a bare ASGI callable,
  so ``-> Response`` failed, and ``-> ASGIApp`` made ``/openapi.json`` answer 500.
- ``/openapi.json`` is valid OpenAPI (openapi-spec-validator) and lists each stream's
  media type instead of ``application/json``; HEAD on a download is its own operation,
  so no "Duplicate Operation ID" warning (which, with warnings as errors, would be a
  500 here).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from examples.fastapi_app import create_app
from streamfx.adapters.asgi import openapi
from tests._mypy import assert_mypy_strict_passes
from tests._servers import serve


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve(create_app(tmp_path)) as (host, port),
        httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=30) as http,
    ):
        yield http


# -- types and the API document ------------------------------------------------------------


def test_the_example_passes_mypy_strict() -> None:
    assert_mypy_strict_passes("examples/fastapi_app.py")


async def test_openapi_json_is_valid_and_names_each_stream_s_media_type(
    client: httpx.AsyncClient,
) -> None:
    reply = await client.get("/openapi.json")
    assert reply.status_code == 200, reply.text
    document = reply.json()
    validate(document)

    def content(path: str, method: str = "get", status: str = "200") -> list[str]:
        return list(document["paths"][path][method]["responses"][status].get("content", {}))

    assert content("/job/events") == ["text/event-stream"]
    assert content("/news/events") == ["text/event-stream"]
    assert content("/export/{fmt}") == ["application/json", "application/x-ndjson", "text/csv"]
    assert content("/files/{name}") == ["application/octet-stream"]
    assert content("/files/{name}", "head") == []
    for status in ("403", "404", "416"):
        assert content("/files/{name}", status=status) == ["text/plain"]
    for status in ("400", "408", "413", "415"):
        assert content("/upload", "post", status) == ["text/plain"]
    assert content("/upload", "post") == ["application/json"]  # it answers JSON itself
    operations = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(operations) == len(set(operations))


# -- openapi() ----------------------------------------------------------------------------


def test_openapi_lists_media_types_and_errors() -> None:
    assert openapi("text/event-stream", "text/csv", description="Rows", errors=(404,)) == {
        200: {
            "description": "Rows",
            "content": {
                "text/event-stream": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        },
        404: {
            "description": "Not Found",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
    }
    assert list(openapi(errors=[413, 415])) == [413, 415]  # a JSON route's refusals only
    assert list(openapi("application/pdf", status=206)) == [206]


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((), {}, ValueError),
        (("text",), {}, ValueError),
        (("text/csv; charset=utf-8",), {}, ValueError),
        (("text/csv/x",), {}, ValueError),
        (("text/ csv",), {}, ValueError),
        (("text/csv\r\nx: y",), {}, ValueError),
        (("text/csv",), {"status": 404}, ValueError),
        (("text/csv",), {"errors": (200,)}, ValueError),
        (("text/csv",), {"errors": 404}, TypeError),
        (("text/csv",), {"errors": ("404",)}, TypeError),
        ((b"text/csv",), {}, TypeError),
        (("text/csv",), {"status": True}, TypeError),
    ],
)
def test_openapi_refuses_what_is_not_a_description(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        openapi(*args, **kwargs)
