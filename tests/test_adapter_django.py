"""What only `streamfx.adapters.django` does: the response's ``close()``, which Django
calls, closes a body Django never iterated; an upload through Django's own handler is
received whole before the view runs, and the streaming way beside Django (the ASGI
adapter's ``parts_from_asgi`` for one path, Django for the rest) refuses an over-limit
200 MB upload within a few MB, under uvicorn with a raw client counting what it sent.
Everything every adapter does, Django's included under uvicorn and hypercorn:
tests/test_adapter_contract*.py (the app is tests/apps/django_app.py)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.signals import request_finished
from django.test import RequestFactory

from streamfx.adapters.django import to_django
from tests._client import open_raw, read_to_eof, wait_until
from tests._servers import serve
from tests._stream_routes import make_routes
from tests._upload_client import Connection, Reply, request_head
from tests.apps.django_app import beside_django, django_app
from tests.apps.tally import Tally
from tests.apps.uploads import refused_log


async def test_close_closes_a_body_django_never_iterated() -> None:
    tally = Tally()
    routes = make_routes(tally, Path())
    request = RequestFactory().get("/lines")
    in_thread = await to_django(request, routes["/lines"]({"n": "100"}, ""))
    in_loop = await to_django(request, routes["/lines"]({"n": "100"}, ""))
    assert tally.started == 2
    assert tally.finalized == 0
    await sync_to_async(in_thread.close)()  # as Django calls it
    assert tally.finalized == 1
    in_loop.close()
    await wait_until(lambda: tally.finalized == 2, "the body closed from the loop")
    in_loop.close()
    in_thread.close()
    assert tally.finalized == 2
    assert tally.closes == 2  # once each, however often close() was called


async def test_write_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="write_timeout"):
        await to_django(
            RequestFactory().get("/"),
            make_routes(Tally(), Path())["/lines"]({}, ""),
            write_timeout=0,
        )


class BodyKeepingHandler(ASGIHandler):
    """Django's ASGI handler, keeping the file each request's body was read into (a
    ``SpooledTemporaryFile``, on disk past ``FILE_UPLOAD_MAX_MEMORY_SIZE``)."""

    def __init__(self) -> None:
        super().__init__()
        self.body_files: list[Any] = []

    async def read_body(self, receive: Any) -> Any:
        body_file = await super().read_body(receive)
        self.body_files.append(body_file)
        return body_file


@pytest.mark.parametrize("path", ["/fail-after", "/fail-after?length=1000", "/sized?n=100&short=1"])
async def test_a_response_failing_after_the_start_closes_the_request_and_its_body_file(
    tmp_path: Path, path: str
) -> None:
    """Issue 15: Django's handler re-raises an error from a streaming response (the
    body's, or the server's: a body short of its ``Content-Length``) without calling
    the response's ``close()``, so the request's body file stayed open until the
    collector found it (a ``ResourceWarning``; an open descriptor for a body on disk)
    and ``request_finished`` was never sent. The response `to_django` makes closes
    itself before the error goes on."""
    finished: list[object] = []

    def on_finished(sender: object, **_: object) -> None:
        finished.append(sender)

    request_finished.connect(on_finished)
    try:
        django_app(Tally(), tmp_path)  # the views' tally and root
        handler = BodyKeepingHandler()
        async with serve(handler) as (_, port):
            with await open_raw(port, path) as sock:
                received = b""  # a reset, at most
                with contextlib.suppress(ConnectionResetError):
                    received = await read_to_eof(sock)
    finally:
        request_finished.disconnect(on_finished)
    assert not received.endswith(b"0\r\n\r\n")  # cut, never complete
    assert len(handler.body_files) == 1
    assert handler.body_files[0].closed
    assert finished == [BodyKeepingHandler]


# -- uploads: Django's own handler, and the streaming way beside it -------------------------

README = Path(__file__).resolve().parent.parent / "README.md"
MB = 1_000_000
HUGE = 200 * MB
BOUNDARY = "b0"
PART_HEAD = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="f"; filename="big.bin"\r\n'
    "Content-Type: application/octet-stream\r\n\r\n"
).encode()


def huge_body(chunked: bool) -> Iterator[bytes]:
    """A 200 MB multipart body (one file of zeros, no closing boundary: it is refused
    long before), made as it is sent; chunked framing when `chunked`."""
    piece = bytes(64 * 1024)
    left = HUGE - len(PART_HEAD)
    yield b"%x\r\n%s\r\n" % (len(PART_HEAD), PART_HEAD) if chunked else PART_HEAD
    while left > 0:
        data = piece[: min(left, len(piece))]
        left -= len(data)
        yield b"%x\r\n%s\r\n" % (len(data), data) if chunked else data
    if chunked:
        yield b"0\r\n\r\n"


def post_huge(port: int, path: str, *, chunked: bool) -> Reply:
    """POST the 200 MB body to `path` with ``max_size`` 1 MB, reading while sending."""
    extra = ["Transfer-Encoding: chunked"] if chunked else []
    head = request_head(
        f"{path}?max_size={MB}",
        None if chunked else HUGE,
        f"multipart/form-data; boundary={BOUNDARY}",
        extra,
    )
    with Connection(port) as connection:
        return connection.exchange(head, huge_body(chunked), timeout=60)


@pytest.fixture
async def beside(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    (tmp_path / "uploads").mkdir()
    async with serve(beside_django(Tally(), tmp_path)) as (_, port):
        yield port, tmp_path


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_beside_django_an_over_limit_200_mb_upload_is_refused_within_a_few_mb(
    beside: tuple[int, Path], chunked: bool
) -> None:
    port, root = beside
    reply = await asyncio.to_thread(post_huge, port, "/stream-upload", chunked=chunked)
    assert reply.status == 413, reply
    assert "max_size=1000000" in reply.text
    # declared: refused before a byte of the body is read; chunked: once 1 MB was read
    assert 0 <= reply.sent_at_answer < (1 if not chunked else 4) * MB + 512 * 1024
    assert not list((root / "uploads").iterdir())
    assert refused_log(root)[-1].startswith("UploadTooLarge: ")


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_django_itself_receives_the_whole_200_mb_before_the_view_refuses_it(
    beside: tuple[int, Path], chunked: bool
) -> None:
    """What the README documents: through Django's handler (`parts` in a view) the
    client has sent the whole body when the 413 comes."""
    port, _ = beside
    reply = await asyncio.to_thread(post_huge, port, "/upload", chunked=chunked)
    assert reply.status == 413, reply
    assert "max_size=1000000" in reply.text
    assert reply.sent_at_answer == reply.sent >= HUGE


async def test_the_readme_streaming_way_beside_django_refuses_before_the_body() -> None:
    """The README's ``asgi.py`` block, run as written under uvicorn: a declared 200 MB
    upload over its 50 MiB ``max_size`` is refused before the body is read."""
    blocks: list[str] = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    (block,) = [block for block in blocks if "django_application = get_asgi_application()" in block]
    namespace: dict[str, Any] = {"__name__": "readme_django"}
    exec(compile(block, "README", "exec"), namespace)
    async with serve(namespace["application"]) as (_, port):
        reply = await asyncio.to_thread(post_huge, port, "/upload", chunked=False)
    assert reply.status == 413, reply
    assert "max_size=52428800" in reply.text
    assert reply.sent_at_answer < 2 * MB
