"""What only `streamfx.adapters.quart` does: the README's Quart example under uvicorn;
`parts` refusing a declared length before the body, a silent client (408) and Quart's
own ``MAX_CONTENT_LENGTH`` (413), under uvicorn with a raw client. Everything every
adapter does, Quart's included under uvicorn and hypercorn:
tests/test_adapter_contract*.py (the app is tests/apps/quart_app.py)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from quart import Quart, request

from streamfx import StreamfxError
from streamfx.adapters.quart import error_response, parts, to_quart
from tests._servers import serve
from tests._stream_routes import make_routes
from tests._upload_client import Connection, request_head
from tests.apps.tally import Tally

README = Path(__file__).resolve().parent.parent / "README.md"


async def test_write_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="write_timeout"):
        await to_quart(make_routes(Tally(), Path())["/lines"]({}, ""), write_timeout=0)


def readme_block(marker: str) -> str:
    """The README's Python code block that holds `marker`."""
    blocks: list[str] = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    (block,) = [block for block in blocks if marker in block]
    return block


async def test_the_readme_quart_example_answers_a_missing_file_404_and_takes_uploads(
    tmp_path: Path,
) -> None:
    """The README's Quart block, run as written (``feed`` is the one name it leaves to
    the reader; its ``/srv/files`` is a folder here), under uvicorn: ``download()``
    raises before `to_quart` runs, and the error handler it registers answers 404, not
    a 500 with a traceback."""
    block = readme_block("from streamfx.adapters.quart import")
    assert '"/srv/files"' in block
    block = block.replace('"/srv/files"', repr(str(tmp_path)))
    # __name__: Quart(__name__) looks for the module's folder; this one has one
    namespace: dict[str, Any] = {"feed": lambda: iter(()), "__name__": __name__}
    exec(compile(block, "README", "exec"), namespace)
    app = namespace["app"]
    async with (
        serve(app) as (_, port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
    ):
        missing = await client.get("/files/missing.bin")
        assert (missing.status_code, missing.text) == (404, "Not Found")
        assert missing.headers["content-type"] == "text/plain; charset=utf-8"
        (tmp_path / "here.txt").write_bytes(b"content")
        found = await client.get("/files/here.txt")
        assert (found.status_code, found.content) == (200, b"content")
        body = b'--b0\r\nContent-Disposition: form-data; name="a"\r\n\r\nhello\r\n--b0--\r\n'
        headers = {"Content-Type": "multipart/form-data; boundary=b0"}
        stored = await client.post("/upload", content=body, headers=headers)
        assert (stored.status_code, stored.text) == (200, "stored")
        refused = await client.post("/upload", content=b"{}", headers={"Content-Type": "x/y"})
        assert refused.status_code == 415


# -- uploads: what Quart's `parts` adds to the contract's rows -------------------------------

UPLOAD_HEAD = (
    b'--b0\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n'
    b"Content-Type: application/octet-stream\r\n\r\n"
)


def upload_app(**options: Any) -> Quart:
    """A Quart app whose ``POST /upload`` counts the bytes of its parts, with `options`
    passed to `parts` (1 MB limits unless given); ``app.config`` set by the caller."""
    app = Quart(__name__)
    app.register_error_handler(StreamfxError, error_response)
    limits = {"max_size": 1_000_000, "max_part_size": 1_000_000, "max_parts": 5, **options}

    @app.post("/upload")
    async def upload() -> str:
        received = 0
        async with parts(request, **limits) as stream:
            async for part in stream:
                async for chunk in part:
                    received += len(chunk)
        return str(received)

    return app


async def test_a_declared_length_over_max_size_is_refused_before_the_body() -> None:
    async with serve(upload_app()) as (_, port):
        head = request_head("/upload", 200_000_000, "multipart/form-data; boundary=b0")
        with Connection(port) as connection:
            reply = await asyncio.to_thread(connection.exchange, head, (), timeout=10)
    assert reply.status == 413, reply
    assert "its Content-Length is 200000000" in reply.text
    assert reply.headers["connection"] == "close"  # the rest is not read


async def test_a_silent_uploader_is_refused_with_408() -> None:
    async with serve(upload_app(read_timeout=0.5)) as (_, port):
        head = request_head("/upload", 10_000, "multipart/form-data; boundary=b0")
        with Connection(port) as connection:  # sends the head and 100 bytes, then nothing
            reply = await asyncio.to_thread(
                connection.exchange, head, [UPLOAD_HEAD + b"x" * 100], timeout=10
            )
    assert reply.status == 408, reply
    assert "read_timeout=0.5" in reply.text


async def test_quarts_max_content_length_is_an_upload_too_large() -> None:
    app = upload_app(max_size=10_000_000, max_part_size=10_000_000)
    app.config["MAX_CONTENT_LENGTH"] = 100_000
    body = UPLOAD_HEAD + b"x" * 200_000 + b"\r\n--b0--\r\n"
    async with (
        serve(app) as (_, port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
    ):
        headers = {"Content-Type": "multipart/form-data; boundary=b0"}
        refused = await client.post("/upload", content=body, headers=headers)
        within = await client.post(
            "/upload", content=body[:50_000] + b"\r\n--b0--\r\n", headers=headers
        )
    assert refused.status_code == 413
    assert "MAX_CONTENT_LENGTH" in refused.text
    assert (within.status_code, within.text) == (200, str(50_000 - len(UPLOAD_HEAD)))
