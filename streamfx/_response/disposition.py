"""`content_disposition`: a safe ``Content-Disposition`` value (RFC 6266, RFC 8187).

Promises:

- The value never contains CR, LF, NUL or any other control character, and the quoted
  ``filename`` fallback never contains ``"``, ``\\`` or ``%`` (RFC 6266 appendix D: some
  agents percent-decode it), nor any non-ASCII character.
- A name made only of safe printable ASCII gets just ``filename="name"``. Any other
  name also gets ``filename*=UTF-8''...`` (RFC 8187, the successor of RFC 5987), which
  carries the exact name, percent-encoded; agents that understand it prefer it.
- The fallback keeps what it can: accents are dropped (``résumé`` -> ``resume``), and
  every other character that cannot go in it becomes ``_``.

Refused with `ValueError`: an empty filename, and a filename holding a control
character (CR, LF, NUL, DEL, C1 controls, U+2028/U+2029): no real file name contains
one, so it is treated as a header-injection attempt rather than silently rewritten.

Hand-written because the standard library has no builder for this header (``email``
formats MIME parameters with RFC 2231 continuations, which HTTP forbids); the
percent-encoding itself is `urllib.parse.quote`.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

# RFC 8187 attr-char, less what `quote` always keeps (ALPHA / DIGIT / "-" / "." / "_" / "~").
_ATTR_CHAR_EXTRA = "!#$&+^`|"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Printable ASCII that may stand in a quoted-string fallback without surprises.
_UNSAFE_FALLBACK = re.compile(r'[^\x20-\x7e]|["\\%]')
_LINE_SEPARATORS = frozenset("\u2028\u2029")


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """The ``Content-Disposition`` value for `filename` (see the module docstring).

    `disposition` is the type, usually ``"attachment"`` (save) or ``"inline"``
    (display); it must be an HTTP token, else `ValueError`.
    """
    if not isinstance(filename, str):
        raise TypeError(f"filename must be a str, not {type(filename).__name__}")
    if not _TOKEN.fullmatch(disposition):
        raise ValueError(f"disposition must be an HTTP token, got {disposition!r}")
    if not filename:
        raise ValueError("filename must not be empty")
    for char in filename:
        if char in _LINE_SEPARATORS or unicodedata.category(char) == "Cc":
            raise ValueError(
                f"filename contains the control character {char!r} "
                f"(refused: header injection); got {filename!r}"
            )
    fallback = ascii_fallback(filename)
    value = f'{disposition}; filename="{fallback}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe=_ATTR_CHAR_EXTRA)}"
    return value


def ascii_fallback(filename: str) -> str:
    """`filename` reduced to printable ASCII without ``"``, ``\\`` or ``%``."""
    decomposed = unicodedata.normalize("NFKD", filename)
    stripped = "".join(char for char in decomposed if not unicodedata.combining(char))
    return _UNSAFE_FALLBACK.sub("_", stripped)
