"""`content_disposition`: a safe ``Content-Disposition`` value (RFC 6266, RFC 8187).

Every ``str`` gives a value; none raises. A file name often comes from a user or from
``os.listdir``, so a name that cannot be sent as it is gets rewritten into one that
can, rather than turning a download into a 500. The rewrite, `safe_filename`, in order:

1. each lone surrogate (``os.listdir`` returns them for bytes that are not UTF-8, as
   ``"\\udc80.txt"``) becomes U+FFFD, the replacement character: what a UTF-8 decoder
   with ``errors="replace"`` shows for those bytes. They are not passed through with
   ``surrogateescape``: ``filename*`` declares UTF-8, and raw non-UTF-8 bytes in it
   would be a lie that agents resolve each in its own way;
2. control characters (C0, DEL, C1, U+2028, U+2029) and bidirectional controls
   (U+200E, U+200F, U+061C, U+202A-U+202E, U+2066-U+2069) are removed: no real name
   needs them, CR/LF would inject headers, and U+202E would make ``"x\\u202egnp.exe"``
   display as ``xexe.png``. Removing them leaves the characters in their logical
   order, which is what the file really is;
3. ``/`` and ``\\`` become ``_``, so no agent reads a directory into the name;
4. surrounding whitespace is stripped; a name left empty or made only of dots
   becomes ``download``;
5. a name longer than `MAX_NAME_BYTES` (255, the usual file-system limit) in UTF-8 is
   cut at a character boundary, keeping its extension (the last ``.`` and what
   follows, when that is at most 32 bytes).

The value is ``<type>; filename="<fallback>"``, plus ``filename*=UTF-8''<name>``
(RFC 8187, percent-encoded with `urllib.parse.quote`) whenever the safe name is not
itself a valid fallback. The fallback is the safe name reduced to printable ASCII:
accents are dropped (``résumé`` -> ``resume``, by NFKD), and ``"``, ``\\``, ``%``
(RFC 6266 appendix D: some agents percent-decode it), ``/`` and anything not
printable ASCII become ``_``. When that leaves no ASCII letter or digit before the
extension and something was replaced, the fallback is ``download`` plus the extension
(``报告.txt`` -> ``download.txt``). It is cut to 255 bytes as well.

So the whole value is printable ASCII (latin-1-safe), neither parameter holds a
control, bidi control or path separator, and its length is bounded (at most about
1.1 KB plus the type).

Hand-written because the standard library has no builder for this header (``email``
formats MIME parameters with RFC 2231 continuations, which HTTP forbids); the
percent-encoding itself is `urllib.parse.quote`.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

MAX_NAME_BYTES = 255
"""The longest name, in UTF-8 bytes, either parameter carries."""

DEFAULT_NAME = "download"
_MAX_EXTENSION_BYTES = 32
# RFC 8187 attr-char, less what `quote` always keeps (ALPHA / DIGIT / "-" / "." / "_" / "~").
_ATTR_CHAR_EXTRA = "!#$&+^`|"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_SURROGATE = re.compile("[\ud800-\udfff]")
# C0, DEL, C1, line and paragraph separators, and the bidirectional controls.
_REMOVED = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069]"
)
_SEPARATOR = re.compile(r"[/\\]")
# Printable ASCII that may stand in a quoted-string fallback without surprises.
_UNSAFE_FALLBACK = re.compile(r'[^\x20-\x7e]|["\\%/]')
_ASCII_ALNUM = re.compile(r"[0-9A-Za-z]")


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """The ``Content-Disposition`` value for `filename` (see the module docstring).

    Never raises for a ``str`` `filename`. `disposition` is the type, usually
    ``"attachment"`` (save) or ``"inline"`` (display); it must be an HTTP token, else
    `ValueError`. A `filename` that is not a ``str`` is a `TypeError`.
    """
    if not isinstance(filename, str):
        raise TypeError(f"filename must be a str, not {type(filename).__name__}")
    if not _TOKEN.fullmatch(disposition):
        raise ValueError(f"disposition must be an HTTP token, got {disposition!r}")
    if _is_plain(filename):  # the common case, which every rule leaves as it is
        return f'{disposition}; filename="{filename}"'
    name = safe_filename(filename)
    fallback = ascii_fallback(name)
    value = f'{disposition}; filename="{fallback}"'
    if fallback != name:
        value += f"; filename*=UTF-8''{quote(name, safe=_ATTR_CHAR_EXTRA)}"
    return value


def _is_plain(filename: str) -> bool:
    """True if `filename` is its own safe name and fallback: printable ASCII without
    ``" \\ % /``, no surrounding space, not only dots, at most 255 characters."""
    return (
        len(filename) <= MAX_NAME_BYTES
        and not _UNSAFE_FALLBACK.search(filename)
        and filename == filename.strip()
        and bool(filename.strip("."))
    )


def safe_filename(filename: str) -> str:
    """`filename` rewritten so that it can be sent and shown (module doc, steps 1-5)."""
    name = _SURROGATE.sub("\ufffd", filename)
    name = _REMOVED.sub("", name)
    name = _truncate(_SEPARATOR.sub("_", name).strip()).rstrip()
    return name if name.strip(".") else DEFAULT_NAME


def ascii_fallback(name: str) -> str:
    """The printable-ASCII fallback for `name`, a `safe_filename` (see the module doc)."""
    decomposed = unicodedata.normalize("NFKD", name)
    stripped = "".join(char for char in decomposed if not unicodedata.combining(char))
    fallback = _truncate(_UNSAFE_FALLBACK.sub("_", stripped))
    stem, extension = _split_extension(fallback)
    if fallback != name and not _ASCII_ALNUM.search(stem):
        if not _ASCII_ALNUM.search(extension):
            extension = ""
        return DEFAULT_NAME + extension
    return fallback


def _split_extension(name: str) -> tuple[str, str]:
    """``(stem, extension)``; the extension is ``""`` or a short ``.suffix``."""
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem or not suffix or len(suffix.encode()) >= _MAX_EXTENSION_BYTES:
        return name, ""
    return stem, dot + suffix


def _truncate(name: str) -> str:
    """`name` cut to `MAX_NAME_BYTES` of UTF-8 at a character boundary, extension kept."""
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    stem, extension = _split_extension(name)
    room = MAX_NAME_BYTES - len(extension.encode())
    return stem.encode()[:room].decode(errors="ignore") + extension
