"""Test helper: read a ``multipart/byteranges`` body back with python-multipart's
streaming parser (an independent implementation of the framing)."""

from __future__ import annotations

from python_multipart.multipart import MultipartParser


def parse_byteranges(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """The parts of `body`: each one's headers (names lower-cased) and its content."""
    parts: list[tuple[dict[str, str], bytes]] = []
    headers: dict[str, str] = {}
    field = bytearray()
    value = bytearray()
    data = bytearray()

    def on_part_begin() -> None:
        headers.clear()
        data.clear()

    def on_header_field(chunk: bytes, start: int, end: int) -> None:
        field.extend(chunk[start:end])

    def on_header_value(chunk: bytes, start: int, end: int) -> None:
        value.extend(chunk[start:end])

    def on_header_end() -> None:
        headers[field.decode("latin-1").lower()] = value.decode("latin-1")
        field.clear()
        value.clear()

    def on_part_data(chunk: bytes, start: int, end: int) -> None:
        data.extend(chunk[start:end])

    def on_part_end() -> None:
        parts.append((dict(headers), bytes(data)))

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    parser.write(body)
    parser.finalize()
    return parts
