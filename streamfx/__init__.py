"""streamfx: bounded, backpressured, cancellation-safe streaming for asyncio.

The core (this package's top level) is a set of typed async-iterator combinators that
know nothing about HTTP. See ``DESIGN.md`` in the project for the layers.
"""

from ._buffer import buffer
from ._circuit import CircuitBreaker, CircuitOpenError, CircuitState, circuit
from ._download import download
from ._download_errors import DownloadError, DownloadNotFound, PathOutsideRoot
from ._ensuring import ensuring
from ._export import export
from ._heartbeat import heartbeat
from ._merge import merge
from ._multipart import parse_multipart
from ._part import Part
from ._policy import BufferPolicy, Strategy
from ._progress import Progress, progress
from ._response import FileRange, StreamResponse
from ._shutdown import drain_on_signals, request_shutdown, reset_shutdown, shutdown_requested
from ._sse import ServerSentEvent, SSEDecoder
from ._sse_response import sse
from ._tap import tap
from ._upload_errors import MalformedUpload, UnsupportedMediaType, UploadError, UploadTooLarge

__all__ = [
    "BufferPolicy",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "DownloadError",
    "DownloadNotFound",
    "FileRange",
    "MalformedUpload",
    "Part",
    "PathOutsideRoot",
    "Progress",
    "SSEDecoder",
    "ServerSentEvent",
    "Strategy",
    "StreamResponse",
    "UnsupportedMediaType",
    "UploadError",
    "UploadTooLarge",
    "buffer",
    "circuit",
    "download",
    "drain_on_signals",
    "ensuring",
    "export",
    "heartbeat",
    "merge",
    "parse_multipart",
    "progress",
    "request_shutdown",
    "reset_shutdown",
    "shutdown_requested",
    "sse",
    "tap",
]

__version__ = "0.1.0"
