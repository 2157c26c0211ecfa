"""`StreamResponse`: a framework-neutral streaming HTTP response.

Response builders (`sse`, `export`, `download`) return one; adapters in
`streamfx.adapters` turn it into an ASGI, aiohttp or WSGI response. Nothing here knows
about any framework.

What an adapter promises to do with it:

- call `for_request(method, headers)` first, so that responses that depend on the
  request (a download's Range and conditional headers, HEAD) see them;
- pull the first body chunk *before* sending the status line, so that an error raised
  before any byte is produced can still become a 500 (or the error's ``status``);
- after the status line, an error from the body aborts the connection instead of
  ending the body cleanly, so that a client never takes a truncated body as complete;
- close the body (``aclose()``) exactly once when it stops iterating for any reason,
  which cancels its pipeline and runs every finalizer;
- when `file` is set and the server supports a zero-copy send (ASGI ``pathsend`` or
  ``zerocopysend``, aiohttp ``sendfile``), it may send that file range instead of
  iterating `body`, and must still close `body`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

Headers = list[tuple[str, str]]

HeadersInput: TypeAlias = (
    Mapping[str, str] | Mapping[bytes, bytes] | Iterable[tuple[str | bytes, str | bytes]]
)
"""Request headers as a framework gives them: a mapping (a ``dict``, Starlette's
``Headers``, aiohttp's ``CIMultiDictProxy``, Django's ``request.headers``...) or an
iterable of ``(name, value)`` pairs (WSGI-style ``str`` pairs, ASGI's raw ``bytes``
pairs), repeated names included. Names may be in any case; ``bytes`` are decoded as
latin-1."""


@dataclass(frozen=True, slots=True)
class FileRange:
    """A byte range of a file on disk that an adapter may send with zero copy."""

    path: Path
    offset: int
    length: int


@dataclass(slots=True)
class StreamResponse:
    """Status, headers and a body of bytes chunks.

    `headers` are ``(name, value)`` pairs as they go on the wire (names in lower case
    are fine; values are already validated by the builder: no CR or LF). `body` is an
    async iterable of ``bytes``; an empty ``bytes`` chunk may be skipped.
    """

    status: int
    headers: Headers
    body: AsyncIterable[bytes]
    file: FileRange | None = None
    respond_to: Callable[[str, HeadersInput], StreamResponse] | None = field(
        default=None, repr=False
    )

    def for_request(self, method: str, headers: HeadersInput) -> StreamResponse:
        """The response to send for a request with this `method` and these `headers`
        (any `HeadersInput`: a mapping or an iterable of pairs, as the framework gives
        them).

        Builders that depend on the request set `respond_to`; the original response's
        body, never iterated, is simply dropped.
        """
        if self.respond_to is None:
            return self
        return self.respond_to(method, headers)

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None

    async def aclose(self) -> None:
        """Close the body if it can be closed (async generators can)."""
        aclose = getattr(self.body, "aclose", None)
        if aclose is not None:
            await aclose()
