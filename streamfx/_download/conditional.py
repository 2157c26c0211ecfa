"""Validators and conditional requests (RFC 9110 sections 8.8 and 13).

A file's validators are a **strong** ``ETag`` made of its modification time (in
nanoseconds) and size, as nginx does, and its ``Last-Modified`` date. Strong, so that
``If-Range`` (which needs a strong match) lets a client resume a download.

`evaluate_preconditions` follows the order of RFC 9110 13.2.2:

1. ``If-Match`` (strong comparison, ``*`` matches) fails -> 412;
2. else ``If-Unmodified-Since`` (a valid date) older than the file -> 412;
3. ``If-None-Match`` (weak comparison, ``*`` matches) matches -> 304 for GET and HEAD,
   412 for other methods; when present, ``If-Modified-Since`` is not looked at;
4. else, for GET and HEAD, ``If-Modified-Since`` (a valid date, a single one) not older
   than the file -> 304.

`if_range_allows` answers whether a ``Range`` may be honoured: an entity-tag must
match strongly (a weak one never does), a date must equal ``Last-Modified`` exactly.

A header sent on several lines (RFC 9110 5.3): ``If-Match`` and ``If-None-Match`` are
lists, so their lines combine into one list (``If-None-Match: "a"`` and
``If-None-Match: "b"`` match either tag). ``If-Modified-Since`` and
``If-Unmodified-Since`` hold one date, so a repeated one is ignored; so is a repeated
``If-Range``, which then never allows the Range (the whole file is sent). A repeated
``Range`` is malformed and is ignored by `download` (200 with the whole file), as
servers do.

Dates are read with `email.utils.parsedate_to_datetime`, which takes the three
HTTP-date forms (IMF-fixdate, RFC 850, asctime); an invalid date makes its header be
ignored, as RFC 9110 says.
"""

from __future__ import annotations

import email.utils
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC

from streamfx._response.response import HeadersInput

_ENTITY_TAG = re.compile(r'(W/)?"([^"]*)"')


class RequestHeaders:
    """Case-insensitive read access to request headers (any `HeadersInput`).

    A mapping is read through its ``items()`` when it has one, so multi-dicts
    (Starlette ``Headers``, ``multidict``) give every line of a repeated header; any
    other iterable must yield ``(name, value)`` pairs. Anything else raises `TypeError`
    when the object is built, naming what was wrong.

    `get` joins several lines of the same header with ``", "``, which is what they
    mean for list-valued headers such as ``If-None-Match`` (RFC 9110 5.3); `single`
    gives a header's value only when it came on exactly one line, for headers that
    allow one value (``Range``, ``If-Range``, the dates).
    """

    __slots__ = ("_fields",)

    def __init__(self, headers: HeadersInput) -> None:
        fields: dict[str, list[str]] = {}
        for name, value in _pairs(headers):
            fields.setdefault(name.lower(), []).append(value)
        self._fields = fields

    def get(self, name: str) -> str | None:
        values = self._fields.get(name.lower())
        return None if values is None else ", ".join(values)

    def single(self, name: str) -> str | None:
        """The value of `name` if it came on exactly one line, else None."""
        values = self._fields.get(name.lower(), ())
        return values[0] if len(values) == 1 else None

    def count(self, name: str) -> int:
        return len(self._fields.get(name.lower(), ()))


def _pairs(headers: object) -> Iterator[tuple[str, str]]:
    if isinstance(headers, str | bytes | bytearray | memoryview):
        raise TypeError(
            "request_headers must be a mapping or an iterable of (name, value) pairs, "
            f"not {type(headers).__name__}"
        )
    items = getattr(headers, "items", None)
    if callable(items):
        pairs = items()
    elif isinstance(headers, Iterable):
        pairs = headers
    else:
        raise TypeError(
            "request_headers must be a mapping or an iterable of (name, value) pairs, "
            f"not {type(headers).__name__}"
        )
    for pair in pairs:
        if isinstance(pair, str | bytes) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise TypeError(f"each request header must be a (name, value) pair, got {pair!r:.80}")
        name, value = pair
        yield _text(name, "name"), _text(value, "value")


def _text(field: object, what: str) -> str:
    if isinstance(field, str):
        return field
    if isinstance(field, bytes | bytearray):
        return bytes(field).decode("latin-1")
    raise TypeError(f"a request header {what} must be str or bytes, not {type(field).__name__}")


@dataclass(frozen=True, slots=True)
class Validators:
    """A representation's strong entity-tag (quoted) and modification time (seconds)."""

    etag: str
    modified: int

    @classmethod
    def from_stat(cls, stat: os.stat_result) -> Validators:
        return cls(f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"', int(stat.st_mtime))

    @property
    def last_modified(self) -> str:
        """The ``Last-Modified`` value (an IMF-fixdate)."""
        return http_date(self.modified)


def http_date(timestamp: float) -> str:
    """`timestamp` (seconds since the epoch) as an IMF-fixdate, e.g.
    ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return email.utils.formatdate(timestamp, usegmt=True)


def parse_http_date(value: str) -> int | None:
    """Seconds since the epoch for an HTTP-date in any of its three forms, else None."""
    try:
        moment = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:  # asctime dates carry no zone; HTTP dates are in GMT
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _tags(value: str) -> list[tuple[bool, str]]:
    """The ``(weak, opaque)`` entity-tags listed in `value`."""
    return [(bool(weak), opaque) for weak, opaque in _ENTITY_TAG.findall(value)]


def _matches(value: str, etag: str, *, weak: bool) -> bool:
    if value.strip() == "*":
        return True
    ((_, own),) = _tags(etag)
    return any(opaque == own and (weak or not is_weak) for is_weak, opaque in _tags(value))


def evaluate_preconditions(
    method: str, headers: RequestHeaders, validators: Validators
) -> int | None:
    """304 or 412 when a precondition says so, else None (go on); see the module doc."""
    if_match = headers.get("if-match")
    if if_match is not None:
        if not _matches(if_match, validators.etag, weak=False):
            return 412
    else:
        since = _single_date(headers, "if-unmodified-since")
        if since is not None and validators.modified > since:
            return 412
    safe = method in ("GET", "HEAD")
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        if _matches(if_none_match, validators.etag, weak=True):
            return 304 if safe else 412
        return None
    if safe:
        since = _single_date(headers, "if-modified-since")
        if since is not None and validators.modified <= since:
            return 304
    return None


def if_range_allows(value: str, validators: Validators) -> bool:
    """True if a ``Range`` under this ``If-Range`` value may be honoured."""
    value = value.strip()
    if value.startswith(('"', "W/")):
        tags = _tags(value)
        return len(tags) == 1 and not tags[0][0] and f'"{tags[0][1]}"' == validators.etag
    return parse_http_date(value) == validators.modified


def _single_date(headers: RequestHeaders, name: str) -> int | None:
    value = headers.single(name)
    # An HTTP-date holds at most one comma (after the day name); more means a list.
    return None if value is None or value.count(",") > 1 else parse_http_date(value)
