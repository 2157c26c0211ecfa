"""Start the demo: ``python -m examples.demo [--host H] [--port P] [--workers N]``.

One worker (the default, ``make demo``): one uvicorn process, the jobs' broadcast hub
in memory, nothing else to start. ``--workers N`` with N > 1 (``make demo
WORKERS=4``): a local ``redis-server`` on a free port (no persistence; installed
with apt-get when missing and this runs as root), then N uvicorn workers whose hubs
share the jobs through Redis Streams; the page shows which worker served each
connection. ``--redis-url`` uses a running Redis instead of starting one.

Host, port and workers also come from ``STREAMFX_DEMO_HOST`` / ``STREAMFX_DEMO_PORT`` /
``STREAMFX_DEMO_WORKERS`` (the command-line options win). Defaults: 127.0.0.1:8000, a
256 MB file.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from .app import DemoConfig, create_app
from .bigfile import BigFile, MiB
from .redis_server import LocalRedis, RedisUnavailable
from .simulation import JobPlan


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("STREAMFX_DEMO_HOST", "127.0.0.1"))
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("STREAMFX_DEMO_PORT", "8000"))
    )
    parser.add_argument(
        "--workers", type=int, default=int(os.environ.get("STREAMFX_DEMO_WORKERS", "1"))
    )
    parser.add_argument("--redis-url", help="a running Redis to use instead of starting one")
    parser.add_argument("--file-mb", type=int, default=256, help="size of the download file")
    parser.add_argument("--job-steps", type=int, default=JobPlan.steps)
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    host = f"[{args.host}]" if ":" in args.host else args.host
    # SSE streams end at once on Ctrl-C (see drain_on_signals in the app); an export or
    # download still running gets 5 s to finish before it is cut.
    options: dict[str, Any] = {"host": args.host, "port": args.port, "log_level": "warning"}
    options["timeout_graceful_shutdown"] = 5
    if args.workers == 1 and args.redis_url is None:
        config = DemoConfig(file_mb=args.file_mb, job=JobPlan(steps=args.job_steps))
        app = create_app(config)
        print(f"streamfx demo: open http://{host}:{args.port}/  (Ctrl-C to stop)", flush=True)
        uvicorn.run(app, **options)
        return
    try:
        redis = contextlib.nullcontext(args.redis_url) if args.redis_url else local_redis()
        with redis as url, shared_file(args.file_mb) as data_dir:
            os.environ.update(
                STREAMFX_DEMO_FILE_MB=str(args.file_mb),
                STREAMFX_DEMO_DATA_DIR=str(data_dir),
                STREAMFX_DEMO_JOB_STEPS=str(args.job_steps),
                STREAMFX_DEMO_REDIS_URL=url,
                STREAMFX_DEMO_WORKERS=str(args.workers),
            )
            print(
                f"streamfx demo: open http://{host}:{args.port}/  ({args.workers} workers "
                f"on Redis {url}; Ctrl-C to stop)",
                flush=True,
            )
            uvicorn.run(
                "examples.demo.app:create_app_from_environment",
                factory=True,
                workers=args.workers,
                **options,
            )
    except RedisUnavailable as exc:
        sys.exit(f"make demo WORKERS={args.workers} needs Redis: {exc}")


@contextlib.contextmanager
def local_redis() -> Iterator[str]:
    server = LocalRedis()
    print(f"starting {server.binary} on 127.0.0.1:{server.port} (no persistence)", flush=True)
    with server:
        yield server.url


@contextlib.contextmanager
def shared_file(file_mb: int) -> Iterator[Path]:
    """The download file, written once before the workers start (they share it)."""
    directory = Path(tempfile.mkdtemp(prefix="streamfx-demo-"))
    try:
        print(f"writing the {file_mb} MB download file...", flush=True)
        BigFile(directory, file_mb * MiB).write()
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
