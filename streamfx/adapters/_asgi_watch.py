"""`DisconnectWatch`: how `to_asgi` notices that a client left while its body is idle.

ASGI tells an application that its client left only through ``receive()``, which
answers ``http.disconnect``; the sending task is busy in the body or in ``send``, so
someone else must wait on ``receive`` for the whole response. Promises:

- The sending task is cancelled (`client_gone`, once) as soon as ``receive()`` answers
  ``http.disconnect``, unless the response is already closing (its last message is
  being sent); `stalled` (the write timeout) does the same after aborting the
  connection where the server allows it (`streamfx.adapters._asgi_abort`).
- Other messages (request body the application did not read) are taken and dropped.
- A ``receive`` that fails, or answers something that is not a message, ends the watch
  (logged at DEBUG): the response goes on, as it would without a watch.
- After `stop`, the pending ``receive()`` has been cancelled and its clean-up has run,
  and nothing of the watch runs again: no task or callback is left behind.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import types
from collections.abc import Coroutine, Generator, Mapping
from typing import Any, Final

from streamfx._core.util import cancel_and_wait
from streamfx.adapters._asgi_abort import abort_connection
from streamfx.adapters._asgi_types import Message, Receive, Scope, Send

__all__ = ["DisconnectWatch"]

logger = logging.getLogger("streamfx.adapters.asgi")


class DisconnectWatch:
    """Listens on ``receive`` and cancels the sending task when the client leaves (or
    when `stalled` is called: the write timeout); `start` it, `stop` it before the
    application returns (nothing of it is left running then).

    Where the server's ``receive`` is known to wait on nothing but asyncio futures
    (uvicorn's: an ``asyncio.Event``; hypercorn's: ``asyncio.Queue.get``), each
    ``receive()`` is driven by hand, from the done-callback of the future it waits on, as
    a task would drive it: no task of its own, no coroutine of its own, no entry in the
    loop's set of tasks (some 0.6 KB per idle connection; ``python -m
    bench.idle_sse_asgi --where``), and no copy of the context per wait: the steps run
    in one empty `contextvars.Context` per thread (those receives read none). A
    disconnect is seen as soon as the future resolves, as it was by a task. Any other
    ``receive`` (wrapped by a middleware, another server) may need to run inside a task
    (``asyncio.current_task()``, ``asyncio.timeout``, anyio's cancel scopes, context
    variables), so it gets one. Why by hand and not a library: this is a
    task's own stepping rule (send, then wait on the yielded future or go again on the
    next turn), which no library offers without a task.
    """

    __slots__ = (
        "closing",
        "disconnected",
        "receive",
        "receiving",
        "scope",
        "send",
        "stopped",
        "task",
        "waiting_on",
        "watcher",
    )

    def __init__(self, task: asyncio.Task[Any], scope: Scope, receive: Receive, send: Send) -> None:
        self.task = task
        self.scope = scope
        self.receive = receive
        self.send = send
        self.closing = False
        self.disconnected = False
        self.stopped = False
        self.receiving: Generator[Any, None, Message] | Coroutine[Any, None, Message] | None = None
        self.waiting_on: asyncio.Future[Any] | None = None
        self.watcher: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start listening (the first ``receive()`` runs now, or in a task)."""
        if _steps_by_hand(self.receive):
            self._step()
        else:
            self.watcher = asyncio.get_running_loop().create_task(
                self.run(), name="streamfx.asgi disconnect watch"
            )

    async def stop(self) -> None:
        """Stop listening: the pending ``receive()`` is cancelled (its clean-up has run
        when this returns), and nothing of the watch runs afterwards."""
        self.closing = True
        if self.watcher is not None:
            await cancel_and_wait((self.watcher,))
            return
        self.stopped = True
        waiting_on, self.waiting_on = self.waiting_on, None
        if waiting_on is not None:
            waiting_on.remove_done_callback(self)
        receiving, self.receiving = self.receiving, None
        if receiving is not None:
            _cancel_receiving(receiving)

    def client_gone(self) -> None:
        """Treat the client as gone: cancel the sending task (unless it is closing)."""
        if not self.closing:
            self.disconnected = True
            self.task.cancel()

    def stalled(self) -> None:
        """The write timeout: abort the connection where the server lets us (before
        the cancellation, so that the server sees it lost before the application
        returns), then treat the client as gone."""
        if not self.closing:
            abort_connection(self.scope, self.receive, self.send)
        self.client_gone()

    def _step(self, _: object = None) -> None:
        """Drive ``receive()`` until it waits (or the client is gone); the callback of
        the future it waits on."""
        self.waiting_on = None
        while not self.stopped:
            try:
                receiving = self.receiving
                if receiving is None:
                    awaitable = self.receive()
                    # A coroutine is stepped as it is (its __await__ wrapper would cost
                    # an object per receive); any other awaitable through __await__.
                    receiving = self.receiving = (
                        awaitable if isinstance(awaitable, _STEPPED) else awaitable.__await__()
                    )
                waited = receiving.send(None)
            except StopIteration as done:
                self.receiving = None
                kind = done.value.get("type") if isinstance(done.value, Mapping) else None
                if kind == "http.disconnect":
                    self.stopped = True
                    self.client_gone()
                elif kind is None:
                    self._broken(f"ASGI receive returned {done.value!r}")
                continue
            except (Exception, asyncio.CancelledError):  # a broken receive tells no more
                self.receiving = None
                self._broken("ASGI receive failed while watching for a disconnect", True)
                return
            if waited is None:  # a bare yield: again on the next turn, as a task does
                asyncio.get_running_loop().call_soon(self._step)
            elif getattr(waited, "_asyncio_future_blocking", None):
                waited._asyncio_future_blocking = False
                # `__call__`: no bound method per wait; and the thread's one shared
                # context, not a copy of the current one per wait (as without
                # `context`): the receives stepped by hand read no context variable.
                waited.add_done_callback(self, context=_callback_context())
                self.waiting_on = waited
            else:  # not something asyncio can wait on: a task would fail the same way
                self.receiving = None
                _cancel_receiving(receiving)
                self._broken(f"ASGI receive yielded {waited!r}, which asyncio cannot wait on")
            return

    __call__ = _step  # the watch is the callback of the future it waits on

    def _broken(self, what: str, exc_info: bool = False) -> None:
        """A receive that cannot tell more: stop listening (as the task would end)."""
        self.stopped = True
        logger.debug(what, exc_info=exc_info)

    async def run(self) -> None:
        """The watch as a task's coroutine, for a ``receive`` not stepped by hand."""
        receive = self.receive
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    break
        except Exception:  # a broken receive cannot tell us more
            logger.debug("ASGI receive failed while watching for a disconnect", exc_info=True)
            return
        self.client_gone()


# The servers whose ``receive`` waits on asyncio futures only, read in their source:
# uvicorn's HTTP/1.1 protocols (an ``asyncio.Event``); hypercorn passes an
# ``asyncio.Queue``'s ``get``. The contract tests run the ASGI adapter under both.
_UVICORN_CYCLES: Final = frozenset(
    {"uvicorn.protocols.http.httptools_impl", "uvicorn.protocols.http.h11_impl"}
)


_STEPPED: Final = (types.CoroutineType, types.GeneratorType)


class _CallbackContext(threading.local):
    """One empty `contextvars.Context` per thread, in which every watch's steps run
    (per thread: a context cannot be entered twice at once, and each thread runs its
    own loop)."""

    def __init__(self) -> None:
        self.context = contextvars.Context()


_callback_contexts = _CallbackContext()


def _callback_context() -> contextvars.Context:
    return _callback_contexts.context


def _steps_by_hand(receive: Receive) -> bool:
    """Whether `receive` can be driven without a task (see `DisconnectWatch`)."""
    owner = getattr(receive, "__self__", None)
    if owner is None:
        return False
    if getattr(receive, "__func__", None) is asyncio.Queue.get:
        return True
    kind = type(owner)
    return (
        kind.__module__ in _UVICORN_CYCLES
        and kind.__name__ == "RequestResponseCycle"
        and getattr(receive, "__name__", "") == "receive"
    )


def _cancel_receiving(
    receiving: Generator[Any, None, Message] | Coroutine[Any, None, Message],
) -> None:
    """Cancel a pending ``receive()`` as a task's cancellation would: its clean-up runs."""
    try:
        receiving.throw(asyncio.CancelledError())
    except (StopIteration, asyncio.CancelledError):
        return
    except Exception:
        logger.debug("ASGI receive failed as it was cancelled", exc_info=True)
        return
    try:  # it went on waiting although cancelled: it is not waited for
        receiving.close()
    except Exception:
        logger.debug("ASGI receive failed as it was closed", exc_info=True)
