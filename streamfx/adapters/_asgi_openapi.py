"""`openapi`: the OpenAPI description of a route that returns a streamfx response.

Re-exported by `streamfx.adapters.asgi`. FastAPI documents the body of a route's
successful answer with its ``response_class``'s ``media_type``; the default
(``JSONResponse``) lists every stream as ``application/json``. A streamed route says
what it sends with two of FastAPI's own arguments::

    from fastapi import Response

    @app.get(
        "/events",
        response_class=Response,  # a body FastAPI does not describe: no JSON
        responses=openapi("text/event-stream"),  # the body it sends
    )
    async def events() -> Response:
        return to_asgi(sse(feed()))

(``response_class`` is used here for the description only: the endpoint's
`StreamingASGIResponse` is sent as it is. Not ``response_class=StreamingASGIResponse``:
FastAPI reads the default status of a response class from its constructor's
``status_code`` parameter, which that class, built from a `StreamResponse`, lacks.)

`openapi` builds only the plain dict FastAPI's ``responses=`` takes (FastAPI is not
imported): the media types under the success status, and a short ``text/plain`` body
under each error status streamfx may answer with (`error_response`).

Hand-written: a dict of a few keys, which no library builds for FastAPI's argument.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streamfx.adapters._common import reason_phrase

__all__ = ["openapi"]


def openapi(
    *media_types: str,
    status: int = 200,
    description: str = "A stream",
    errors: Iterable[int] = (),
) -> dict[int | str, dict[str, Any]]:
    """FastAPI's ``responses=`` for a route answering `status` with `media_types`.

    Each media type (``"text/event-stream"``, ``"application/x-ndjson"``,
    ``"text/csv"``, a file's type) is listed under `status` with a string schema;
    `description` is that answer's description (with no media type, `status` is left to
    FastAPI: a route that answers JSON itself documents only its `errors`). Each code in
    `errors` (``(403, 404, 416)`` for a download, ``(400, 408, 413, 415)`` for an
    upload) is listed with its reason phrase and a ``text/plain`` body, as
    `error_response` answers it.

    Raises `ValueError` for neither a media type nor an error code, a media type that is
    not ``type/subtype`` (or holds a parameter, whitespace or a control character), a
    `status` outside 200..299 or an error code outside 400..599; `TypeError` for
    arguments of the wrong type.
    """
    if isinstance(errors, int | str):
        raise TypeError(f"errors must be status codes such as (403, 404), not {errors!r}")
    codes = list(errors)
    if not media_types and not codes:
        raise ValueError(
            'openapi() documents nothing: give a media type (e.g. "text/event-stream") '
            "or error codes"
        )
    for media_type in media_types:
        _check_media_type(media_type)
    _check_status("status", status, 200, 299)
    for code in codes:
        _check_status("an error code", code, 400, 599)
    if not isinstance(description, str):
        raise TypeError(f"description must be a str, not {type(description).__name__}")
    documented: dict[int | str, dict[str, Any]] = {}
    if media_types:
        documented[status] = {
            "description": description,
            "content": {media_type: {"schema": {"type": "string"}} for media_type in media_types},
        }
    for code in codes:
        documented[code] = {
            "description": reason_phrase(code) or "Error",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    return documented


def _check_media_type(media_type: object) -> None:
    if not isinstance(media_type, str):
        raise TypeError(f"a media type must be a str, not {type(media_type).__name__}")
    kind, slash, subtype = media_type.partition("/")
    if (
        not slash
        or not kind
        or not subtype
        or "/" in subtype
        or not media_type.isascii()
        or not media_type.isprintable()
        or any(char in media_type for char in ' \t;,"')
    ):
        raise ValueError(
            f"{media_type!r} is not a media type (type/subtype, no parameters), "
            'e.g. "text/event-stream" or "application/x-ndjson"'
        )


def _check_status(what: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{what} must be in {low}..{high}, got {value}")
