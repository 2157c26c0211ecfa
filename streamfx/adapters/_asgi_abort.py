"""Dropping the connection of an ASGI client that stopped reading (private).

Why this exists: ASGI gives an application no way to abort a connection. When the
write timeout declares a client gone, the application stops sending and returns (or
raises); the server then *closes* the transport, and an asyncio transport's
``close()`` first waits for its write buffer to drain, which a client that reads
nothing never lets happen. So the socket stays open until the client goes away by
itself, possibly forever (measured with 20 clients that stopped reading, each on a
fresh server: uvicorn, hypercorn and granian each still held all 20 sockets after the
eviction), and uvicorn logs "ASGI callable returned without completing response" at
ERROR for each one. Raising from the application instead changes only the log line.

`abort_connection` aborts the transport itself (``abort()``: the buffer is discarded,
the socket closed at once) where the server lets it be found:

- HTTP/1.0 and 1.1 only: an HTTP/2 connection carries other streams, which an abort
  would cut;
- the transport is the ``transport`` attribute of the object whose bound method the
  ASGI ``receive`` (or ``send``) callable is. That is uvicorn's ``RequestResponseCycle``
  (h11 and httptools protocols, asyncio or uvloop). Frameworks often wrap ``send``
  (Starlette and FastAPI do) but pass ``receive`` through, so it is tried first. An
  ASGI middleware that wraps both hides the transport.

The server then sees the connection lost before the application returns: uvicorn logs
nothing. Where no transport is found (hypercorn, granian, a middleware wrapping both
callables), nothing happens here and the server's own close applies: the body is still
cancelled and its finalizers run, but the socket waits for the client.

Hand-written: no server, framework or library offers this.
"""

from __future__ import annotations

from typing import Any, Protocol

from streamfx.adapters._asgi_types import Receive, Scope, Send

__all__ = ["abort_connection"]

HTTP1: frozenset[object] = frozenset({"1.0", "1.1"})


class _Abortable(Protocol):
    def abort(self) -> None: ...
    def is_closing(self) -> bool: ...


def connection_transport(scope: Scope, receive: Receive, send: Send) -> _Abortable | None:
    """The HTTP/1.x connection's transport, when the server lets it be found (see the
    module docstring); else None."""
    if scope.get("http_version", "1.1") not in HTTP1:
        return None
    for channel in (receive, send):
        owner: Any = getattr(channel, "__self__", None)
        transport: Any = getattr(owner, "transport", None)
        if callable(getattr(transport, "abort", None)) and callable(
            getattr(transport, "is_closing", None)
        ):
            found: _Abortable = transport
            return found
    return None


def abort_connection(scope: Scope, receive: Receive, send: Send) -> bool:
    """Abort the request's connection if its transport can be found and is open;
    True when it was aborted."""
    transport = connection_transport(scope, receive, send)
    if transport is None or transport.is_closing():
        return False
    transport.abort()
    return True
