"""gunicorn settings for the soak's WSGI target: drain open streams on SIGTERM."""

from __future__ import annotations

from typing import Any

import streamfx


def post_worker_init(worker: Any) -> None:
    """The worker has installed its signal handlers: chain streamfx's drain before them."""
    streamfx.drain_on_signals()
