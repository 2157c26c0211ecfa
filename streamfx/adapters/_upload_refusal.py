"""Whether a refused upload's answer closes the connection (ASGI and Quart helpers).

What the application leaves unread of a request body, uvicorn reads and drops before
it serves the next request on the connection, for as long as the client sends
(hypercorn closes instead). So a refused upload is answered with ``Connection: close``
(`refusal_headers`), unless what is left of its body is known to be at most
`LINGER_BYTES`: then the server reads it and the connection stays usable, and a client
that sends its whole body before it reads the answer (most clients do) gets the answer
rather than a connection reset. What is left is known from ``Content-Length`` and the
bytes the upload helper took, recorded for the request's task in a `BodyState` (a
context variable: ``error_response`` is called in the same task, or in a copy of its
context).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Final

from streamfx.adapters._common import ErrorAnswer

LINGER_BYTES: Final = 1 << 20
"""The most of a refused body left for the server to read and drop; with more left, or
an unknown amount, the connection is closed."""


class BodyState:
    """How much of the request body is left (None: unknown), and whether it ended. The
    upload helper updates `left` and `ended` as it takes the body."""

    __slots__ = ("ended", "left")

    def __init__(self, length: int | None) -> None:
        self.left = length
        self.ended = length == 0

    def took(self, size: int) -> None:
        """`size` more bytes of the body were taken."""
        if self.left is not None:
            self.left -= size


_body_state: ContextVar[BodyState | None] = ContextVar("streamfx_upload_body", default=None)


def track_body(length: int | None) -> BodyState:
    """A `BodyState` for this request's body (declared `length`), recorded for
    `refusal_headers`."""
    state = BodyState(length)
    _body_state.set(state)
    return state


def refusal_headers(answer: ErrorAnswer) -> list[tuple[str, str]]:
    """The headers of `answer`, with ``Connection: close`` when it refuses an upload
    (`ErrorAnswer.close`) whose body, as the helper saw it in this task, has more than
    `LINGER_BYTES` left or an unknown amount (see the module docstring)."""
    if not answer.close:
        return answer.headers
    state = _body_state.get()
    if state is not None and (
        state.ended or (state.left is not None and state.left <= LINGER_BYTES)
    ):
        return answer.headers
    return [*answer.headers, ("connection", "close")]
