"""`Part`: one part of a ``multipart/form-data`` upload, and the rules for its headers.

- ``Content-Disposition`` is parsed once, by `streamfx._upload.params.parse_params`
  (``filename*`` and ``name*`` are ignored, RFC 7578 section 4.2). What the client sent
  as the file name stays in `Part.raw_filename`; `Part.filename` is the cleaned name
  (`clean_filename`): a base name with no path separator and no control character.
- Header text is UTF-8 (what browsers send), or Latin-1 when it is not valid UTF-8.
- Content-type patterns for ``allowed_types`` (``"image/png"``, ``"image/*"``,
  ``"*/*"``), checked against a file part's declared ``Content-Type``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from streamfx._upload.errors import MalformedUpload, UnsupportedMediaType, shown
from streamfx._upload.params import parse_params

if TYPE_CHECKING:
    import os

PartState = Literal["open", "done", "skipped", "closed"]

_PATTERN = re.compile(r"(?:\*|[!#$%&'*+\-.^_`|~0-9A-Za-z]+)/(?:\*|[!#$%&'*+\-.^_`|~0-9A-Za-z]+)")
_SEPARATORS = re.compile(r"[/\\]")
_DEFAULT_FILE_TYPE: Final = "application/octet-stream"
_DISPOSITION: Final = "a part's Content-Disposition"


class Part:
    """One part of a multipart upload: its headers, and its content as a stream.

    - `name`: the form field name (from ``Content-Disposition``).
    - `filename`: ``None`` for a plain field; for a file, the name the client sent
      cleaned to a base name (`clean_filename`: no ``/`` or ``\\``, no control or format
      character, no NUL; ``""`` when nothing usable is left). Still the client's choice:
      `save` is the safe way to turn it into a path.
    - `raw_filename`: the file name exactly as sent (decoded, unescaped), or ``None``.
      Never use it as a path.
    - `content_type`: the part's ``Content-Type`` header as sent, or ``None``.
    - `headers`: every header of the part, ``(name, value)`` pairs in order, names in
      lower case.

    ``async for chunk in part`` yields the content in order, in chunks of at most 64 KiB,
    as it is read from the request body. A part must be read before the next part is
    asked for: asking for the next part skips what is left of this one, and iterating a
    skipped part afterwards raises `RuntimeError` (its content is gone).
    """

    __slots__ = (
        "_raw_headers",
        "_read",
        "_state",
        "_whole",
        "content_type",
        "filename",
        "name",
        "raw_filename",
    )

    def __init__(
        self,
        read: Callable[[Part], Awaitable[bytes]],
        name: str,
        raw_filename: str | None,
        content_type: str | None,
        raw_headers: list[tuple[bytes, bytes]],
    ) -> None:
        self._read = read  # the multipart stream's reader, which tracks `_state`
        self._state: PartState = "open"
        self._whole: bytes | None = None  # all the content, when the scanner had it at once
        self.name = name
        self.raw_filename = raw_filename
        self.filename = None if raw_filename is None else clean_filename(raw_filename)
        self.content_type = content_type
        self._raw_headers = raw_headers

    @property
    def headers(self) -> list[tuple[str, str]]:
        """Every header of the part, ``(name, value)`` in order, names in lower case."""
        return [(key.decode("latin-1"), decode_text(value)) for key, value in self._raw_headers]

    def header(self, name: str) -> str | None:
        """The value of the first header called `name` (any case), or ``None``."""
        wanted = name.lower()
        for key, value in self.headers:
            if key == wanted:
                return value
        return None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    def __anext__(self) -> Awaitable[bytes]:
        return self._read(self)

    async def read(self) -> bytes:
        """The rest of the content as one ``bytes`` (at most the part's size limit)."""
        chunks = [chunk async for chunk in self]
        return b"".join(chunks)

    async def save(
        self, destination: str | os.PathLike[str] | None = None, *, overwrite: bool = False
    ) -> Path:
        """Write the rest of the content to a file without blocking the event loop, and
        return the file's path. See `streamfx._upload.save.save_part` for the rules
        (where the file goes, what happens on failure: nothing is left behind)."""
        from streamfx._upload.save import save_part

        return await save_part(self, destination, overwrite=overwrite)

    def __repr__(self) -> str:
        return (
            f"Part(name={self.name!r}, filename={self.filename!r}, "
            f"content_type={self.content_type!r})"
        )


def decode_text(raw: bytes) -> str:
    """Header text: UTF-8 (what browsers send), or Latin-1 when it is not valid UTF-8."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def clean_filename(raw: str) -> str:
    """The base name of a client's file name, safe to show and to use in a directory.

    What follows the last ``/`` or ``\\`` (both are separators, whatever the server's
    system); every character `str.isprintable` refuses (NUL and the other control
    characters, format characters such as U+202E, line separators, unassigned code
    points) becomes ``_``; surrounding spaces are dropped; ``.`` and ``..`` become ``""``.
    """
    name = _SEPARATORS.split(raw)[-1]
    if not name.isprintable():
        name = "".join(ch if ch.isprintable() else "_" for ch in name)
    name = name.strip(" ")
    return "" if name in (".", "..") else name


def describe_part(
    raw_headers: list[tuple[bytes, bytes]],
    allowed_types: tuple[str, ...] | None,
    read: Callable[[Part], Awaitable[bytes]],
) -> Part:
    """The `Part` of a part's raw headers (names in lower case), checked.

    Raises `MalformedUpload` when ``Content-Disposition`` is missing, given twice, not
    ``form-data``, has no ``name`` or breaks the grammar of
    `streamfx._upload.params`, and `UnsupportedMediaType` when the part is a file whose
    type does not match `allowed_types` (a file sent without a ``Content-Type`` counts
    as ``application/octet-stream``).
    """
    disposition = raw_content_type = None
    for key, value in raw_headers:
        if key == b"content-disposition":
            if disposition is not None:
                raise MalformedUpload("a part has two Content-Disposition headers")
            disposition = value
        elif key == b"content-type":
            if raw_content_type is not None:
                raise MalformedUpload("a part has two Content-Type headers")
            raw_content_type = value
    if disposition is None:
        raise MalformedUpload("a part has no Content-Disposition header")
    kind, params = parse_params(disposition, _DISPOSITION)
    if kind != b"form-data":
        raise MalformedUpload(f"{_DISPOSITION} is {shown(kind.decode())}, not 'form-data'")
    raw_name = params.get(b"name")
    if raw_name is None:
        raise MalformedUpload(f"{_DISPOSITION} has no name")
    return make_part(
        raw_name, params.get(b"filename"), raw_content_type, raw_headers, allowed_types, read
    )


def make_part(
    raw_name: bytes,
    raw_filename: bytes | None,
    raw_content_type: bytes | None,
    raw_headers: list[tuple[bytes, bytes]],
    allowed_types: tuple[str, ...] | None,
    read: Callable[[Part], Awaitable[bytes]],
) -> Part:
    """The `Part` of the values a ``Content-Disposition`` and ``Content-Type`` gave,
    checked against `allowed_types` (see `describe_part`)."""
    name = decode_text(raw_name)
    filename = None if raw_filename is None else decode_text(raw_filename)
    content_type = None if raw_content_type is None else decode_text(raw_content_type)
    if filename is not None and allowed_types is not None:
        media = media_type(content_type or _DEFAULT_FILE_TYPE)
        if not any(type_matches(media, pattern) for pattern in allowed_types):
            allowed = ", ".join(allowed_types) or "none (no files are accepted)"
            raise UnsupportedMediaType(
                f"file {shown(name)} has type {shown(media)}; allowed: {allowed}"
            )
    return Part(read, name, filename, content_type, raw_headers)


def media_type(content_type: str) -> str:
    """``"Image/PNG; q=1"`` -> ``"image/png"``."""
    return content_type.split(";", 1)[0].strip().lower()


def type_matches(media: str, pattern: str) -> bool:
    """True if `media` (``"image/png"``) matches `pattern` (``"image/png"``, ``"image/*"``,
    ``"*/*"``)."""
    if pattern == "*/*":
        return True
    if pattern.endswith("/*"):
        return media.startswith(pattern[:-1])
    return media == pattern


def check_allowed_types(allowed_types: Iterable[str] | None) -> tuple[str, ...] | None:
    """Validate and normalize (lower case) the ``allowed_types`` patterns.

    Raises `TypeError` for a lone string (a common slip for a one-item list) and
    `ValueError` for a pattern that is not ``type/subtype``, ``type/*`` or ``*/*``. An
    empty collection is allowed: it refuses every file and accepts plain fields.
    """
    if allowed_types is None:
        return None
    if isinstance(allowed_types, str | bytes):
        raise TypeError("allowed_types must be a collection of patterns, not a single string")
    patterns = tuple(allowed_types)
    for pattern in patterns:
        if not isinstance(pattern, str) or not _PATTERN.fullmatch(pattern):
            raise ValueError(
                f"allowed_types pattern {pattern!r} is not 'type/subtype', 'type/*' or '*/*'"
            )
        if pattern.startswith("*/") and pattern != "*/*":
            raise ValueError(f"allowed_types pattern {pattern!r}: only '*/*' may start with '*'")
    return tuple(pattern.lower() for pattern in patterns)
