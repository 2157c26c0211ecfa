"""`Part`: one part of a ``multipart/form-data`` upload, and the rules for its headers.

Header parameters are parsed with python-multipart's `parse_options_header`. Three small
rules are written here because no library gives them the way uploads need them:

- the exact ``Content-Disposition`` shape browsers send is read with one regular
  expression before falling back to `parse_options_header`, which costs as much as all
  the rest of a small part (see `disposition_params`; a property test checks that both
  agree);
- ``filename*=UTF-8''...`` (RFC 5987/6266). python-multipart drops every starred
  parameter, because RFC 7578 tells *senders* not to use them; some clients still do,
  and when one is present it is the one that carries the real (non-ASCII) name.
  The stdlib `email` package prefers the plain ``filename`` over it, which is the
  opposite of what RFC 6266 asks, so the starred value is decoded here with
  `urllib.parse.unquote`.
- Content-type patterns for ``allowed_types`` (``"image/png"``, ``"image/*"``,
  ``"*/*"``).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from functools import cache
from typing import Literal
from urllib.parse import unquote

from streamfx._upload.errors import MalformedUpload, UnsupportedMediaType

PartState = Literal["open", "done", "skipped", "closed"]

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PATTERN = re.compile(rf"(?:\*|{_TOKEN})/(?:\*|{_TOKEN})")
_FILENAME_STAR = re.compile(r";\s*filename\*\s*=\s*([^;\s]+)", re.IGNORECASE)
_EXT_VALUE = re.compile(r"([!#$%&+\-^_`{}~0-9A-Za-z]+)'[^']*'(.*)")
_SIMPLE_DISPOSITION = re.compile(rb'form-data; name="([^"\\]*)"(?:; filename="([^"\\]*)")?')
_DEFAULT_FILE_TYPE = "application/octet-stream"


class Part:
    """One part of a multipart upload: its headers, and its content as a stream.

    - `name`: the form field name (from ``Content-Disposition``).
    - `filename`: the file name sent by the client, or ``None`` for a plain field. It is
      the client's string, unchanged: never use it as a path without cleaning it.
    - `content_type`: the part's ``Content-Type`` header as sent, or ``None``.
    - `headers`: every header of the part, ``(name, value)`` pairs in order, names in
      lower case.

    ``async for chunk in part`` yields the content in order, in chunks of at most 64 KiB,
    as it is read from the request body. A part must be read before the next part is
    asked for: asking for the next part skips what is left of this one, and iterating a
    skipped part afterwards raises `RuntimeError` (its content is gone).
    """

    __slots__ = ("_read", "_state", "content_type", "filename", "headers", "name")

    def __init__(
        self,
        read: Callable[[Part], Awaitable[bytes]],
        name: str,
        filename: str | None,
        content_type: str | None,
        headers: list[tuple[str, str]],
    ) -> None:
        self._read = read  # the multipart stream's reader, which tracks `_state`
        self._state: PartState = "open"
        self.name = name
        self.filename = filename
        self.content_type = content_type
        self.headers = headers

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
        """The rest of the content as one ``bytes`` (at most ``max_part_size`` bytes)."""
        chunks = [chunk async for chunk in self]
        return b"".join(chunks)

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


def describe_part(
    raw_headers: list[tuple[bytes, bytes]], allowed_types: tuple[str, ...] | None
) -> tuple[str, str | None, str | None, list[tuple[str, str]]]:
    """Name, filename, content type and decoded headers of a part, checked.

    Raises `MalformedUpload` when ``Content-Disposition`` is missing, is not
    ``form-data`` or has no ``name`` (RFC 7578, section 4.2), and `UnsupportedMediaType`
    when the part is a file whose type does not match `allowed_types` (a file sent
    without a ``Content-Type`` counts as ``application/octet-stream``).
    """
    headers: list[tuple[str, str]] = []
    disposition = raw_content_type = None
    for raw_key, raw_value in raw_headers:
        key = raw_key.decode("latin-1").lower()
        if key == "content-disposition" and disposition is None:
            disposition = raw_value
        elif key == "content-type" and raw_content_type is None:
            raw_content_type = raw_value
        headers.append((key, decode_text(raw_value)))
    if disposition is None:
        raise MalformedUpload("a part has no Content-Disposition header")
    raw_name, raw_filename = disposition_params(disposition)
    name = decode_text(raw_name)
    filename = _filename_star(disposition) if b"*" in disposition else None
    if filename is None and raw_filename is not None:
        filename = decode_text(raw_filename)
    content_type = None if raw_content_type is None else decode_text(raw_content_type)
    if filename is not None and allowed_types is not None:
        media = media_type(content_type or _DEFAULT_FILE_TYPE)
        if not any(type_matches(media, pattern) for pattern in allowed_types):
            allowed = ", ".join(allowed_types) or "none (no files are accepted)"
            raise UnsupportedMediaType(f"file {name!r} has type {media!r}; allowed: {allowed}")
    return name, filename, content_type, headers


def disposition_params(disposition: bytes) -> tuple[bytes, bytes | None]:
    """The raw ``name`` and ``filename`` of a ``form-data`` Content-Disposition.

    The exact shape every browser sends (``form-data; name="..."`` and optionally
    ``; filename="..."``, no escapes) is read with one regular expression; anything
    else goes through python-multipart's `parse_options_header`. Both give the same
    result on that shape (a property test checks it); the fast path exists because the
    general parser costs about 5 microseconds a part, as much as all the rest.
    """
    simple = _SIMPLE_DISPOSITION.fullmatch(disposition)
    if simple is not None:
        return simple.group(1), simple.group(2)
    kind, params = _parse_options_header()(disposition)
    if kind != b"form-data":
        raise MalformedUpload(
            f"a part's Content-Disposition is {kind.decode('latin-1')!r}, not 'form-data'"
        )
    raw_name = params.get(b"name")
    if raw_name is None:
        raise MalformedUpload("a part's Content-Disposition has no name")
    return raw_name, params.get(b"filename")


@cache
def _parse_options_header() -> Callable[[bytes], tuple[bytes, dict[bytes, bytes]]]:
    from python_multipart.multipart import parse_options_header

    return parse_options_header


def _filename_star(disposition: bytes) -> str | None:
    match = _FILENAME_STAR.search(disposition.decode("latin-1"))
    if match is None:
        return None
    ext = _EXT_VALUE.fullmatch(match.group(1).strip('"'))
    if ext is None:
        raise MalformedUpload("a part's filename* is not charset'language'value")
    charset, value = ext.groups()
    try:
        codecs.lookup(charset)
        return unquote(value, encoding=charset, errors="strict")
    except (LookupError, UnicodeDecodeError) as exc:
        raise MalformedUpload(f"a part's filename* cannot be decoded as {charset}") from exc


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
