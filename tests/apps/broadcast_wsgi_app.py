"""A Flask app serving a `Broadcast` hub through `to_wsgi` (tests/test_broadcast_adapters.py,
under waitress in the test's process and under gunicorn's gthread worker).

- ``GET /events/<topic>``: the hub's SSE stream, resumed from ``Last-Event-ID``;
- ``POST /publish/<topic>``: publishes the request body (text); answers the event's id.
  The hub belongs to `background_loop()`, where `to_wsgi` runs the bodies, so the sync
  view hands the publish to that loop and waits for it (README, "Broadcast");
- ``GET /subscribers?until=N`` (with a `Subscriptions` watch): waits until ``N``
  subscriptions are open (10 s at most), then answers ``{"subscribers": the hub's
  count, "closed": subscriptions closed so far}``.

``gunicorn 'tests.apps.broadcast_wsgi_app:app_from_env()'`` serves a fresh hub with
its own watch.
"""

from __future__ import annotations

import asyncio
import threading

from flask import Flask, request

from streamfx.adapters.wsgi import WSGIStream, background_loop, to_wsgi
from streamfx.broadcast import Broadcast
from streamfx.metrics import NullMetrics, Outcome, set_metrics

HEARTBEAT = 0.2  # a WSGI server learns that a client left only when a write fails


class Subscriptions(NullMetrics):
    """The metrics hook that counts the hub's subscriptions (kind ``"broadcast"``),
    waitable from any thread."""

    def __init__(self) -> None:
        self.open = 0
        self.closed = 0
        self.changed = threading.Condition()

    def stream_opened(self, kind: str, name: str) -> None:
        if kind == "broadcast":
            with self.changed:
                self.open += 1
                self.changed.notify_all()

    def stream_closed(self, kind: str, name: str, duration: float, outcome: Outcome) -> None:
        if kind == "broadcast":
            with self.changed:
                self.open -= 1
                self.closed += 1
                self.changed.notify_all()

    def wait_for(self, count: int, seconds: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.open == count, seconds)


def create_app(hub: Broadcast, watch: Subscriptions | None = None) -> Flask:
    app = Flask(__name__)

    @app.get("/events/<topic>")
    def events(topic: str) -> WSGIStream:
        last_id = request.headers.get("last-event-id")
        return to_wsgi(hub.sse(topic, last_event_id=last_id, heartbeat=HEARTBEAT))

    @app.post("/publish/<topic>")
    def publish(topic: str) -> str:
        item = request.get_data(as_text=True)
        publishing = asyncio.run_coroutine_threadsafe(hub.publish(topic, item), background_loop())
        return publishing.result(timeout=5)

    if watch is not None:

        @app.get("/subscribers")
        def subscribers() -> dict[str, int]:
            watch.wait_for(int(request.args["until"]), 10)
            return {"subscribers": hub.subscribers, "closed": watch.closed}

    return app


def app_from_env() -> Flask:
    """A fresh hub, counted by a `Subscriptions` watch installed as the metrics hook."""
    watch = Subscriptions()
    set_metrics(watch)
    return create_app(Broadcast(), watch)
