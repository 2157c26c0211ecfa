"""Multipart uploads in a Quart view: ``request.body`` fed to `parse_multipart`
(private; re-exported as `streamfx.adapters.quart.parts`).

Quart reads the request body itself: a task of Quart's takes every ASGI
``http.request`` message as it arrives and appends it to ``request.body``, which a view
may iterate chunk by chunk. `parts` iterates it into the one parser every adapter runs,
with the same limits, the same declared-length check (a ``Content-Length`` over
``max_size`` is refused before a byte is parsed) and the same read rule
(`streamfx.adapters._upload_body`: ``read_timeout``, ``min_rate``, `UploadTimeout`,
408) applied to the waits for the next chunk.

What Quart decides, not streamfx:

- Quart reads ahead of the view: what the client sends is taken off the socket while
  the parser works, and held in ``request.body`` until the view takes it (there is no
  backpressure to the client). Quart bounds what it holds unread with
  ``MAX_CONTENT_LENGTH`` (16 MiB by default) and refuses a declared
  ``Content-Length`` over it; either becomes `UploadTooLarge` (413) here, naming the
  setting. Keep ``MAX_CONTENT_LENGTH`` at least a few MiB above what a view may lag
  behind the network (a view that writes parts to a slow disk, say).
- A client that leaves mid-upload: Quart sees ``http.disconnect`` and cancels the
  view's task, so the view gets `asyncio.CancelledError` (not an `UploadError`):
  clean up what was stored in a ``finally`` or ``except BaseException`` block.
- A refused upload: the server would read and drop the rest of the body before it
  serves the next request on the connection, for as long as the client sends. So
  ``error_response`` answers an `UploadError` with ``Connection: close`` unless little
  of the body is left (`streamfx.adapters._upload_refusal`, the ASGI helper's rule;
  what `parts` took is recorded for it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Unpack

from quart import Request
from werkzeug.exceptions import RequestEntityTooLarge

from streamfx._upload.errors import UploadTooLarge
from streamfx._upload.stream import PartStream
from streamfx.adapters._upload_body import (
    MIN_RATE,
    READ_TIMEOUT,
    UploadOptions,
    parse_upload,
    timed_body,
)
from streamfx.adapters._upload_refusal import track_body


def parts(
    request: Request,
    *,
    max_size: int,
    max_part_size: int,
    max_parts: int,
    read_timeout: float | None = READ_TIMEOUT,
    min_rate: int | None = MIN_RATE,
    **options: Unpack[UploadOptions],
) -> PartStream:
    """The parts of the Quart `request`'s ``multipart/form-data`` body, parsed as the
    view asks for them (the body must not have been read: no ``await request.body``,
    ``get_data`` or ``files`` before).

        async with parts(request, max_size=..., max_part_size=..., max_parts=...) as stream:
            async for part in stream:
                async for chunk in part: ...

    The limits, and every other keyword argument (`UploadOptions`: ``max_file_size``,
    ``allowed_types``, ``sniff``...), are `streamfx.parse_multipart`'s; `read_timeout`
    and `min_rate` the read rule (None turns either off). Raised at once:
    `UploadTooLarge` when ``Content-Length`` passes `max_size` (or Quart's
    ``MAX_CONTENT_LENGTH``), `UnsupportedMediaType` / `MalformedUpload` for a request
    that is not multipart or has no boundary. While iterating: `UploadTooLarge` (413),
    `UnsupportedMediaType` (415), `MalformedUpload` (400), `UploadTimeout` (408).
    Answer any of them with ``error_response(exc)`` (or register it as the app's
    error handler for `streamfx.StreamfxError`). See the module docstring for what
    Quart does with the body.
    """
    receive_chunk = partial(_receive_chunk, aiter(request.body))
    length = request.content_length
    body = timed_body(receive_chunk, read_timeout, min_rate, track_body(length))
    return parse_upload(
        body,
        request.headers.get("Content-Type"),
        length,
        max_size=max_size,
        max_part_size=max_part_size,
        max_parts=max_parts,
        **options,
    )


async def _receive_chunk(chunks: AsyncIterator[bytes]) -> tuple[bytes, bool]:
    """The next chunk of ``request.body`` and whether more may follow (`ReceiveChunk`);
    Quart's refusal past ``MAX_CONTENT_LENGTH`` is `UploadTooLarge`."""
    try:
        return await anext(chunks), True
    except StopAsyncIteration:
        return b"", False
    except RequestEntityTooLarge:
        raise UploadTooLarge(
            "the upload is larger than the server accepts (MAX_CONTENT_LENGTH)",
            limit="MAX_CONTENT_LENGTH",
        ) from None
