"""`content_disposition`: a safe ``Content-Disposition`` header value (RFC 6266).

Promises:

- The value is always plain printable ASCII: a filename can never inject a header
  (CR, LF and other control characters are refused with `ValueError`) nor break out of
  the quoted string (``"`` and ``\\`` never appear inside it).
- ``filename="..."`` carries an ASCII fallback: accents are stripped (``résumé`` ->
  ``resume``), other non-ASCII characters and ``" \\ / %`` become ``_``.
- When the fallback differs from the real name, ``filename*=UTF-8''...`` (RFC 5987,
  percent-encoded UTF-8) carries the exact name; clients that understand it (all
  current browsers) prefer it.

Hand-written because the standard library has no RFC 6266 builder; the percent-encoding
itself is `urllib.parse.quote` restricted to RFC 5987's ``attr-char`` set.
"""

from __future__ import annotations

import unicodedata
from typing import Literal
from urllib.parse import quote

Disposition = Literal["attachment", "inline"]

# RFC 5987 attr-char: ALPHA / DIGIT / "!" / "#" / "$" / "&" / "+" / "-" / "." / "^" /
# "_" / "`" / "|" / "~". `quote` always keeps letters, digits and "_.-~".
_ATTR_CHAR_EXTRA = "!#$&+^`|"
# Kept out of the quoted fallback: quoting metacharacters, path separators, and "%"
# (RFC 6266 appendix D: some clients percent-decode the plain filename parameter).
_FALLBACK_UNSAFE = frozenset('"\\/%')


def content_disposition(filename: str, disposition: Disposition = "attachment") -> str:
    """The ``Content-Disposition`` value that offers `filename` for download.

    Raises `ValueError` for an empty name or one containing control characters
    (CR, LF, NUL, ...), and `TypeError` for a name that is not a ``str``.
    """
    if not isinstance(filename, str):
        raise TypeError(f"filename must be a str, not {type(filename).__name__}")
    if not filename:
        raise ValueError("filename must not be empty")
    if disposition not in ("attachment", "inline"):
        raise ValueError(f"disposition must be 'attachment' or 'inline', not {disposition!r}")
    bad = next((ch for ch in filename if unicodedata.category(ch) == "Cc"), None)
    if bad is not None:
        raise ValueError(
            f"filename {filename!r} contains the control character {bad!r}, "
            "which must never reach a header"
        )
    fallback = _ascii_fallback(filename)
    value = f'{disposition}; filename="{fallback}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe=_ATTR_CHAR_EXTRA)}"
    return value


def _ascii_fallback(filename: str) -> str:
    decomposed = unicodedata.normalize("NFKD", filename)
    chars: list[str] = []
    for ch in decomposed:
        if unicodedata.combining(ch):
            continue
        if ch in _FALLBACK_UNSAFE or not (" " <= ch <= "~"):
            chars.append("_")
        else:
            chars.append(ch)
    return "".join(chars)
