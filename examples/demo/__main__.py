"""Start the demo: ``python -m examples.demo [--host H] [--port P] [--file-mb N]``.

Host and port also come from ``STREAMFX_DEMO_HOST`` / ``STREAMFX_DEMO_PORT`` (the
command-line options win). Defaults: 127.0.0.1:8000, a 256 MB file.
"""

from __future__ import annotations

import argparse
import os

import uvicorn

from .app import DemoConfig, create_app
from .jobs import JobPlan


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("STREAMFX_DEMO_HOST", "127.0.0.1"))
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("STREAMFX_DEMO_PORT", "8000"))
    )
    parser.add_argument("--file-mb", type=int, default=256, help="size of the download file")
    parser.add_argument("--job-steps", type=int, default=JobPlan.steps)
    args = parser.parse_args(argv)
    app = create_app(DemoConfig(file_mb=args.file_mb, job=JobPlan(steps=args.job_steps)))
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"streamfx demo: open http://{host}:{args.port}/  (Ctrl-C to stop)", flush=True)
    # SSE streams end at once on Ctrl-C (see drain_on_signals in the app); an export or
    # download still running gets 5 s to finish before it is cut.
    uvicorn.run(
        app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=5
    )


if __name__ == "__main__":
    main()
