"""`streamfx.errors.StreamfxError`: the one base of the errors streamfx answers over
HTTP, and the subclasses' statuses, details and headers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamfx import (
    CircuitOpenError,
    DownloadError,
    DownloadNotFound,
    MalformedUpload,
    PathOutsideRoot,
    StreamfxError,
    UnsupportedMediaType,
    UploadError,
    UploadTooLarge,
)
from streamfx.adapters.asgi import UploadTimeout
from streamfx.broadcast import BroadcastError

EVERY_ERROR = [
    (DownloadError("file /srv/a changed size"), 500, "Internal Server Error"),
    (DownloadError("not allowed to read /srv/a", status_code=403), 403, "Forbidden"),
    (PathOutsideRoot("'../a' resolves to /srv/a"), 403, "Forbidden"),
    (DownloadNotFound("no such file: /srv/a"), 404, "Not Found"),
    (UploadTooLarge("too large (max_size=1)"), 413, "too large (max_size=1)"),
    (UnsupportedMediaType("not multipart"), 415, "not multipart"),
    (MalformedUpload("no boundary"), 400, "no boundary"),
    (UploadTimeout("too slow"), 408, "too slow"),
    (CircuitOpenError("db", 1.5), 503, "Service Unavailable"),
    (BroadcastError("this hub is closed"), 503, "Service Unavailable"),
]


@pytest.mark.parametrize(("error", "status", "detail"), EVERY_ERROR)
def test_every_streamfx_error_has_a_status_and_a_client_safe_detail(
    error: StreamfxError, status: int, detail: str
) -> None:
    assert isinstance(error, StreamfxError)
    assert (error.status_code, error.detail) == (status, detail)
    assert "/srv" not in error.detail


@pytest.mark.parametrize(("error", "status", "detail"), EVERY_ERROR)
def test_an_error_answers_only_by_status_code_and_detail(
    error: StreamfxError, status: int, detail: str
) -> None:
    """One pair of names on every error: no ``status`` / ``message`` beside them."""
    assert (error.status_code, error.detail) == (status, detail)
    for old_name in ("status", "message"):
        assert not hasattr(error, old_name), (type(error).__name__, old_name)
        assert not hasattr(type(error), old_name), (type(error).__name__, old_name)


def test_the_download_errors_keep_their_builtin_bases() -> None:
    assert isinstance(PathOutsideRoot("x"), ValueError)
    assert isinstance(DownloadNotFound("x"), FileNotFoundError)
    assert issubclass(UploadTooLarge, UploadError)


@pytest.mark.parametrize(
    ("retry_after", "header"), [(0.0, "0"), (0.2, "1"), (1.0, "1"), (29.01, "30"), (-3.0, "0")]
)
def test_an_open_circuit_asks_to_retry_after_whole_seconds_rounded_up(
    retry_after: float, header: str
) -> None:
    error = CircuitOpenError("db", retry_after)
    assert error.headers == {"Retry-After": header}
    assert error.retry_after == retry_after
    assert "db" in str(error) and "db" not in error.detail


@given(st.integers(400, 599), st.text(), st.text())
def test_a_streamfx_error_keeps_what_it_was_given(status: int, message: str, detail: str) -> None:
    error = StreamfxError(message, status_code=status, detail=detail, headers={"X-A": "b"})
    assert (error.status_code, error.detail, error.headers, str(error)) == (
        status,
        detail,
        {"X-A": "b"},
        message,
    )


@pytest.mark.parametrize("status", [0, 200, 399, 600, True, 404.0])
def test_a_status_that_is_not_an_http_error_is_refused(status: object) -> None:
    with pytest.raises(ValueError, match=r"status_code must be an int in 400\.\.599"):
        StreamfxError("x", status_code=status)  # type: ignore[arg-type]


@pytest.mark.parametrize("headers", [{"X-A": "b\r\nSet-Cookie: x"}, {"X-A\n": "b"}, {"X-A": "b\0"}])
def test_a_header_that_would_inject_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        StreamfxError("x", status_code=503, headers=headers)


def test_the_headers_are_a_copy() -> None:
    given_headers = {"Retry-After": "1"}
    error = StreamfxError("x", status_code=503, headers=given_headers)
    given_headers["Retry-After"] = "2"
    assert error.headers == {"Retry-After": "1"}
