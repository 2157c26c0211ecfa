"""Testing streams in process: read an endless stream, stop when you have seen enough.

Why this exists: the usual test clients wait for a response body to end, and an SSE
body never ends. Starlette's ``TestClient`` gets the first event, then hangs on close;
httpx's ``ASGITransport`` collects the whole body before it returns anything. So this
module is its own small ASGI client, written for streams (no server, no socket, no
test framework: it imports the standard library and streamfx only).

- `connect(app, path)`: runs any ASGI application (Starlette, FastAPI, Litestar, a
  bare ``to_asgi(...)``) in a task with one HTTP request, and yields a `StreamClient`
  once the application has started its response (``status``, ``headers``).
- `open_response(response)`: the same for a `StreamResponse` you built, without any
  adapter: its body is pulled in a task (after ``for_request(method, headers)``).
- `lifespan(app)`: runs the application's lifespan (startup, then shutdown) around a
  block and yields its state, to pass to `connect` as ``state=``.
- `capture_metrics()`: installs an `InMemoryMetrics` hook for the duration of a
  ``with`` block, so a test can assert on what the streams reported.

What the client promises:

- Reading is bounded in time and in memory. Each read takes `within=` (seconds) and
  raises `StreamTimeout` (a `TimeoutError` carrying what it read) when it passes; the
  stream stays usable. At most `capacity` body chunks wait to be read: past that the
  application's ``send`` blocks, as it would on a slow socket (backpressure).
- `StreamClient.events` stops after `count` events, at the first event `until`
  accepts (included), or at the end of the body, whichever comes first. Events are
  decoded by `SSEDecoder`; comments (heartbeats) are not events.
- Leaving the ``async with`` block disconnects, however it is left. For an ASGI
  application: ``receive()`` answers ``http.disconnect`` and a ``send()`` raises
  `ClientDisconnected` (an `OSError`, as the ASGI spec lets a server do), then the
  block waits up to `disconnect_timeout` for the application to return, so its
  finalizers have run when the block exits. One that does not return in time is
  cancelled and `AppDidNotReturn` is raised. For a `StreamResponse`: the task pulling
  the body is cancelled and awaited, which closes the body and runs its finalizers.
- An application that raises is not hidden: before the response starts, its error is
  raised from `connect`; after, reading raises `StreamAborted` (what a real client sees
  as a broken connection) and leaving the block re-raises the error itself when
  nothing else is being raised.
"""

from streamfx.testing._asgi import LifespanFailed, connect, lifespan
from streamfx.testing._client import (
    DEFAULT_TIMEOUT,
    AppDidNotReturn,
    ClientDisconnected,
    StreamAborted,
    StreamClient,
    StreamTimeout,
    capture_metrics,
    open_response,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "AppDidNotReturn",
    "ClientDisconnected",
    "LifespanFailed",
    "StreamAborted",
    "StreamClient",
    "StreamTimeout",
    "capture_metrics",
    "connect",
    "lifespan",
    "open_response",
]
