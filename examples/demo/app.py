"""The streamfx demo: one Starlette app that shows every capability on one page.

Routes (all responses built by streamfx and sent with ``to_asgi``):

- ``GET /``, ``GET /static/{name}``: the page, served with ``download(..., root=...)``.
- ``POST /api/jobs``: start a simulated job that publishes to a `Broadcast` hub;
  ``GET /api/jobs/{id}/events``: its events over SSE, from ``?since=`` or the
  ``Last-Event-ID`` header (untrusted: the hub bounds and checks it; a position it
  cannot honour gets one ``reset`` event); any number of subscribers, in any worker;
  ``POST /api/jobs/{id}/drop``: publish a ``drop`` event that makes every connection
  following the job end (and its browser resume). The live feed names the latest job
  and who follows it (``?subscriber=`` name @ worker pid), so every open page follows
  the job any page started. (A page holds two SSE connections, the live feed and one
  job subscriber: browsers allow six per host over HTTP/1.1, so two pages fit.)
- ``GET /api/export/{csv|ndjson|json}?rows=N&token=T``: N rows, streamed.
- ``GET /api/file``: a large generated file, with Range and conditional requests.
- ``POST /api/upload``: a multipart upload with limits; refused uploads get 413, 415 or
  400 with a message that says why.
- ``GET /api/flood?n=N``: N events through a small *sliding* buffer: a burst drops the
  oldest waiting events rather than growing memory (watch the "dropped" counter).
- ``GET /api/live``: the metrics hook's counters, twice a second, over SSE.
- ``GET /metrics``: the same hook's figures in Prometheus text format.

With one process the hub keeps its history in memory. With ``redis_url`` (``make demo
WORKERS=4``) it is a `RedisStreamsBackend`: every worker follows every job, and a
browser that reconnects to another worker resumes from its ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import secrets
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
    sse,
)
from streamfx.adapters.asgi import error_response, parts, to_asgi
from streamfx.broadcast import Broadcast, BroadcastError, RedisStreamsBackend
from streamfx.metrics import FanOut, metered, set_metrics
from streamfx.metrics.prometheus import PrometheusMetrics

from .bigfile import BigFile, MiB
from .job_streams import for_the_page
from .live import ExportLog, LiveCounters, counted_rows, tracked
from .registry import JobRegistry, LocalRegistry, RedisRegistry
from .simulation import JobPlan, JobRunner, job_topic

STATIC: Final = Path(__file__).parent / "static"

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
SUBSCRIBER_NAME: Final = re.compile(r"[a-z0-9]{1,16}")
REDIS_PREFIX: Final = "streamfx-demo:"
RECONNECT_MS: Final = 500

ExportFormat = Literal["csv", "ndjson", "json"]
EXTENSIONS: Final[dict[str, str]] = {"csv": "csv", "ndjson": "ndjson", "json": "json"}


@dataclass(frozen=True)
class DemoConfig:
    """What the demo serves: the size of the generated file, where it goes, the jobs."""

    file_mb: int = 256
    data_dir: Path | None = None
    job: JobPlan = field(default_factory=JobPlan)
    redis_url: str | None = None
    """None: the hub keeps everything in this process; else its Redis."""
    workers: int = 1
    """How many worker processes serve the demo (shown on the page)."""

    @classmethod
    def from_environment(cls) -> DemoConfig:
        """The configuration `python -m examples.demo` hands to its worker processes."""
        data_dir = os.environ.get("STREAMFX_DEMO_DATA_DIR")
        return cls(
            file_mb=int(os.environ.get("STREAMFX_DEMO_FILE_MB", "256")),
            data_dir=Path(data_dir) if data_dir else None,
            job=JobPlan(steps=int(os.environ.get("STREAMFX_DEMO_JOB_STEPS", JobPlan.steps))),
            redis_url=os.environ.get("STREAMFX_DEMO_REDIS_URL") or None,
            workers=int(os.environ.get("STREAMFX_DEMO_WORKERS", "1")),
        )


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


def make_hub(config: DemoConfig) -> tuple[Broadcast, JobRegistry]:
    """The jobs' hub and registry: in this process, or shared through Redis."""
    if config.redis_url is None:
        return Broadcast(name="demo"), LocalRegistry()
    backend = RedisStreamsBackend(config.redis_url, prefix=REDIS_PREFIX)
    return Broadcast(backend=backend, name="demo"), RedisRegistry(config.redis_url, REDIS_PREFIX)


def create_app(config: DemoConfig | None = None) -> Starlette:
    """The demo application. Installs its metrics hook process-wide while it runs."""
    config = config or DemoConfig()
    registry = CollectorRegistry()
    prometheus = PrometheusMetrics(registry)
    live = LiveCounters()
    hub, jobs = make_hub(config)
    runner = JobRunner(hub)
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
        await hub.start()
        try:
            yield
        finally:
            await runner.aclose()
            await hub.close(grace=2.0)
            await jobs.aclose()
            with contextlib.suppress(Exception):
                await writing
            set_metrics(previous)
            if config.data_dir is None:
                shutil.rmtree(directory, ignore_errors=True)

    async def page(request: Request) -> Response:
        return to_asgi(download("index.html", root=STATIC))

    async def static(request: Request) -> Response:
        try:
            response = download(request.path_params["name"], root=STATIC)
        except Exception as exc:
            return error_response(exc)
        return to_asgi(response)

    async def settings(request: Request) -> Response:
        return JSONResponse(
            {
                "upload": {**UPLOAD_LIMITS, "allowed_types": list(UPLOAD_TYPES)},
                "file": state["file"].info(),
                "job": {"steps": config.job.steps, "heartbeat": HEARTBEAT_EVERY},
                "max_export_rows": MAX_EXPORT_ROWS,
                "worker": os.getpid(),
                "workers": config.workers,
                "backend": "in-process" if config.redis_url is None else "redis",
                "current_job": await jobs.latest(),
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
        job_id = secrets.token_hex(6)
        try:
            # Subscribers start after this event (``?since=``): they see the job whole.
            since = await hub.publish(job_topic(job_id), {"steps": plan.steps}, event="created")
            record = {"id": job_id, "since": since, "steps": plan.steps}
            await jobs.remember(record)
            runner.start(job_id, plan)
        except BroadcastError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        return JSONResponse({**record, "worker": os.getpid()}, status_code=201)

    async def job_events(request: Request) -> Response:
        job_id = request.path_params["id"]
        if await jobs.get(job_id) is None:
            return JSONResponse({"error": "no such job"}, status_code=404)
        name = request.query_params.get("subscriber", "")
        member = f"{name if SUBSCRIBER_NAME.fullmatch(name) else 'anonymous'}@{os.getpid()}"

        async def presence(change: int) -> None:
            try:
                await jobs.join(job_id, member, change)
            except Exception as exc:  # Redis away: the stream goes on regardless
                logging.getLogger("examples.demo").warning("presence not recorded: %s", exc)

        # Untrusted, both: the hub bounds the id and answers one `reset` event for
        # anything it cannot honour (malformed, too long, unknown, expired).
        position = request.headers.get("last-event-id") or request.query_params.get("since")
        response = hub.sse(
            job_topic(request.path_params["id"]),
            last_event_id=position,
            heartbeat=HEARTBEAT_EVERY,
            retry=RECONNECT_MS,
            name="job-events",
        )
        return to_asgi(for_the_page(response, presence))

    async def drop_job(request: Request) -> Response:
        job_id = request.path_params["id"]
        if await jobs.get(job_id) is None:
            return JSONResponse({"error": "no such job"}, status_code=404)
        try:
            event_id = await hub.publish(
                job_topic(job_id), {"at": time.strftime("%H:%M:%S")}, event="drop"
            )
        except BroadcastError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        return JSONResponse({"drop_event": event_id})

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
        return to_asgi(tracked(response, record))

    async def big_file(request: Request) -> Response:
        big = state["file"]
        if not big.ready:
            return JSONResponse(
                {"error": "the file is still being generated", **big.info()}, status_code=503
            )
        return to_asgi(download(big.path, filename=big.path.name))

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
            return error_response(exc)
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
        return to_asgi(response)

    async def job_summary() -> dict[str, Any]:
        """The latest job and who follows it (for every page's job panel)."""
        try:
            current = await jobs.latest()
            followers = await jobs.followers(current["id"]) if current else []
        except Exception as exc:  # Redis away: say so, keep the feed going
            return {"current": None, "followers": [], "error": str(exc)}
        return {"current": current, "followers": followers}

    async def live_feed(request: Request) -> Response:
        async def snapshots() -> AsyncIterator[dict[str, Any]]:
            while True:
                yield {
                    "job": await job_summary(),
                    **live.snapshot(),
                    "exports": exports.recent(),
                    "file": state["file"].info(),
                    "hub": {
                        "worker": os.getpid(),
                        "subscribers": hub.subscribers,
                        "healthy": hub.healthy,
                        "jobs_running": runner.running(),
                    },
                }
                await asyncio.sleep(0.5)

        return to_asgi(sse(snapshots(), name="live-metrics"))

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
    app.state.hub = hub
    return app


def create_app_from_environment() -> Starlette:
    """`create_app` configured by `DemoConfig.from_environment` (each worker's factory)."""
    return create_app(DemoConfig.from_environment())
