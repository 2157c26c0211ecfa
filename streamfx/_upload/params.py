"""Header values with parameters: ``form-data; name="a"; filename="b.png"`` and
``multipart/form-data; boundary=xyz``, parsed once, by their grammar.

One parser for both headers an upload depends on, written here because the two ready
ones do not give the answer uploads need: python-multipart's `parse_options_header`
reads any text at all (an unbalanced quote swallows the rest of the header, a repeated
parameter silently wins) and the standard library's `email` package decodes RFC 2231
``filename*`` values, which RFC 7578 section 4.2 forbids in ``form-data``.

The grammar (RFC 9110 section 5.6.6, with the leniencies clients rely on)::

    value      = OWS head *( OWS ";" OWS [ parameter ] ) OWS
    head       = token [ "/" token ]
    parameter  = token OWS "=" OWS ( token / quoted-string )
    OWS        = *( SP / HTAB )

Promises:

- The text is read left to right, each piece matched where the previous one ended
  (never searched for), so a ``;`` or a ``filename*=`` inside a quoted value is part of
  that value and nothing else.
- Parameter names are case-insensitive (returned in lower case). A name with a ``*``
  in it (``filename*``, ``name*``, ``filename*0``: RFC 2231/5987 extended parameters) is
  ignored, as python-multipart >= 0.0.30 ignores it (GHSA-vffw-93wf-4j4q).
- Inside a quoted value only ``\\\\`` and ``\\"`` are escapes (what python-multipart,
  hence Starlette and FastAPI, undo); any other backslash is kept as sent, since browsers
  send a file name's backslashes unescaped.
- Refused with `MalformedUpload` (never guessed): anything outside the grammar (an
  unbalanced quote, a NUL, CR or LF, a space inside a token), a parameter given
  twice, and a quoted value that ends in a backslash (other parsers disagree about
  where such a value ends).

A property test (``tests/test_upload_params.py``) checks that on any input this parser
either refuses or gives python-multipart's ``name`` and ``filename``.
"""

from __future__ import annotations

import re
from typing import Final

from streamfx._upload.errors import MalformedUpload

_TOKEN: Final = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# qdtext and quoted-pair of RFC 9110, also with the control characters it leaves out
# (browsers send them raw in file names, and they split nothing) but never NUL, CR or LF.
_QUOTED: Final = rb'"((?:[^"\\\x00\r\n]|\\[^\x00\r\n])*+)"'
_HEAD = re.compile(rb"[ \t]*(" + _TOKEN + rb"(?:/" + _TOKEN + rb")?)[ \t]*")
_PARAMETER = re.compile(
    rb";[ \t]*(?:(" + _TOKEN + rb")[ \t]*=[ \t]*(?:" + _QUOTED + rb"|(" + _TOKEN + rb")))?[ \t]*"
)
_ESCAPE = re.compile(rb'\\([\\"])')


def parse_params(value: bytes, what: str) -> tuple[bytes, dict[bytes, bytes]]:
    """The head (lower case) and the parameters of a header `value`.

    `what` names the header in the error (``"a part's Content-Disposition"``). Raises
    `MalformedUpload` for a value outside the grammar (see the module docstring).
    """
    head = _HEAD.match(value)
    if head is None:
        raise MalformedUpload(f"{what} does not start with a type")
    params: dict[bytes, bytes] = {}
    position = head.end()
    end = len(value)
    match = _PARAMETER.match
    while position < end:
        found = match(value, position)
        if found is None:
            raise MalformedUpload(f"{what} is not a list of name=value parameters")
        position = found.end()
        key = found.group(1)
        if key is None:
            continue  # an empty parameter, as in a trailing ";"
        key = key.lower()
        quoted = found.group(2)
        if quoted is None:
            text = found.group(3)
        elif b"\\" in quoted:
            if quoted.endswith(b"\\"):
                raise MalformedUpload(f"{what} has a quoted value that ends in a backslash")
            text = _ESCAPE.sub(rb"\1", quoted)
        else:
            text = quoted
        if b"*" in key:
            continue  # RFC 7578 4.2: no extended parameters in form-data
        if key in params:
            raise MalformedUpload(f"{what} gives the parameter {key.decode()!r} twice")
        params[key] = text
    return head.group(1).lower(), params
