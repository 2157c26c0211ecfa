"""Fuzzing the parsers of untrusted input, time-boxed, with hypothesis.

Each target gets `Sizes.fuzz_seconds`: hypothesis generates inputs in rounds of
`ROUND` examples until the time is up (no shrinking: every input is checked and the
run goes on; the first input of each distinct failure is shown). A failure is an
exception other than the documented ones, a wrong result, or memory past the bound:

- SSE decoder: any bytes, split anywhere, into ``SSEDecoder(max_line=1024,
  max_event=8192)``: events or `SSEDecodeError`, nothing else; and the memory bounds
  its docstring promises (`DECODER_HELD`, `DECODER_FEEDING`): what the decoder holds
  once a chunk is fed, and how much the traced memory grows while it parses one (from
  before the first chunk; the events a `feed` returns are the caller's and are not
  counted: their size is what is traced when `feed` returns less what is left once
  they are dropped). Some inputs are floods (`sse_floods`: up to 2 MiB of one line
  without its end, or of ``data`` lines without a blank line, in 32 KiB chunks), the
  issue's unbounded-memory case: a decoder without its limits keeps them whole and
  fails the bounds within seconds of fuzzing. (The bound was 512 KiB beyond the
  input, the input subtracted though it was traced before the measure began, and the
  returned events counted; it failed once at 524 KiB: a decoder holding a string per
  line of a big chunk of short lines, or a chunk returning thousands of events, can
  pass it. The decoder now parses 2 KiB of a chunk at a time and joins its pending
  pieces and data lines in blocks; see `streamfx._sse.decoder`.)
- Range and conditional headers: ``download(path, request_headers=..., method=...)``
  with any ``Range``, ``If-Range``, ``If-Match``, ``If-None-Match``,
  ``If-Modified-Since``, ``If-Unmodified-Since``: a response (or `DownloadError`), and
  a body of exactly its ``Content-Length``;
- file names: ``download(path, filename=...)`` with any text: headers that encode as
  latin-1, a ``Content-Disposition`` of at most `DISPOSITION_BOUND` bytes;
- multipart bodies: ``parse_multipart`` over mutated ``multipart/form-data`` bodies
  with any ``Content-Type`` and part headers, read to the end: parts or `UploadError`;
  traced memory at most `MULTIPART_BOUND` beyond the body;
- ``Last-Event-ID``: the example apps' ``/job/events`` (aiohttp and Flask) with any
  header value: never a 5xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bench.soak.config import Sizes
from bench.soak.report import Table
from streamfx import (
    DownloadError,
    SSEDecodeError,
    SSEDecoder,
    UploadError,
    download,
    parse_multipart,
)

ROUND = 20  # examples per round: a round may run past the time box, so a short one
DECODER_LIMITS = {"max_line": 1024, "max_event": 8192}
# `SSEDecoder`'s docstring: it holds at most about max_line + max_event characters (up
# to 4 bytes each in a str) and 16 KiB; `feed` adds at most about 128 KiB while parsing.
DECODER_HELD = 4 * sum(DECODER_LIMITS.values()) + (16 << 10)
DECODER_FEEDING = DECODER_HELD + (128 << 10)
MULTIPART_BOUND = 2 << 20
DISPOSITION_BOUND = 2048


@dataclass
class Findings:
    examples: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # kind -> first input
    peak_over: int = 0  # the largest traced memory beyond the input (see `table`), bytes
    started: float = field(default_factory=time.monotonic)
    first_found_s: float | None = None  # seconds into the run of the first failure

    def fail(self, kind: str, example: object) -> None:
        if self.first_found_s is None:
            self.first_found_s = time.monotonic() - self.started
        self.failures.setdefault(kind[:120], repr(example)[:160])


def fuzz(seconds: float, test: Callable[[Findings], Callable[[], None]]) -> Findings:
    """Run the hypothesis test `test(findings)` in rounds until `seconds` pass."""
    findings = Findings()
    run = settings(
        max_examples=ROUND,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )(test(findings))
    findings.started = time.monotonic()
    deadline = findings.started + seconds
    while time.monotonic() < deadline:
        run()
    return findings


# -- the SSE decoder -----------------------------------------------------------------

SSE_PIECES = [b"data: ", b"data:", b"id: ", b"event: ", b"retry: ", b": ", b"\n", b"\r"]
SSE_PIECES += [b"\r\n", b"\xef\xbb\xbf", b"\xff", b"\xe2\x82", b"\0", b"x" * 700]


FLOOD_CHUNK = 32 << 10
FLOOD_PIECES = [
    b"x" * FLOOD_CHUNK,  # one line that never ends
    b": " + b"c" * (FLOOD_CHUNK - 2),  # a comment that never ends
    (b"data: " + b"y" * 1017 + b"\n") * (FLOOD_CHUNK // 1024),  # no blank line, ever
]


def sse_floods() -> st.SearchStrategy[list[bytes]]:
    """Up to 64 chunks of 32 KiB of one flood piece, after a few ordinary chunks; each
    chunk a distinct object (as a network read would make it)."""
    ordinary = st.lists(st.binary(max_size=200), max_size=3)
    return st.builds(
        lambda head, piece, count: [*head, *(bytes(bytearray(piece)) for _ in range(count))],
        ordinary,
        st.sampled_from(FLOOD_PIECES),
        st.integers(1, 64),
    )


def sse_streams() -> st.SearchStrategy[list[bytes]]:
    piece = st.sampled_from(SSE_PIECES) | st.binary(max_size=40)
    repeated = st.tuples(piece, st.integers(1, 40)).map(lambda pair: pair[0] * pair[1])
    return st.lists(st.lists(repeated, max_size=30).map(b"".join), max_size=8) | sse_floods()


def decoder_memory(decoder: SSEDecoder, chunks: list[bytes]) -> tuple[int, int]:
    """Feed `chunks` up to the end or an `SSEDecodeError` (any other exception is
    raised): (what the decoder holds after, the largest growth of the traced memory
    while it parsed, the returned events not counted), in bytes, from before the
    first chunk."""
    start = tracemalloc.get_traced_memory()[0]
    growth = 0
    for chunk in chunks:
        tracemalloc.reset_peak()
        try:
            events = decoder.feed(chunk)
        except SSEDecodeError:
            growth = max(growth, tracemalloc.get_traced_memory()[1] - start)
            break
        returned, peak = tracemalloc.get_traced_memory()
        del events
        growth = max(growth, peak - start - (returned - tracemalloc.get_traced_memory()[0]))
    return tracemalloc.get_traced_memory()[0] - start, growth


def decoder_test(findings: Findings) -> Callable[[], None]:
    @given(sse_streams())
    def test(chunks: list[bytes]) -> None:
        findings.examples += 1
        decoder = SSEDecoder(**DECODER_LIMITS)
        try:
            held, growth = decoder_memory(decoder, chunks)
        except Exception as exc:
            findings.fail(f"{type(exc).__name__}: {exc}", chunks)
            return
        findings.peak_over = max(findings.peak_over, growth)
        if growth > DECODER_FEEDING:
            findings.fail("memory past the bound", sum(map(len, chunks)))
        if held > DECODER_HELD:  # what the decoder (alive) still holds
            findings.fail("memory held past the bound", sum(map(len, chunks)))

    return test


# -- Range, conditional headers and file names ---------------------------------------

DATES = ["Mon, 01 Jan 2001 00:00:00 GMT", "Sun, 06 Nov 1994 08:49:37 GMT", "yesterday", ""]
DATES += [
    "Sunday, 06-Nov-94 08:49:37 GMT",
    "Sun Nov  6 08:49:37 1994",
    "Thu, 01 Jan 3000 00:00:00 GMT",
]
ETAGS = ['"x"', 'W/"x"', "*", '"', "W/", ", ,", '"a", "b"', "x"]
SPECS = ["0-0", "0-", "-1", "-0", "5-2", "1-1000000", "999999999999999999999-", "a-b", ""]
SPECS += [" 1 - 2 ", "0-1,2-3", "-", "1--2"]


def range_header() -> st.SearchStrategy[str]:
    spec = st.sampled_from(SPECS) | st.text(alphabet="0123456789-, ", max_size=12)
    unit = st.sampled_from(["bytes=", "bytes =", "BYTES=", "items=", "", "bytes"])
    return st.builds(lambda u, s: u + ",".join(s), unit, st.lists(spec, max_size=120))


def header_value() -> st.SearchStrategy[str]:
    return st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60)


def request_headers(etag: str, modified: str) -> st.SearchStrategy[list[tuple[str, str]]]:
    date = st.sampled_from([*DATES, modified]) | header_value()
    tag = st.sampled_from([*ETAGS, etag]) | header_value()
    pairs = st.one_of(
        st.tuples(st.just("Range"), range_header() | header_value()),
        st.tuples(st.just("If-Range"), tag | date),
        st.tuples(st.sampled_from(["If-Match", "If-None-Match"]), tag),
        st.tuples(st.sampled_from(["If-Modified-Since", "If-Unmodified-Since"]), date),
    )
    return st.lists(pairs, max_size=5)


async def read_all(body: AsyncIterator[bytes]) -> int:
    total = 0
    async for chunk in body:
        total += len(chunk)
    return total


def range_test(
    path: Path, etag: str, modified: str, loop: asyncio.AbstractEventLoop
) -> Callable[[Findings], Callable[[], None]]:
    def make(findings: Findings) -> Callable[[], None]:
        @given(request_headers(etag, modified), st.sampled_from(["GET", "HEAD"]))
        def test(headers: list[tuple[str, str]], method: str) -> None:
            findings.examples += 1
            try:
                response = download(path, request_headers=headers, method=method)
                length = response.header("content-length")
                sent = loop.run_until_complete(read_all(aiter(response.body)))
                if method == "GET" and length is not None and sent != int(length):
                    findings.fail(f"body {sent} != Content-Length {length}", headers)
                for name, value in response.headers:
                    (name + value).encode("latin-1")
            except DownloadError:
                pass
            except Exception as exc:
                findings.fail(f"{type(exc).__name__}: {exc}", headers)

        return test

    return make


def filename_test(path: Path) -> Callable[[Findings], Callable[[], None]]:
    def make(findings: Findings) -> Callable[[], None]:
        names = st.text(max_size=300) | st.text(
            st.sampled_from(["\udc80", "\u202e", "/", "\\", ".", '"', "\n", "é", "€", "a"]),
            max_size=2000,
        )

        @given(names)
        def test(name: str) -> None:
            findings.examples += 1
            try:
                response = download(path, filename=name)
                for header, value in response.headers:
                    (header + value).encode("latin-1")
                disposition = response.header("content-disposition") or ""
                if len(disposition) > DISPOSITION_BOUND:
                    findings.fail(f"Content-Disposition of {len(disposition)} bytes", name)
                with contextlib.suppress(Exception):
                    loop_close(response)
            except Exception as exc:
                findings.fail(f"{type(exc).__name__}: {exc}", name)

        return test

    return make


def loop_close(response: Any) -> None:
    body = response.body
    close = getattr(body, "aclose", None)
    if close is not None:
        asyncio.run(close())


# -- multipart bodies ----------------------------------------------------------------

PART_HEADERS = [
    b'Content-Disposition: form-data; name="f"',
    b'Content-Disposition: form-data; name="f"; filename="a.txt"',
    b"Content-Disposition: form-data; name=\"f\"; filename*=UTF-8''%e2%82%ac.txt",
    b"Content-Disposition: form-data; name=\"f\"; filename*=undefined''%41",
    b"Content-Disposition: form-data; name=\"f\"; filename*=utf-8''%ff%fe",
    b"Content-Disposition: attachment",
    b"Content-Type: text/plain",
    b"Content-Type: image/png",
    b"Content-Type: \xff\xfe",
    b"X: " + b"h" * 3000,
]


def multipart_bodies() -> st.SearchStrategy[tuple[str | bytes, list[bytes]]]:
    boundary = st.sampled_from([b"xyz", b"a" * 70, b"\xe2\x82\xac", b"--", b""]) | st.binary(
        min_size=1, max_size=20
    )
    header = st.sampled_from(PART_HEADERS) | st.binary(max_size=60)
    part = st.tuples(st.lists(header, max_size=4), st.binary(max_size=300) | st.just(b"z" * 5000))

    def assemble(
        b: bytes, parts: list[tuple[list[bytes], bytes]], cut: int, ending: bytes
    ) -> bytes:
        body = b"".join(
            b"--"
            + b
            + b"\r\n"
            + b"".join(h + b"\r\n" for h in headers)
            + b"\r\n"
            + content
            + b"\r\n"
            for headers, content in parts
        )
        body += b"--" + b + ending
        return body[: max(0, len(body) - cut)]

    def content_type(b: bytes, style: int) -> str | bytes:
        if style == 0:
            return b"multipart/form-data; boundary=" + b
        if style == 1:
            return "multipart/form-data; boundary=" + b.decode("utf-8", "surrogateescape")
        return 'multipart/form-data; boundary="' + b.decode("latin-1") + '"'

    def chunks(body: bytes, size: int) -> list[bytes]:
        return [body[i : i + size] for i in range(0, len(body), size)] or [b""]

    return st.builds(
        lambda b, parts, cut, ending, style, size: (
            content_type(b, style),
            chunks(assemble(b, parts, cut, ending), size),
        ),
        boundary,
        st.lists(part, max_size=5),
        st.integers(0, 10) | st.just(0),
        st.sampled_from([b"--\r\n", b"--", b"\r\n", b""]),
        st.integers(0, 2),
        st.integers(1, 9000),
    ) | st.tuples(
        st.text(max_size=80) | st.binary(max_size=80), st.lists(st.binary(max_size=200), max_size=4)
    )


async def consume(content_type: str | bytes, chunks: list[bytes]) -> None:
    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    parts = parse_multipart(
        body(),
        content_type,
        max_size=1 << 16,
        max_part_size=4096,
        max_parts=4,
        allowed_types=["text/plain", "image/*"],
    )
    async with contextlib.aclosing(parts):
        async for part in parts:
            _ = (part.name, part.filename, part.content_type)
            async for _chunk in part:
                pass


def multipart_test(loop: asyncio.AbstractEventLoop) -> Callable[[Findings], Callable[[], None]]:
    def make(findings: Findings) -> Callable[[], None]:
        @given(multipart_bodies())
        def test(case: tuple[str | bytes, list[bytes]]) -> None:
            findings.examples += 1
            content_type, chunks = case
            tracemalloc.reset_peak()
            start = tracemalloc.get_traced_memory()[0]
            try:
                loop.run_until_complete(consume(content_type, chunks))
            except UploadError:
                pass
            except Exception as exc:
                findings.fail(f"{type(exc).__name__}: {exc}", case)
            over = tracemalloc.get_traced_memory()[1] - start - sum(map(len, chunks))
            findings.peak_over = max(findings.peak_over, over)
            if over > MULTIPART_BOUND:
                findings.fail("memory past the bound", case)

        return test

    return make


# -- Last-Event-ID in the example apps -----------------------------------------------


def last_event_ids() -> st.SearchStrategy[str]:
    """Header values a client can send: visible latin-1 (no control characters)."""
    digits = st.text(st.sampled_from("0123456789"), min_size=1, max_size=6000)
    odd = st.sampled_from(["²", "١٢".encode().decode("latin-1"), "-1", "1e9", "7 ", "0x1f"])
    visible = st.characters(min_codepoint=0x21, max_codepoint=0xFF).filter(
        lambda c: not 0x7F <= ord(c) < 0xA0
    )
    return digits | odd | st.text(visible, max_size=200)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The example apps log each 500 with its traceback: not here."""
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def flask_test() -> Callable[[Findings], Callable[[], None]]:
    from examples.flask_app import create_app

    client = create_app(file_mb=1).test_client()

    def make(findings: Findings) -> Callable[[], None]:
        @given(last_event_ids())
        def test(value: str) -> None:
            findings.examples += 1
            try:
                response = client.get(
                    "/job/events?steps=1&interval=0", headers={"Last-Event-ID": value}
                )
                status = response.status_code
                response.close()
            except Exception as exc:
                findings.fail(f"{type(exc).__name__}: {exc}", value)
                return
            if status >= 500:
                findings.fail(f"answered {status}", value)

        return test

    return make


def aiohttp_test(
    loop: asyncio.AbstractEventLoop,
) -> tuple[Callable[[Findings], Callable[[], None]], Callable[[], None]]:
    from aiohttp.test_utils import TestClient, TestServer

    from examples.aiohttp_app import create_app

    client = TestClient(TestServer(create_app(file_mb=1)), loop=loop)
    loop.run_until_complete(client.start_server())

    async def status_of(value: str) -> int:
        async with client.get(
            "/job/events?steps=1&interval=0", headers={"Last-Event-ID": value}
        ) as response:
            return response.status

    def make(findings: Findings) -> Callable[[], None]:
        @given(last_event_ids())
        def test(value: str) -> None:
            findings.examples += 1
            try:
                status = loop.run_until_complete(status_of(value))
            except Exception as exc:
                findings.fail(f"{type(exc).__name__}: {exc}", value)
                return
            if status >= 500:
                findings.fail(f"answered {status}", value)

        return test

    return make, lambda: loop.run_until_complete(client.close())


# -- the table ----------------------------------------------------------------------


PARSERS = [
    "SSE decoder",
    "multipart bodies",
    "Range + conditional headers",
    "file names (download)",
    "Last-Event-ID: Flask example",
    "Last-Event-ID: aiohttp example",
]
TRACED = frozenset({"SSE decoder", "multipart bodies"})  # their memory is bounded
WORKERS = 2  # one process per core: each parser gets its seconds on a core of its own


def warm_up(make: Callable[[Findings], Callable[[], None]]) -> None:
    """One example, untraced and not counted: hypothesis builds its tables of Unicode
    characters on first use (and caches them in ``.hypothesis/``); built under
    tracemalloc, on a fresh checkout, they made the first round of the multipart
    parser take 50 s of a 15 s time box."""
    with quiet():
        settings(
            max_examples=1,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )(make(Findings()))()


def run_one(name: str, seconds: float) -> Findings:
    """Fuzz the parser `name` for `seconds` (in a process of its own: see `run_all`)."""
    loop = asyncio.new_event_loop()
    directory = tempfile.TemporaryDirectory(prefix="streamfx-soak-")
    close: Callable[[], None] = lambda: None  # noqa: E731
    try:
        path = Path(directory.name) / "file.bin"
        path.write_bytes(bytes(range(256)) * 40)
        make: Callable[[Findings], Callable[[], None]]
        if name == "SSE decoder":
            make = decoder_test
        elif name == "multipart bodies":
            make = multipart_test(loop)
        elif name == "Range + conditional headers":
            probe = download(path)
            etag = probe.header("etag") or '"x"'
            modified = probe.header("last-modified") or DATES[0]
            loop_close(probe)
            make = range_test(path, etag, modified, loop)
        elif name == "file names (download)":
            make = filename_test(path)
        elif name == "Last-Event-ID: Flask example":
            make = flask_test()
        else:
            make, close = aiohttp_test(loop)
        warm_up(make)
        if name in TRACED:
            tracemalloc.start()
        try:
            with quiet():  # python-multipart warns about each bad header; the apps log 500s
                return fuzz(seconds, make)
        finally:
            if name in TRACED:
                tracemalloc.stop()
            close()
    finally:
        directory.cleanup()
        loop.close()


def run_all(seconds: float) -> list[tuple[str, Findings]]:
    """Every parser for `seconds`, `WORKERS` at a time, each in a fresh process.

    Hypothesis and the parsers are CPU-bound and single-threaded: one after another,
    six parsers at 60 s each would take six minutes of a ten-minute soak; two at a time
    (the machine's two cores) each parser still gets its `seconds` of wall time with a
    core to itself, in half the time. The processes are spawned, not forked, so that
    none inherits the soak's event loop or threads."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=WORKERS, mp_context=context) as pool:
        futures = [pool.submit(run_one, name, seconds) for name in PARSERS]
        return [(name, future.result()) for name, future in zip(PARSERS, futures, strict=True)]


def table(sizes: Sizes) -> Table:
    return Table(
        "fuzz",
        f"fuzz: the parsers of untrusted input, {sizes.fuzz_seconds:.0f} s each (hypothesis)",
        ["parser", "inputs", "peak over input", "failures", "found at s", "first failing input"],
        notes=[
            "failures: distinct unexpected outcomes (an undocumented exception, a wrong",
            "result, a 5xx, memory past the bound); see bench/soak/fuzz.py. found at: the",
            "seconds into the parser's run when the first failure turned up. peak over",
            "input: multipart, the traced memory beyond the body; SSE decoder, its growth",
            "while parsing, the events it returned not counted (bound: "
            f"{DECODER_FEEDING >> 10} KiB, its docstring's).",
        ],
    )


async def measure_all(sizes: Sizes, table: Table) -> None:
    results = await asyncio.to_thread(run_all, sizes.fuzz_seconds)
    for name, findings in results:
        failures = "; ".join(findings.failures) or "none"
        first = next(iter(findings.failures.values()), "")
        table.add(
            [
                name,
                f"{findings.examples:,}",
                f"{findings.peak_over / 1024:.0f} KB" if findings.peak_over else "-",
                table.check(name, "only documented outcomes", not findings.failures, failures[:90]),
                "-" if findings.first_found_s is None else f"{findings.first_found_s:.1f}",
                first[:70],
            ],
            {
                "parser": name,
                "examples": findings.examples,
                "failures": findings.failures,
                "first_found_s": findings.first_found_s,
            },
        )
