"""The upload attack table: one row per attack on a multipart parser published in
2023-2026 (python-multipart, Starlette, aiohttp, Werkzeug, Django, the `multipart`
package), per limit, and a few honest uploads, as data.

`tests/test_upload_attacks.py` runs every row through `parse_multipart` in process, and
`tests/test_upload_adapters.py` through every adapter's helper under its real server
(each row says what to send and what must come back). A row's body is generated chunk
by chunk, never whole, so a 50 MiB attack costs the test no 50 MiB.

What each row asserts, wherever it runs:

- `status` (``None``: accepted) and, in process, the `UploadError` class and, for a
  413, the limit named (`limit`);
- `parts`: the (name, filename) of the parts the caller is handed, in order, when the
  upload is accepted or before it is refused;
- `read_at_most`: the body bytes read before the answer, a bound far below the body's
  size for every flood (refused quickly relative to the body, without timing anything);
- `memory`: the most memory the parse may hold at once (tracemalloc peak, in process);
- no file left behind: every file part is saved (``Part.save``) into an empty
  directory, which must hold only the files of an accepted upload afterwards;
- the event loop is never held long (`STALL`, CPU time of the loop's thread).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from streamfx import MalformedUpload, Part, UnsupportedMediaType, UploadError, UploadTooLarge

BOUNDARY = "----attackBoundary7MA4YWxkTrZu0gW"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
CHUNK = 64 * 1024
KIB = 1024
MIB = 1024 * KIB

LIMITS: dict[str, Any] = {
    "max_size": 64 * MIB,
    "max_part_size": 1 * MIB,
    "max_file_size": 16 * MIB,
    "max_parts": 1000,
}
"""The limits every row runs with (a row's `options` add to them or replace them)."""

MEMORY = 4 * MIB
"""The default bound on what one parse may hold at once (chunks, buffers, a field)."""

STALL = 0.05
"""The longest the loop may go without a turn, in CPU seconds of its thread: 25 times
what the stream aims at (2 ms), so a loaded machine cannot fail it, while a parser that
holds the loop for a whole flood (seconds) cannot pass it."""

OPEN = f"--{BOUNDARY}\r\n".encode()
CLOSE = f"--{BOUNDARY}--\r\n".encode()
DELIMITER = f"\r\n--{BOUNDARY}".encode()


def head(disposition: bytes, *extra: bytes) -> bytes:
    """The boundary line and the headers of one part, up to its content."""
    lines = b"Content-Disposition: " + disposition + b"\r\n"
    for line in extra:
        lines += line + b"\r\n"
    return OPEN + lines + b"\r\n"


def field_part(name: str, value: bytes = b"") -> bytes:
    return head(f'form-data; name="{name}"'.encode()) + value + b"\r\n"


def file_part(name: str, filename: str, value: bytes, content_type: str = "text/plain") -> bytes:
    disposition = f'form-data; name="{name}"; filename="{filename}"'.encode()
    return head(disposition, f"Content-Type: {content_type}".encode()) + value + b"\r\n"


def repeated(block: bytes, size: int) -> Iterator[bytes]:
    """`size` bytes of `block` repeated, in chunks of at most `CHUNK`."""
    chunk = block * max(1, CHUNK // len(block))
    left = size
    while left > 0:
        piece = chunk[:left]
        left -= len(piece)
        yield piece


def body(*pieces: bytes | Callable[[], Iterator[bytes]]) -> Callable[[], Iterator[bytes]]:
    """A body made of byte strings and chunk generators, re-chunked to `CHUNK` bytes."""

    def chunks() -> Iterator[bytes]:
        pending = bytearray()
        for piece in pieces:
            for data in [piece] if isinstance(piece, bytes) else piece():
                pending += data
                if len(pending) >= CHUNK:
                    whole = bytes(pending)
                    cut = len(whole) - len(whole) % CHUNK
                    yield from (whole[at : at + CHUNK] for at in range(0, cut, CHUNK))
                    pending = bytearray(whole[cut:])
        if pending:
            yield bytes(pending)

    return chunks


def many(count: int, make: Callable[[int], bytes]) -> Callable[[], Iterator[bytes]]:
    return lambda: (make(i) for i in range(count))


def refuse_all_but_png(first: bytes, part: Part) -> bool:
    return first.startswith(b"\x89PNG\r\n\x1a\n")


@dataclass(frozen=True)
class Row:
    """One upload and what must come of it (see the module docstring)."""

    id: str
    advisory: str
    """The advisory or issue the row reproduces (peer, identifier, fixed version)."""
    chunks: Callable[[], Iterator[bytes]]
    status: int | None
    error: type[UploadError] | None = None
    limit: str | None = None
    parts: tuple[tuple[str, str | None], ...] | None = None
    read_at_most: int | None = None
    """Body bytes read before the answer; ``None``: the whole body may be read."""
    options: dict[str, Any] = field(default_factory=dict)
    """parse_multipart arguments on top of `LIMITS` (limits, allowed_types, sniff)."""
    content_type: str = CONTENT_TYPE
    memory: int = MEMORY
    files_left: tuple[str, ...] = ()
    """The files a successful save leaves in the directory (nothing for a refusal)."""


HONEST_FORM = body(
    field_part("title", "holiday in Île-de-France".encode()),
    file_part("photo", "beach.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64, "image/png"),
    file_part("notes", "notes.txt", b"line 1\r\n--not a boundary\r\n" * 100),
    field_part("empty"),
    CLOSE,
)

ROWS: list[Row] = [
    # -- honest uploads -------------------------------------------------------------------
    Row(
        "honest-form",
        "none: a browser's form with fields and files",
        HONEST_FORM,
        None,
        parts=(("title", None), ("photo", "beach.png"), ("notes", "notes.txt"), ("empty", None)),
        files_left=("beach.png", "notes.txt"),
    ),
    Row(
        "honest-file-15MiB",
        "none: a file just under max_file_size",
        body(
            head(b'form-data; name="f"; filename="big.bin"'),
            lambda: repeated(bytes(range(256)), 15 * MIB),
            b"\r\n",
            CLOSE,
        ),
        None,
        parts=(("f", "big.bin"),),
        files_left=("big.bin",),
    ),
    # -- filename and name smuggling --------------------------------------------------------
    Row(
        "filename-star-inside-quoted-name",
        "issue 14 item 1; CWE-436 (python-multipart, Starlette, aiohttp, Werkzeug read a field)",
        body(head(b"form-data; name=\"a; filename*=utf-8''evil.php\""), b"x\r\n", CLOSE),
        None,
        parts=(("a; filename*=utf-8''evil.php", None),),
        options={"allowed_types": ["image/*"]},
    ),
    Row(
        "filename-star-traversal",
        "issue 14 item 2; python-multipart GHSA-vffw-93wf-4j4q (fixed 0.0.30)",
        body(
            head(
                b'form-data; name="f"; filename="a.png"; '
                b"filename*=utf-8''..%2F..%2Fetc%2Fpasswd%00.png",
                b"Content-Type: image/png",
            ),
            b"\x89PNG\r\n\x1a\n\r\n",
            CLOSE,
        ),
        None,
        parts=(("f", "a.png"),),
        options={"allowed_types": ["image/*"]},
        files_left=("a.png",),
    ),
    Row(
        "name-star-smuggling",
        "python-multipart GHSA-vffw-93wf-4j4q (name*=utf-8''role)",
        body(head(b"form-data; name=\"comment\"; name*=utf-8''role"), b"x\r\n", CLOSE),
        None,
        parts=(("comment", None),),
    ),
    Row(
        "filename-star-undefined-charset",
        "issue 15 item 2 (filename*=undefined''%41 raised UnicodeError)",
        body(head(b"form-data; name=\"f\"; filename*=undefined''%41"), b"x\r\n", CLOSE),
        None,
        parts=(("f", None),),
    ),
    Row(
        "path-traversal-filename",
        "python-multipart GHSA-wp53-j4wj-2cfg / CVE-2026-24486 (fixed 0.0.22)",
        body(file_part("f", "../../../../tmp/owned.txt", b"x"), CLOSE),
        None,
        parts=(("f", "owned.txt"),),
        files_left=("owned.txt",),
    ),
    Row(
        "windows-path-filename",
        "python-multipart GHSA-wp53-j4wj-2cfg (backslash separators)",
        body(file_part("f", "..\\\\..\\\\windows\\\\win.ini", b"x"), CLOSE),
        None,
        parts=(("f", "win.ini"),),
        files_left=("win.ini",),
    ),
    Row(
        "hidden-filename",
        "a client's .htaccess dropped into an upload directory",
        body(file_part("f", ".htaccess", b"x"), CLOSE),
        None,
        parts=(("f", ".htaccess"),),
        files_left=("upload-*",),
    ),
    Row(
        "duplicate-name-parameter",
        "CWE-436: first-wins and last-wins parsers disagree",
        body(head(b'form-data; name="a"; name="b"'), b"x\r\n", CLOSE),
        400,
        MalformedUpload,
        parts=(),
    ),
    Row(
        "boundary-mid-line-in-preamble",
        "CWE-436: python-multipart reads \\r--boundary as the first boundary, RFC 2046 as text",
        body(b"\r", field_part("hidden"), field_part("shown"), CLOSE),
        400,
        MalformedUpload,
        parts=(),
    ),
    # -- part headers -------------------------------------------------------------------------
    Row(
        "odd-quoted-60KB-disposition",
        "issue 14 item 3: python-multipart < 0.0.30 held the loop 1.3 s (its splitter)",
        body(OPEN + b'Content-Disposition: form-data; name="' + b"a;" * 30_000 + b"\r\n\r\n"),
        413,
        UploadTooLarge,
        limit="max_header_size",
        parts=(),
        read_at_most=8 * KIB + CHUNK,
    ),
    Row(
        "odd-quoted-60KB-disposition-under-a-raised-limit",
        "issue 14 item 3: the grammar reads it in one pass, refused as ambiguous",
        body(OPEN + b'Content-Disposition: form-data; name="' + b"a;" * 30_000 + b"\r\n\r\n"),
        400,
        MalformedUpload,
        parts=(),
        options={"max_header_size": 100_000},
    ),
    Row(
        "ten-thousand-header-lines",
        "issue 14 item 3; python-multipart GHSA-pp6c-gr5w-3c5g (fixed 0.0.27); "
        "aiohttp CVE-2026-34516 (fixed 3.13.4)",
        body(OPEN, b'Content-Disposition: form-data; name="a"\r\n', b"X-A: 1\r\n" * 10_000),
        413,
        UploadTooLarge,
        limit="max_headers",
        parts=(),
        read_at_most=CHUNK,
    ),
    Row(
        "one-header-line-of-10MiB",
        "python-multipart GHSA-pp6c-gr5w-3c5g (a single huge header value)",
        body(OPEN, b"X-A: ", lambda: repeated(b"v", 10 * MIB)),
        413,
        UploadTooLarge,
        limit="max_header_size",
        parts=(),
        read_at_most=8 * KIB + CHUNK,
    ),
    Row(
        "options-redos-in-a-part-header",
        "multipart GHSA-p2m9-wcp5-6qw3 / CVE-2026-28356 (parse_options_header ReDoS)",
        body(
            head(b'form-data; name="a"' + b'; a="\\' * 1000 + b"x"),
            b"x\r\n",
            CLOSE,
        ),
        400,
        MalformedUpload,
        parts=(),
    ),
    Row(
        "nul-in-a-header",
        "header injection: NUL, CR or LF inside a part header",
        body(head(b'form-data; name="a\x00b"'), b"x\r\n", CLOSE),
        400,
        MalformedUpload,
        parts=(),
    ),
    Row(
        "base64-transfer-encoding-with-whitespace",
        "Django CVE-2026-33033 (fixed 6.0.4): streamfx never decodes Content-Transfer-Encoding",
        body(
            head(b'form-data; name="f"; filename="b.txt"', b"Content-Transfer-Encoding: base64"),
            b"QUJD",
            lambda: repeated(b" ", 2 * MIB),
            b"\r\n",
            CLOSE,
        ),
        None,
        parts=(("f", "b.txt"),),
        files_left=("b.txt",),
    ),
    # -- preamble and epilogue --------------------------------------------------------------
    Row(
        "ten-MiB-crlf-preamble",
        "issue 14 item 3; python-multipart GHSA-mj87-hwqh-73pj (fixed 0.0.26), "
        "GHSA-59g5-xgcq-4qw3 / CVE-2024-53981 (fixed 0.0.18)",
        body(lambda: repeated(b"\r\n", 10 * MIB), field_part("a"), CLOSE),
        413,
        UploadTooLarge,
        limit="max_preamble_size",
        parts=(),
        read_at_most=CHUNK,
    ),
    Row(
        "ten-MiB-text-preamble",
        "python-multipart GHSA-mj87-hwqh-73pj (a preamble of text)",
        body(lambda: repeated(b"preamble text ", 10 * MIB), b"\r\n", field_part("a"), CLOSE),
        413,
        UploadTooLarge,
        limit="max_preamble_size",
        parts=(),
        read_at_most=CHUNK,
    ),
    Row(
        "ten-MiB-epilogue",
        "python-multipart GHSA-mj87-hwqh-73pj, GHSA-59g5-xgcq-4qw3 (data after the last boundary)",
        body(field_part("a", b"1"), CLOSE, lambda: repeated(b"epilogue\r\n", 10 * MIB)),
        None,
        parts=(("a", None),),
        read_at_most=CHUNK,
    ),
    # -- part counts --------------------------------------------------------------------------
    Row(
        "hundred-thousand-empty-fields",
        "Starlette GHSA-74m5-2c7w-9w3x / CVE-2023-30798 (fixed 0.25.0); Werkzeug "
        "GHSA-xg9f-g7g7-2323 / CVE-2023-25577 (fixed 2.2.3); Django CVE-2023-24580",
        body(many(100_000, lambda i: field_part(f"f{i}")), CLOSE),
        413,
        UploadTooLarge,
        limit="max_parts",
        read_at_most=1000 * 80 + CHUNK,
    ),
    Row(
        "hundred-thousand-empty-fields-allowed",
        "issue 14 item 4: with max_parts=1_000_000 the loop must still get its turns",
        body(many(100_000, lambda i: field_part(f"f{i}")), CLOSE),
        None,
        options={"max_parts": 1_000_000},
    ),
    Row(
        "ten-thousand-empty-files",
        "Starlette CVE-2023-30798; Django CVE-2023-24580 (too many files: descriptors)",
        body(many(10_000, lambda i: file_part("f", f"{i}.txt", b"")), CLOSE),
        413,
        UploadTooLarge,
        limit="max_files",
        options={"max_files": 10},
        read_at_most=11 * 140 + CHUNK,
    ),
    Row(
        "ten-thousand-fields-over-max-fields",
        "Werkzeug CVE-2023-25577; Starlette max_fields",
        body(many(10_000, lambda i: field_part(f"f{i}", b"1")), CLOSE),
        413,
        UploadTooLarge,
        limit="max_fields",
        options={"max_fields": 10},
        read_at_most=11 * 80 + CHUNK,
    ),
    # -- sizes --------------------------------------------------------------------------------
    Row(
        "fifty-MiB-field-without-filename",
        "Starlette GHSA-f96h-pmfr-66vw / CVE-2024-47874 (fixed 0.40.0); Werkzeug "
        "CVE-2024-49767 (fixed 3.0.6); aiohttp CVE-2026-34517 (fixed 3.13.4)",
        body(head(b'form-data; name="big"'), lambda: repeated(b"x", 50 * MIB), b"\r\n", CLOSE),
        413,
        UploadTooLarge,
        limit="max_part_size",
        parts=(("big", None),),
        read_at_most=1 * MIB + 2 * CHUNK,
    ),
    Row(
        "fifty-MiB-file-over-max-file-size",
        "aiohttp CVE-2026-34517 (size enforced after reading); nothing saved may remain",
        body(
            head(b'form-data; name="f"; filename="big.bin"'),
            lambda: repeated(bytes(range(256)), 50 * MIB),
            b"\r\n",
            CLOSE,
        ),
        413,
        UploadTooLarge,
        limit="max_file_size",
        parts=(("f", "big.bin"),),
        read_at_most=16 * MIB + 2 * CHUNK,
    ),
    Row(
        "body-over-max-size",
        "any parser reading a body past its limit",
        body(many(2000, lambda i: file_part("f", f"{i}.bin", bytes(40_000))), CLOSE),
        413,
        UploadTooLarge,
        limit="max_size",
        options={"max_size": 1 * MIB, "max_files": 2000, "max_parts": 2000},
        read_at_most=1 * MIB + CHUNK,  # the chunk that passed the limit was received
    ),
    Row(
        "file-of-one-cr-then-10MiB-without-line-breaks",
        "Werkzeug GHSA-hrfv-mqp8-q5rw / CVE-2023-46136 (fixed 3.0.1)",
        body(
            head(b'form-data; name="f"; filename="cr.bin"'),
            b"\r",
            lambda: repeated(b"a", 10 * MIB),
            b"\r\n",
            CLOSE,
        ),
        None,
        parts=(("f", "cr.bin"),),
        files_left=("cr.bin",),
    ),
    Row(
        "file-of-10MiB-of-near-boundaries",
        "python-multipart 0.0.32 (CR/LF-dense partial-boundary scan); Werkzeug CVE-2023-46136",
        body(
            head(b'form-data; name="f"; filename="near.bin"'),
            lambda: repeated(DELIMITER[:-1] + b"\r\n", 10 * MIB),
            b"\r\n",
            CLOSE,
        ),
        None,
        parts=(("f", "near.bin"),),
        files_left=("near.bin",),
    ),
    Row(
        "large-file-saved-without-blocking",
        "Starlette GHSA-2c2j-9gv5-cj73 / CVE-2025-54121 (rollover to disk on the loop)",
        body(
            head(b'form-data; name="f"; filename="video.bin"'),
            lambda: repeated(bytes(range(256)), 12 * MIB),
            b"\r\n",
            CLOSE,
        ),
        None,
        parts=(("f", "video.bin"),),
        files_left=("video.bin",),
    ),
    # -- malformed framing ----------------------------------------------------------------------
    Row(
        "truncated-mid-content",
        "aiohttp GHSA-5m98-qgg9-wh84 / CVE-2024-30251 (infinite loop, fixed 3.9.4)",
        body(file_part("f", "a.bin", b"x" * 100_000)[:-1000]),
        400,
        MalformedUpload,
        parts=(("f", "a.bin"),),
    ),
    Row(
        "boundary-followed-by-garbage",
        "aiohttp CVE-2024-30251 (malformed boundary line)",
        body(field_part("a", b"1")[:-2] + DELIMITER + b"garbage\r\n", CLOSE),
        400,
        MalformedUpload,
        parts=(("a", None),),
    ),
    Row(
        "no-boundary-ever",
        "a body that is not multipart at all, 10 MiB of it",
        body(lambda: repeated(b"not multipart ", 10 * MIB)),
        413,
        UploadTooLarge,
        limit="max_preamble_size",
        parts=(),
        read_at_most=CHUNK,
    ),
    # -- the request's Content-Type -------------------------------------------------------------
    Row(
        "content-type-options-redos",
        "python-multipart GHSA-2jv5-9r88-3w3p / CVE-2024-24762 (fixed 0.0.7)",
        HONEST_FORM,
        400,
        MalformedUpload,
        content_type=CONTENT_TYPE + '; a="' + "\\" * 50_000,
        read_at_most=0,
    ),
    Row(
        "non-latin-1-boundary",
        "issue 15 item 1 (boundary=€ raised UnicodeEncodeError)",
        HONEST_FORM,
        400,
        MalformedUpload,
        content_type="multipart/form-data; boundary=€",
        read_at_most=0,
    ),
    Row(
        "surrogate-boundary",
        "issue 15 item 1 (aiohttp's surrogateescape decoding)",
        HONEST_FORM,
        400,
        MalformedUpload,
        content_type="multipart/form-data; boundary=\udc80abc",
        read_at_most=0,
    ),
    Row(
        "boundary-of-71-characters",
        "RFC 2046 5.1.1: a boundary is 1 to 70 characters",
        HONEST_FORM,
        400,
        MalformedUpload,
        content_type="multipart/form-data; boundary=" + "b" * 71,
        read_at_most=0,
    ),
    Row(
        "not-form-data",
        "a JSON body sent to an upload endpoint",
        body(b'{"a": 1}'),
        415,
        UnsupportedMediaType,
        content_type="application/json",
        read_at_most=0,
    ),
    # -- types -------------------------------------------------------------------------------
    Row(
        "disallowed-file-type",
        "allowed_types (415), checked before the content is read",
        body(file_part("f", "x.exe", b"MZ" + bytes(1 * MIB), "application/x-dosexec"), CLOSE),
        415,
        UnsupportedMediaType,
        parts=(),
        options={"allowed_types": ["image/*", "text/plain"]},
        read_at_most=CHUNK,
    ),
    Row(
        "declared-png-sniffed-as-exe",
        "a content-sniffing hook refusing what the declared type hides",
        body(file_part("f", "x.png", b"MZ" + bytes(1 * MIB), "image/png"), CLOSE),
        415,
        UnsupportedMediaType,
        parts=(),
        options={"allowed_types": ["image/*"], "sniff": refuse_all_but_png},
        read_at_most=2 * CHUNK,
    ),
]
