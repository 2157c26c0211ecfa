"""streamfx: bounded, backpressured, cancellation-safe streaming for asyncio.

The core is a set of typed async-iterator combinators that know nothing about HTTP;
encoders turn their items into bytes, `StreamResponse` carries the bytes, and adapters
(`streamfx.adapters.*`, never imported from here) serve it. Every public name is
re-exported here; the packages whose names start with an underscore are private.
``docs/architecture.md`` in the repository maps the layers, the rules every part keeps
and the module where each behaviour lives.
"""

from streamfx._core.buffer import buffer
from streamfx._core.circuit import CircuitBreaker, CircuitOpenError, CircuitState, circuit
from streamfx._core.ensuring import ensuring
from streamfx._core.heartbeat import heartbeat
from streamfx._core.merge import merge
from streamfx._core.policy import BufferPolicy, Strategy
from streamfx._core.progress import Progress, progress
from streamfx._core.shutdown import (
    drain_on_signals,
    request_shutdown,
    reset_shutdown,
    set_auto_drain,
    shutdown_requested,
)
from streamfx._core.tap import tap
from streamfx._download.download import download
from streamfx._download.errors import DownloadError, DownloadNotFound, PathOutsideRoot
from streamfx._export.export import export
from streamfx._response.response import FileRange, StreamResponse
from streamfx._sse.decoder import SSEDecodeError, SSEDecoder
from streamfx._sse.event import ServerSentEvent
from streamfx._sse.response import sse
from streamfx._upload.errors import (
    MalformedUpload,
    UnsupportedMediaType,
    UploadError,
    UploadTooLarge,
)
from streamfx._upload.multipart import parse_multipart
from streamfx._upload.part import Part
from streamfx._version import __version__
from streamfx.errors import StreamfxError

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
    "SSEDecodeError",
    "SSEDecoder",
    "ServerSentEvent",
    "Strategy",
    "StreamResponse",
    "StreamfxError",
    "UnsupportedMediaType",
    "UploadError",
    "UploadTooLarge",
    "__version__",
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
    "set_auto_drain",
    "shutdown_requested",
    "sse",
    "tap",
]
