"""examples/fastapi_app.py and examples/litestar_app.py serve the same routes; here
both, under uvicorn with httpx: SSE, a broadcast, exports, a download (Range, HEAD,
403/404/416) and uploads with limits, with Pydantic models (FastAPI) or dataclasses
(Litestar) as items and no ``serialize=``. What only one framework has (the API
document, mypy over the example): tests/test_fastapi.py, tests/test_litestar.py.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples import fastapi_app, litestar_app
from streamfx import ServerSentEvent, SSEDecoder
from tests._client import post_reading_early
from tests._servers import free_port, launch, serve

ROOT = Path(__file__).resolve().parent.parent
BLOCK = hashlib.sha256(b"streamfx").digest() * (1 << 15)  # the examples' 1 MiB block
MAX_SIZE = fastapi_app.MAX_SIZE
assert litestar_app.MAX_SIZE == MAX_SIZE


@pytest.fixture(params=["fastapi", "litestar"])
async def client(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """The example app of the framework named by the param, over ``tmp_path/files``
    (a 2 MiB ``data.bin``; ``tmp_path/secret.txt`` is outside the root)."""
    example = fastapi_app if request.param == "fastapi" else litestar_app
    files = tmp_path / "files"
    files.mkdir()
    example.write_file(files / "data.bin", 2)
    (tmp_path / "secret.txt").write_text("outside the root")
    async with (
        serve(example.create_app(files)) as (host, port),
        httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=30) as http,
    ):
        yield http


async def events_of(response: httpx.Response, count: int) -> list[ServerSentEvent]:
    """The first `count` events of a streamed SSE `response`."""
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    async for chunk in response.aiter_bytes():
        events += decoder.feed(chunk)
        if len(events) >= count:
            break
    return events[:count]


def json_of(event: ServerSentEvent) -> Any:
    assert event.data is not None
    return json.loads(event.data)


# -- SSE --------------------------------------------------------------------------------


async def test_sse_sends_models_as_json_and_resumes(client: httpx.AsyncClient) -> None:
    params = {"steps": 3, "interval": 0}
    async with client.stream("GET", "/job/events", params=params) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = await events_of(reply, 4)
    assert [json_of(e) for e in events[:3]] == [{"step": n, "total": 3} for n in (1, 2, 3)]
    assert (events[3].event, events[3].id) == ("done", "4")
    headers = {"Last-Event-ID": "2"}
    async with client.stream("GET", "/job/events", params=params, headers=headers) as reply:
        resumed = await events_of(reply, 2)
    assert [e.data for e in resumed] == ['{"step":3,"total":3}', "{}"]


async def test_a_broadcast_sends_a_published_model(client: httpx.AsyncClient) -> None:
    async with client.stream("GET", "/news/events") as reply:
        assert reply.status_code == 200
        chunks = reply.aiter_bytes()
        decoder = SSEDecoder()
        first = decoder.feed(await anext(chunks))  # the subscription has started
        published = await client.post("/news", json={"title": "hello"})
        assert published.status_code == 200, published.text
        events = list(first)
        while not events:
            events += decoder.feed(await anext(chunks))
    assert json_of(events[0]) == {"title": "hello", "body": ""}
    assert events[0].id == published.json()["id"]


# -- exports ------------------------------------------------------------------------------


async def test_exports_write_model_rows_in_every_format(client: httpx.AsyncClient) -> None:
    rows = 1000
    replies = {
        fmt: await client.get(f"/export/{fmt}", params={"rows": rows})
        for fmt in ("json", "ndjson", "csv")
    }
    for fmt, reply in replies.items():
        assert reply.status_code == 200, (fmt, reply.text)
        assert f'filename="orders.{fmt}"' in reply.headers["content-disposition"]
    assert replies["json"].headers["content-type"] == "application/json"
    assert replies["ndjson"].headers["content-type"] == "application/x-ndjson"
    assert replies["csv"].headers["content-type"] == "text/csv; charset=utf-8"
    as_json = replies["json"].json()
    as_ndjson = [json.loads(line) for line in replies["ndjson"].text.splitlines()]
    as_csv = list(csv.DictReader(io.StringIO(replies["csv"].text)))
    assert as_json == as_ndjson
    assert len(as_json) == len(as_csv) == rows
    first = dict(as_json[0])
    placed = datetime.datetime.fromisoformat(first.pop("placed"))
    assert first == {"id": 1, "customer": "customer-1", "amount": 79.19}
    assert placed == datetime.datetime(2024, 1, 1, 0, 1, tzinfo=datetime.UTC)
    assert as_csv[0] == {k: str(v) for k, v in as_json[0].items()}
    assert [int(row["id"]) for row in as_csv] == list(range(1, rows + 1))


async def test_an_unknown_export_format_is_refused(client: httpx.AsyncClient) -> None:
    reply = await client.get("/export/xml")
    assert reply.status_code in (404, 422)  # Litestar: the handler's 404; FastAPI: validation


# -- downloads ----------------------------------------------------------------------------


async def test_download_whole_range_and_head(client: httpx.AsyncClient, tmp_path: Path) -> None:
    data = (tmp_path / "files" / "data.bin").read_bytes()
    whole = await client.get("/files/data.bin")
    assert whole.status_code == 200
    assert hashlib.sha256(whole.content).digest() == hashlib.sha256(data).digest()
    part = await client.get("/files/data.bin", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    assert part.content == data[100:200]
    head = await client.head("/files/data.bin")
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(data))
    assert head.headers["accept-ranges"] == "bytes"
    assert head.content == b""
    unsatisfiable = await client.get("/files/data.bin", headers={"Range": f"bytes={len(data)}-"})
    assert unsatisfiable.status_code == 416


async def test_download_refusals_are_short_plain_text(client: httpx.AsyncClient) -> None:
    missing = await client.get("/files/nothing.bin")
    assert (missing.status_code, missing.text) == (404, "Not Found")
    assert missing.headers["content-type"] == "text/plain; charset=utf-8"
    outside = await client.get("/files/%2E%2E/secret.txt")
    assert (outside.status_code, outside.text) == (403, "Forbidden")
    head_missing = await client.head("/files/nothing.bin")
    assert head_missing.status_code == 404


# -- uploads ------------------------------------------------------------------------------


def multipart(*parts: tuple[str, str, str, bytes]) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body of (field, filename, type, content) parts."""
    boundary = "streamfx-test-boundary"
    body = b""
    for field, filename, content_type, content in parts:
        body += (
            (
                f"--{boundary}\r\nContent-Disposition: form-data; name={field!r}; "
                f"filename={filename!r}\r\nContent-Type: {content_type}\r\n\r\n"
            )
            .replace("'", '"')
            .encode()
            + content
            + b"\r\n"
        )
    body += f"--{boundary}--\r\n".encode()
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


async def test_an_upload_within_its_limits_is_read(client: httpx.AsyncClient) -> None:
    body, headers = multipart(("file", "notes.txt", "text/plain", b"hello" * 1000))
    reply = await client.post("/upload", content=body, headers=headers)
    assert reply.status_code == 200, reply.text
    expected: dict[str, Any] = {
        "field": "file",
        "filename": "notes.txt",
        "bytes": 5000,
        "sha256": hashlib.sha256(b"hello" * 1000).hexdigest(),
    }
    assert reply.json() == {"parts": [expected]}


async def test_an_upload_over_its_limits_is_refused_with_the_reason(
    client: httpx.AsyncClient,
) -> None:
    # read while sending, as a browser does: the refusal comes before the body is read
    port = client.base_url.port
    assert port is not None
    too_big, headers = multipart(("file", "big.txt", "text/plain", b"x" * (MAX_SIZE + 1)))
    status, answer, text = await post_reading_early(port, "/upload", too_big, headers)
    assert status == 413
    assert b"max_size" in text
    assert answer["content-type"] == "text/plain; charset=utf-8"
    # without a Content-Length the part's own limit (5 MiB) is met first, while reading
    status, _, text = await post_reading_early(port, "/upload", too_big, headers, chunked=True)
    assert status == 413
    assert b"max_part_size" in text
    wrong_type, headers = multipart(("file", "run.sh", "application/x-sh", b"echo hi"))
    unsupported = await client.post("/upload", content=wrong_type, headers=headers)
    assert unsupported.status_code == 415
    assert "application/x-sh" in unsupported.text


# -- the documented command ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["fastapi", "litestar"])
def test_the_example_runs_with_its_documented_command(name: str, tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, str(ROOT / "examples" / f"{name}_app.py")]
    argv += ["--port", str(port), "--file-mb", "1"]
    url = f"http://127.0.0.1:{port}/files/data.bin"
    env = {"PYTHONPATH": str(ROOT)}  # this checkout's streamfx, whatever is installed
    with launch(argv, url, env, log=tmp_path / "server.log"):
        reply = httpx.get(url, headers={"Range": "bytes=10-19"}, timeout=10)
    assert reply.status_code == 206
    assert reply.content == BLOCK[10:20]
