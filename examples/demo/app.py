"""The streamfx demo: one Starlette app that shows every capability on one page.

Routes (all responses built by streamfx and sent with ``to_asgi``):

- ``GET /``, ``GET /static/{name}``: the page, served with ``download(..., root=...)``.
- ``POST /api/jobs``: start a simulated job; ``GET /api/jobs/{id}/events``: its events
  over SSE, resumable from ``Last-Event-ID``; ``POST /api/jobs/{id}/drop``: close every
  connection following the job, server-side.
- ``GET /api/export/{csv|ndjson|json}?rows=N&token=T``: N rows, streamed.
- ``GET /api/file``: a large generated file, with Range and conditional requests.
- ``POST /api/upload``: a multipart upload with limits; refused uploads get 413, 415 or
  400 with a message that says why.
- ``GET /api/flood?n=N``: N events through a small *sliding* buffer: a burst drops the
  oldest waiting events rather than growing memory (watch the "dropped" counter).
- ``GET /api/live``: the metrics hook's counters, twice a second, over SSE.
- ``GET /metrics``: the same hook's figures in Prometheus text format.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, cast

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from streamfx import (
    BufferPolicy,
    ServerSentEvent,
    UploadError,
    download,
    drain_on_signals,
    export,
    heartbeat,
    sse,
)
from streamfx.adapters.asgi import error_response, parts, to_asgi
from streamfx.metrics import FanOut, metered, set_metrics
from streamfx.metrics.prometheus import PrometheusMetrics

from .jobs import JobBoard, JobEvent, JobPlan, ReplayGone
from .live import ExportLog, LiveCounters, counted_rows, tracked

STATIC: Final = Path(__file__).parent / "static"
MiB: Final = 1024 * 1024

UPLOAD_LIMITS: Final = {
    "max_size": 8 * MiB,
    "max_part_size": 5 * MiB,
    "max_parts": 4,
}
UPLOAD_TYPES: Final = ("text/plain", "text/csv", "application/json", "image/png", "image/jpeg")
MAX_EXPORT_ROWS: Final = 5_000_000
MAX_FLOOD: Final = 200_000
HEARTBEAT_EVERY: Final = 1.0
"""Seconds of silence after which a job stream sends a visible ``heartbeat`` event."""

ExportFormat = Literal["csv", "ndjson", "json"]
EXTENSIONS: Final[dict[str, str]] = {"csv": "csv", "ndjson": "ndjson", "json": "json"}


@dataclass(frozen=True)
class DemoConfig:
    """What the demo serves: the size of the generated file, where it goes, the jobs."""

    file_mb: int = 256
    data_dir: Path | None = None
    job: JobPlan = field(default_factory=JobPlan)


class BigFile:
    """The large file, written at start-up in a worker thread (the page shows progress)."""

    def __init__(self, directory: Path, size: int) -> None:
        self.path = directory / f"streamfx-demo-{size // MiB}MB.bin"
        self.size = size
        self.written = 0

    @property
    def ready(self) -> bool:
        return self.written == self.size

    def write(self) -> None:
        block = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(MiB // 32))
        tmp = self.path.with_suffix(".part")
        with tmp.open("wb") as out:
            while self.written + len(block) <= self.size:
                out.write(block)
                self.written += len(block)
            out.write(block[: self.size - self.written])
        tmp.rename(self.path)
        self.written = self.size

    def info(self) -> dict[str, Any]:
        return {"name": self.path.name, "size": self.size, "written": self.written}


def rows(n: int) -> Iterator[dict[str, Any]]:
    """N made-up order rows: cheap to make, realistic enough to encode."""
    for i in range(1, n + 1):
        yield {
            "id": i,
            "customer": f"customer-{i % 9973}",
            "amount": (i * 7919) % 100_000 / 100,
            "paid": i % 3 != 0,
            "created": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
        }


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise _BadRequest(f"{name} must be between {low} and {high}, got {value}")
    return value


def _float_param(request: Request, name: str, default: float, high: float) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _BadRequest(f"{name} must be a number, got {raw!r}") from None
    if not 0 <= value <= high:
        raise _BadRequest(f"{name} must be between 0 and {high:g}, got {value:g}")
    return value


class _BadRequest(Exception):
    status = 400


def _bad_request(exc: _BadRequest) -> Response:
    return JSONResponse({"error": str(exc)}, status_code=400)


def create_app(config: DemoConfig | None = None) -> Starlette:
    """The demo application. Installs its metrics hook process-wide while it runs."""
    config = config or DemoConfig()
    registry = CollectorRegistry()
    prometheus = PrometheusMetrics(registry)
    live = LiveCounters()
    jobs = JobBoard()
    exports = ExportLog()
    state: dict[str, BigFile] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        previous = set_metrics(FanOut(prometheus, live))
        if threading.current_thread() is threading.main_thread():
            # Ctrl-C / SIGTERM first end the SSE streams cleanly (the page's live feed
            # and job streams never end by themselves), then reach uvicorn's handler.
            drain_on_signals()
        directory = config.data_dir or Path(tempfile.mkdtemp(prefix="streamfx-demo-"))
        big = state["file"] = BigFile(directory, config.file_mb * MiB)
        writing = asyncio.create_task(asyncio.to_thread(big.write))
        try:
            yield
        finally:
            await jobs.aclose()
            with contextlib.suppress(Exception):
                await writing
            set_metrics(previous)
            if config.data_dir is None:
                shutil.rmtree(directory, ignore_errors=True)

    async def page(request: Request) -> Response:
        return cast(Response, to_asgi(download("index.html", root=STATIC)))

    async def static(request: Request) -> Response:
        try:
            response = download(request.path_params["name"], root=STATIC)
        except Exception as exc:
            return cast(Response, error_response(exc))
        return cast(Response, to_asgi(response))

    async def settings(request: Request) -> Response:
        return JSONResponse(
            {
                "upload": {**UPLOAD_LIMITS, "allowed_types": list(UPLOAD_TYPES)},
                "file": state["file"].info(),
                "job": {"steps": config.job.steps, "heartbeat": HEARTBEAT_EVERY},
                "max_export_rows": MAX_EXPORT_ROWS,
            }
        )

    async def start_job(request: Request) -> Response:
        try:
            plan = JobPlan(
                steps=_int_param(request, "steps", config.job.steps, 2, 10_000),
                interval=_float_param(request, "interval", config.job.interval, 5.0),
                pause=_float_param(request, "pause", config.job.pause, 60.0),
            )
        except _BadRequest as exc:
            return _bad_request(exc)
        job = jobs.start(plan)
        return JSONResponse({"id": job.id, "steps": plan.steps}, status_code=201)

    async def job_events(request: Request) -> Response:
        job = jobs.get(request.path_params["id"])
        if job is None:
            return JSONResponse({"error": "no such job"}, status_code=404)
        raw = request.headers.get("last-event-id", "0") or "0"
        after = int(raw) if raw.isdigit() else 0
        if job.done and after >= job.last_seq:
            return Response(status_code=204)  # tells EventSource not to reconnect
        try:
            job.events_after(after)  # refuse at once a replay the history cannot serve
        except ReplayGone as exc:
            return JSONResponse({"error": str(exc)}, status_code=410)

        def encode(event: JobEvent) -> ServerSentEvent:
            return ServerSentEvent(event.data, event=event.type, id=str(event.seq))

        def beat() -> ServerSentEvent:
            # No id: a heartbeat does not move the client's Last-Event-ID.
            return ServerSentEvent(time.strftime("%H:%M:%S"), event="heartbeat")

        events = heartbeat(job.follow(after), HEARTBEAT_EVERY, beat)
        stream = sse(
            events,
            serialize=lambda item: encode(item) if isinstance(item, JobEvent) else item,
            buffer=BufferPolicy(64, "suspend"),  # lossless: every job event must arrive
            retry=500,
            name="job-events",
        )
        return cast(Response, to_asgi(stream))

    async def drop_job(request: Request) -> Response:
        job = jobs.get(request.path_params["id"])
        if job is None:
            return JSONResponse({"error": "no such job"}, status_code=404)
        return JSONResponse({"dropped": job.drop(), "last_seq": job.last_seq})

    async def export_rows(request: Request) -> Response:
        fmt = request.path_params["format"]
        if fmt not in EXTENSIONS:
            return JSONResponse({"error": f"unknown format {fmt!r}"}, status_code=404)
        try:
            n = _int_param(request, "rows", 1_000_000, 0, MAX_EXPORT_ROWS)
        except _BadRequest as exc:
            return _bad_request(exc)
        token = request.query_params.get("token", "")[:64] or os.urandom(6).hex()
        record = exports.start(token, fmt, n)
        response = export(
            counted_rows(record, rows(n)),
            cast(ExportFormat, fmt),
            filename=f"streamfx-export-{n}.{EXTENSIONS[fmt]}",
            name=f"export-{fmt}",
        )
        return cast(Response, to_asgi(tracked(response, record)))

    async def big_file(request: Request) -> Response:
        big = state["file"]
        if not big.ready:
            return JSONResponse(
                {"error": "the file is still being generated", **big.info()}, status_code=503
            )
        return cast(Response, to_asgi(download(big.path, filename=big.path.name)))

    async def upload(request: Request) -> Response:
        received: list[dict[str, Any]] = []
        try:
            async with parts(
                request,
                max_size=UPLOAD_LIMITS["max_size"],
                max_part_size=UPLOAD_LIMITS["max_part_size"],
                max_parts=UPLOAD_LIMITS["max_parts"],
                allowed_types=UPLOAD_TYPES,
            ) as stream:
                async for part in stream:
                    digest, size = hashlib.sha256(), 0
                    async for chunk in metered(part, "upload", "demo-upload"):
                        digest.update(chunk)
                        size += len(chunk)
                    received.append(
                        {
                            "field": part.name,
                            "filename": part.filename,
                            "content_type": part.content_type,
                            "bytes": size,
                            "sha256": digest.hexdigest(),
                        }
                    )
        except UploadError as exc:
            return cast(Response, error_response(exc))
        return JSONResponse({"parts": received})

    async def flood(request: Request) -> Response:
        try:
            n = _int_param(request, "n", 20_000, 1, MAX_FLOOD)
        except _BadRequest as exc:
            return _bad_request(exc)

        async def burst() -> AsyncIterator[ServerSentEvent]:
            for i in range(1, n + 1):
                yield ServerSentEvent(str(i), event="tick")
                if i % 256 == 0:
                    await asyncio.sleep(0)
            yield ServerSentEvent(str(n), event="end")

        response = sse(burst(), buffer=BufferPolicy(16, "sliding"), name="flood")
        return cast(Response, to_asgi(response))

    async def live_feed(request: Request) -> Response:
        async def snapshots() -> AsyncIterator[dict[str, Any]]:
            while True:
                yield {
                    **live.snapshot(),
                    "exports": exports.recent(),
                    "file": state["file"].info(),
                }
                await asyncio.sleep(0.5)

        return cast(Response, to_asgi(sse(snapshots(), name="live-metrics")))

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/", page),
        Route("/static/{name:path}", static),
        Route("/api/config", settings),
        Route("/api/jobs", start_job, methods=["POST"]),
        Route("/api/jobs/{id}/events", job_events),
        Route("/api/jobs/{id}/drop", drop_job, methods=["POST"]),
        Route("/api/export/{format}", export_rows),
        Route("/api/file", big_file, methods=["GET", "HEAD"]),
        Route("/api/upload", upload, methods=["POST"]),
        Route("/api/flood", flood),
        Route("/api/live", live_feed),
        Route("/metrics", metrics),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.live = live
    app.state.jobs = jobs
    return app
