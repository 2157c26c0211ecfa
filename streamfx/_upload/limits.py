"""The limits of one upload, checked when `parse_multipart` is called.

Each limit is a positive int named after its `parse_multipart` parameter; every
`UploadTooLarge` names the one that was passed, with its value. How each is enforced
(all while streaming, before anything is buffered) is in
`streamfx._upload.framing` and `streamfx._upload.multipart`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_MAX_HEADERS: Final = 8
"""Header lines per part. RFC 7578 needs three at most (``Content-Disposition``,
``Content-Type``, and the deprecated ``Content-Transfer-Encoding``); python-multipart and
the `multipart` package allow 8 too."""

DEFAULT_MAX_HEADER_SIZE: Final = 8 * 1024
"""Bytes in one header line of a part (name, colon and value, without the CRLF): room
for a 255-character file name in any script, quoted and escaped."""

DEFAULT_MAX_PREAMBLE_SIZE: Final = 1024
"""Bytes before the first boundary. Browsers and HTTP clients send none (or a CRLF);
RFC 2046 allows a preamble, so a short one is skipped."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Every limit of one upload, validated (see `parse_multipart` for each meaning)."""

    max_size: int
    max_file_size: int
    max_field_size: int
    max_parts: int
    max_files: int
    max_fields: int
    max_headers: int
    max_header_size: int
    max_preamble_size: int
    given: frozenset[str] = frozenset()
    """The per-kind limits the caller gave (the others took their general one)."""

    def named(self, limit: str) -> tuple[str, int]:
        """The value of `limit` and the parameter the caller set it with: `limit` itself,
        or the general limit it defaulted to (``"max_part_size"`` for
        ``"max_file_size"`` when that was not given)."""
        value: int = getattr(self, limit)
        if limit in _GENERAL and limit not in self.given:
            return _GENERAL[limit], value
        return limit, value

    @classmethod
    def of(
        cls,
        *,
        max_size: object,
        max_part_size: object,
        max_parts: object,
        max_file_size: object = None,
        max_field_size: object = None,
        max_files: object = None,
        max_fields: object = None,
        max_headers: object = DEFAULT_MAX_HEADERS,
        max_header_size: object = DEFAULT_MAX_HEADER_SIZE,
        max_preamble_size: object = DEFAULT_MAX_PREAMBLE_SIZE,
    ) -> Limits:
        """The limits, each checked by `check_limit`; a ``None`` per-kind limit takes its
        general one (`max_part_size` for sizes, `max_parts` for counts)."""
        part_size = check_limit("max_part_size", max_part_size)
        parts = check_limit("max_parts", max_parts)
        per_kind = {
            "max_file_size": max_file_size,
            "max_field_size": max_field_size,
            "max_files": max_files,
            "max_fields": max_fields,
        }
        return cls(
            max_size=check_limit("max_size", max_size),
            max_file_size=_or(part_size, "max_file_size", max_file_size),
            max_field_size=_or(part_size, "max_field_size", max_field_size),
            max_parts=parts,
            max_files=_or(parts, "max_files", max_files),
            max_fields=_or(parts, "max_fields", max_fields),
            max_headers=check_limit("max_headers", max_headers),
            max_header_size=check_limit("max_header_size", max_header_size),
            max_preamble_size=check_limit("max_preamble_size", max_preamble_size),
            given=frozenset(name for name, value in per_kind.items() if value is not None),
        )


_GENERAL: Final = {
    "max_file_size": "max_part_size",
    "max_field_size": "max_part_size",
    "max_files": "max_parts",
    "max_fields": "max_parts",
}


def check_limit(name: str, value: object) -> int:
    """`value` if it is a positive int; else `TypeError` (not an int, or a bool) or
    `ValueError` (zero or negative), naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return value


def _or(default: int, name: str, value: object) -> int:
    return default if value is None else check_limit(name, value)
