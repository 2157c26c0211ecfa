"""sse() vs the common hand-written recipe and vs sse-starlette, per event, same run.

The recipe is what an SSE endpoint usually looks like without a library: an async
generator that formats each item with an f-string and yields one ``bytes`` per event
(one write per event). `sse()` runs the same source through its bounded buffer and
batching encoder. Both are driven by iterating the body directly (no server), so the
figures are the cost of producing the bytes, not of sending them.

The sse() variants use a ``"suspend"`` buffer of 64 or 256, so every row does the
recipe's job exactly. The default sliding buffer would lose nothing here either (a
lossy buffer drops only while its consumer is away, in a write, and this consumer
never is: it is always back for more), but ``"suspend"`` is the path whose per-event
cost these rows have always tracked.

Three pairs: ``text`` (str items vs ``f"data: {text}\\n\\n"``), ``json`` (dict items vs
``json.dumps`` per event) and ``named`` (`ServerSentEvent` objects with event and id,
built in the source, vs an f-string with the same fields; there the cost is mostly
creating and validating the event objects, which the recipe does not do), and
``prebuilt`` (the same events created beforehand, as a broadcast hub does once for all
subscribers, vs the f-string from the same fields), and ``mixed`` (a source that
alternates text, JSON and prebuilt events, vs a recipe that formats each kind). The
``chunks`` figure in each result's ``extra_info`` (``--benchmark-json``) counts writes.

The ``asgi-*`` groups add the peer library: the same sources served as an ASGI app by
sse-starlette's ``EventSourceResponse`` (str items; for JSON, ``json.dumps`` in the
source, the usual way with that library) and by ``to_asgi(sse(...))``, both called with
an in-memory ``send`` that counts the body bytes and a ``receive`` that waits, as a
client that stays connected. So the figures include each library's response machinery
(tasks, one ``send`` per event for sse-starlette, per batch for streamfx) but no socket.

The event loop is the module-wide one from ``bench/conftest.py``.

Run: ``.venv/bin/python -m pytest bench/test_bench_sse.py --benchmark-enable -q``
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from streamfx import BufferPolicy, ServerSentEvent, sse
from streamfx.adapters.asgi import to_asgi

EVENTS = 10_000
PAYLOADS = [{"seq": i, "user": "alice", "text": f"message number {i}"} for i in range(EVENTS)]
TEXTS = [f"message number {i} from alice" for i in range(EVENTS)]
PAIRS = [(str(i), text) for i, text in enumerate(TEXTS)]
PREBUILT = [ServerSentEvent(text, event="chat", id=seq) for seq, text in PAIRS]
MIXED: list[Any] = [
    (TEXTS, PAYLOADS, PREBUILT)[i % 3][i] for i in range(EVENTS)
]  # text, JSON, event, text, ...


async def source(values: list[Any]) -> AsyncIterator[Any]:
    for value in values:
        yield value


# -- the recipes ----------------------------------------------------------------------


async def recipe_text(values: list[str]) -> AsyncIterator[bytes]:
    async for text in source(values):
        yield f"data: {text}\n\n".encode()


async def recipe_json(values: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    async for payload in source(values):
        yield f"data: {json.dumps(payload)}\n\n".encode()


async def recipe_named(values: list[str]) -> AsyncIterator[bytes]:
    seq = 0
    async for text in source(values):
        yield f"event: chat\nid: {seq}\ndata: {text}\n\n".encode()
        seq += 1


async def recipe_prebuilt(values: list[tuple[str, str]]) -> AsyncIterator[bytes]:
    async for seq, text in source(values):
        yield f"event: chat\nid: {seq}\ndata: {text}\n\n".encode()


async def recipe_mixed(values: list[Any]) -> AsyncIterator[bytes]:
    async for value in source(values):
        if isinstance(value, ServerSentEvent):
            yield value.encode()
        elif isinstance(value, str):
            yield f"data: {value}\n\n".encode()
        else:
            yield f"data: {json.dumps(value)}\n\n".encode()


# -- the sse() side -------------------------------------------------------------------


def sse_text(values: list[str], capacity: int) -> AsyncIterator[bytes]:
    return aiter(sse(source(values), buffer=BufferPolicy(capacity, "suspend")).body)


def sse_json(values: list[dict[str, Any]], capacity: int) -> AsyncIterator[bytes]:
    return aiter(sse(source(values), buffer=BufferPolicy(capacity, "suspend")).body)


async def named_events(values: list[str]) -> AsyncIterator[ServerSentEvent]:
    seq = 0
    async for text in source(values):
        yield ServerSentEvent(text, event="chat", id=str(seq))
        seq += 1


def sse_named(values: list[str], capacity: int) -> AsyncIterator[bytes]:
    return aiter(sse(named_events(values), buffer=BufferPolicy(capacity, "suspend")).body)


def sse_prebuilt(values: list[ServerSentEvent], capacity: int) -> AsyncIterator[bytes]:
    return aiter(sse(source(values), buffer=BufferPolicy(capacity, "suspend")).body)


def sse_mixed(values: list[Any], capacity: int) -> AsyncIterator[bytes]:
    return aiter(sse(source(values), buffer=BufferPolicy(capacity, "suspend")).body)


# -- through ASGI, against sse-starlette ------------------------------------------------

SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.4"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/",
    "raw_path": b"/",
    "query_string": b"",
    "root_path": "",
    "headers": [],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 80),
}
ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


async def dumped(values: list[dict[str, Any]]) -> AsyncIterator[str]:
    async for payload in source(values):
        yield json.dumps(payload)


def starlette_app(kind: str) -> ASGIApp:
    from sse_starlette import EventSourceResponse

    app: ASGIApp = EventSourceResponse(source(TEXTS) if kind == "text" else dumped(PAYLOADS))
    return app


def streamfx_app(kind: str) -> ASGIApp:
    values: list[Any] = TEXTS if kind == "text" else PAYLOADS
    return to_asgi(sse(source(values), buffer=BufferPolicy(64, "suspend")))


async def serve_once(app: ASGIApp) -> tuple[int, int]:
    """Run `app` for one GET; (body messages, body bytes) it sent."""
    sent = [0, 0]
    stays = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await stays.wait()  # the client never leaves; cancelled when the response ends
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent[0] += 1
            sent[1] += len(message.get("body", b""))

    await app(SCOPE, receive, send)
    return sent[0], sent[1]


ASGI_CASES: dict[str, Callable[[str], ASGIApp]] = {
    "sse-starlette": starlette_app,
    "streamfx": streamfx_app,
}


@pytest.mark.parametrize("kind", ["text", "json"])
@pytest.mark.parametrize("peer", list(ASGI_CASES))
def test_sse_asgi(
    benchmark: BenchmarkFixture, loop: asyncio.AbstractEventLoop, kind: str, peer: str
) -> None:
    if peer == "sse-starlette":
        pytest.importorskip("sse_starlette")  # the bench extra installs it
    benchmark.group = f"asgi-{kind}"
    make = ASGI_CASES[peer]
    sends, nbytes = benchmark(lambda: loop.run_until_complete(serve_once(make(kind))))
    benchmark.extra_info.update(events=EVENTS, sends=sends, bytes=nbytes)
    assert nbytes > EVENTS * 20


# -- harness --------------------------------------------------------------------------


async def drain(body: AsyncIterator[bytes]) -> tuple[int, int]:
    chunks = nbytes = 0
    async for chunk in body:
        chunks += 1
        nbytes += len(chunk)
    return chunks, nbytes


def measure(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    make_body: Callable[[], AsyncIterator[bytes]],
) -> None:
    chunks, nbytes = benchmark(lambda: loop.run_until_complete(drain(make_body())))
    benchmark.extra_info.update(events=EVENTS, chunks=chunks, bytes=nbytes)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["ns_per_event"] = round(benchmark.stats.stats.min / EVENTS * 1e9)


CASES: dict[str, Callable[[], AsyncIterator[bytes]]] = {
    "text-recipe": lambda: recipe_text(TEXTS),
    "text-sse-64": lambda: sse_text(TEXTS, 64),
    "text-sse-256": lambda: sse_text(TEXTS, 256),
    "json-recipe": lambda: recipe_json(PAYLOADS),
    "json-sse-64": lambda: sse_json(PAYLOADS, 64),
    "json-sse-256": lambda: sse_json(PAYLOADS, 256),
    "named-recipe": lambda: recipe_named(TEXTS),
    "named-sse-64": lambda: sse_named(TEXTS, 64),
    "named-sse-256": lambda: sse_named(TEXTS, 256),
    "prebuilt-recipe": lambda: recipe_prebuilt(PAIRS),
    "prebuilt-sse-64": lambda: sse_prebuilt(PREBUILT, 64),
    "prebuilt-sse-256": lambda: sse_prebuilt(PREBUILT, 256),
    "mixed-recipe": lambda: recipe_mixed(MIXED),
    "mixed-sse-64": lambda: sse_mixed(MIXED, 64),
    "mixed-sse-256": lambda: sse_mixed(MIXED, 256),
}


@pytest.mark.parametrize("case", list(CASES))
def test_sse_body(benchmark: BenchmarkFixture, loop: asyncio.AbstractEventLoop, case: str) -> None:
    benchmark.group = "sse-" + case.split("-")[0]
    measure(benchmark, loop, CASES[case])


def test_same_bytes_as_the_recipe(loop: asyncio.AbstractEventLoop) -> None:
    """The two sides of each pair really do the same job (apart from sse()'s opening
    comment and JSON spacing)."""

    async def joined(body: AsyncIterator[bytes]) -> bytes:
        return b"".join([chunk async for chunk in body])

    opening = b":\n\n"
    for kind, pair in (("text", (recipe_text, sse_text)), ("named", (recipe_named, sse_named))):
        recipe, ours = pair
        expected = loop.run_until_complete(joined(recipe(TEXTS)))
        assert loop.run_until_complete(joined(ours(TEXTS, 64))) == opening + expected, kind
    expected = loop.run_until_complete(joined(recipe_prebuilt(PAIRS)))
    assert loop.run_until_complete(joined(sse_prebuilt(PREBUILT, 64))) == opening + expected
    compact = loop.run_until_complete(joined(sse_json(PAYLOADS, 64)))
    assert compact.count(b"data: ") == EVENTS
    mixed = loop.run_until_complete(joined(sse_mixed(MIXED, 64)))
    assert mixed.count(b"\n\n") == EVENTS + 1
