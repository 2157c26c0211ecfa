"""`parse_multipart`: a ``multipart/form-data`` request body as a stream of parts.

This module is the entry point: it checks the arguments and the request's
``Content-Type`` and returns a `PartStream` (`streamfx._upload.stream`: the async,
bounded hand-over between the request body and the caller, the limit on the whole
body, the content sniffing hook, fairness to the event loop, and the metrics). The
framing is scanned by `streamfx._upload.framing` (streamfx's own boundary scanner, with
the per-part limits).

Why streamfx scans the framing itself, measured in one run
(``bench/test_bench_multipart.py``: 10,000 fields of 10 bytes, and a 100 MiB file with
two small fields, in process, fed in 64 KiB chunks; medians of 15 and 5 rounds, timed
in process CPU time; a loaded 2-core machine, 1 December 2026):

====================================  ==============  ===========  ================
parser                                fields/s        MB/s (file)  fields vs Starlette
====================================  ==============  ===========  ================
streamfx (this module, parts read)    177,632         2,011        4.79x
Starlette ``form()``                  37,102          182          1.00x
aiohttp ``MultipartReader``           4,812           1,544        0.13x
python-multipart, raw callbacks       94,137          2,413        (parser only)
``multipart`` PushMultipartParser     145,982         3,378        (parser only)
====================================  ==============  ===========  ================

End to end on uvicorn (``bench/load_upload.py --rounds 5``: a raw-socket client, the
route reading every part, ``parts(request)`` beside ``await request.form()`` on the
same server, interleaved rounds, wall clock on the same loaded machine, medians and
the median of the per-round ratios): 10,000 fields at 32,611 fields/s against 9,382
(3.85x), a 100 MiB file at 618 MB/s against 293 (2.11x).

The two raw parsers only count parts and bytes (no `Part`, no hand-over to a caller,
no limits), so they bound what a stream built on them could reach. python-multipart's
parser alone costs almost twice what all of streamfx costs per field. The
``multipart`` package's alone costs 1.2x streamfx's whole stream (6.9 against 5.6 us
per field); the hand-over that would come on top (the stream minus the scanner: about
40 % of streamfx's time per field, measured by running the scanner alone) would leave
a stream on it well behind this one. On the file, both raw parsers are faster than
streamfx (each content chunk is sliced once out of the fed piece, and a piece that
follows a partial delimiter is joined to it); at 2 GB/s in process this is not what
limits an upload end to end. And neither exposes the points where streamfx's limits
act with streamfx's errors: the preamble, each header line as it arrives, a part's
kind (file or field) before its first content byte. The scanner is about 250 lines
around the standard library's ``bytes.find``, and property tests check it against
python-multipart on any body and any chunking.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable

from streamfx._upload.errors import UploadError
from streamfx._upload.framing import boundary
from streamfx._upload.limits import (
    DEFAULT_MAX_HEADER_SIZE,
    DEFAULT_MAX_HEADERS,
    DEFAULT_MAX_PREAMBLE_SIZE,
    Limits,
)
from streamfx._upload.part import check_allowed_types
from streamfx._upload.stream import PartStream, Sniff
from streamfx.metrics import MetricsHook


def parse_multipart(
    body: AsyncIterable[bytes],
    content_type: str | bytes | None,
    *,
    max_size: int,
    max_part_size: int,
    max_parts: int,
    max_file_size: int | None = None,
    max_field_size: int | None = None,
    max_files: int | None = None,
    max_fields: int | None = None,
    max_headers: int = DEFAULT_MAX_HEADERS,
    max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
    max_preamble_size: int = DEFAULT_MAX_PREAMBLE_SIZE,
    allowed_types: Iterable[str] | None = None,
    sniff: Sniff | None = None,
    name: str = "",
    metrics: MetricsHook | None = None,
) -> PartStream:
    """Parse a ``multipart/form-data`` request `body` into an async iterator of `Part`.

    `content_type` is the request's ``Content-Type`` header (it carries the boundary).
    Parts come in order; read each part's content (``async for chunk in part``, or
    ``await part.save(...)``) before asking for the next part, or it is skipped. A
    *file* is a part whose ``Content-Disposition`` has a ``filename``; a *field* is any
    other part. `name` (a route, say) labels the upload's metrics, reported to
    `metrics` or else to the process-wide hook (see the module docstring).

    Limits, each a positive int, each enforced while the body streams (the error names
    the parameter and its value, e.g. ``max_file_size=1048576``); all but the last three
    are 413 `UploadTooLarge`:

    - `max_size`: bytes of the whole body, up to the end of its closing boundary;
    - `max_part_size`: bytes of any part's content, unless overridden by
      `max_file_size` (a file's content) or `max_field_size` (a field's content);
    - `max_parts`: parts in all, and within it `max_files` and `max_fields` (each
      defaults to `max_parts`);
    - `max_headers` (8) header lines per part, of at most `max_header_size` (8 KiB)
      bytes each; `max_preamble_size` (1 KiB): bytes before the first boundary;
    - `allowed_types` (patterns such as ``"image/png"``, ``"image/*"``, ``"*/*"``): the
      declared content types a *file* may have (415 `UnsupportedMediaType`); fields are
      not checked;
    - `sniff`: called as ``sniff(first_bytes, part)`` with the first 2048 bytes
      (`streamfx._upload.stream.SNIFF_SIZE`) of each file (all of it if shorter) before
      the part is handed to the caller; False refuses it (415 `UnsupportedMediaType`);
      an `UploadError` it raises is the upload's error; any other error it raises fails
      the stream unchanged;
    - and the framing (400 `MalformedUpload`): a boundary of 1 to 70 printable ASCII
      characters; well-formed parts and headers (see `streamfx._upload.framing`); a
      ``Content-Disposition`` the grammar reads one way only (see
      `streamfx._upload.params`; ``filename*`` and ``name*`` are ignored); a body that
      ends before its closing boundary (a truncated upload never looks complete).

    Checked now, before the body is touched: the limits (`TypeError`/`ValueError`);
    `UnsupportedMediaType` if `content_type` is not ``multipart/form-data``;
    `MalformedUpload` if it has no usable boundary. If this call raises, `body` is left
    untouched and unclosed. Every error is an `UploadError` with `status_code` and a
    client-safe `detail`; after one the body is closed and every later read raises it.

    The returned stream closes the body (``aclose()``) when it ends, fails or is closed:
    use ``async with parse_multipart(...) as parts:`` or call ``await parts.aclose()``
    when stopping early. It starts no task.

    Example (Starlette; any async iterable of the body's bytes will do)::

        async with parse_multipart(
            request.stream(), request.headers.get("content-type"),
            max_size=100 << 20, max_part_size=1 << 20, max_file_size=50 << 20,
            max_parts=20, allowed_types=["image/*"],
        ) as parts:
            async for part in parts:
                if part.filename is None:
                    fields[part.name] = (await part.read()).decode()
                else:
                    saved[part.name] = await part.save(upload_dir)
    """
    limits = Limits.of(
        max_size=max_size,
        max_part_size=max_part_size,
        max_parts=max_parts,
        max_file_size=max_file_size,
        max_field_size=max_field_size,
        max_files=max_files,
        max_fields=max_fields,
        max_headers=max_headers,
        max_header_size=max_header_size,
        max_preamble_size=max_preamble_size,
    )
    allowed = check_allowed_types(allowed_types)
    if sniff is not None and not callable(sniff):
        raise TypeError(f"sniff must be callable, not {type(sniff).__name__}")
    return PartStream(
        body, boundary(content_type), limits, allowed, sniff=sniff, name=name, metrics=metrics
    )


__all__ = ["PartStream", "Sniff", "UploadError", "parse_multipart"]
