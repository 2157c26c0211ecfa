"""How every adapter's upload helper reads the request body: the declared length first,
then the read rule (``read_timeout``, ``min_rate``), the same for every adapter.

**Declared length.** A request whose ``Content-Length`` is larger than ``max_size`` is
refused with `UploadTooLarge` (413) before a byte of its body is read
(`refuse_declared_length`), after the helper's arguments were checked (`parse_upload`).

**The read rule** (`ReadRule`), two arguments of every upload helper:

- ``read_timeout`` (`READ_TIMEOUT`, 30 s): a client that sends nothing for this long is
  refused. It is also the client's allowance: every wait for the body spends it, and
- ``min_rate`` (`MIN_RATE`, 1024 bytes per second): every byte received earns
  ``1 / min_rate`` seconds of it back, and it never grows past ``read_timeout``.

So a client is never refused while every stretch of waiting for it, of any length
``L``, brings at least ``min_rate * (L - read_timeout)`` bytes: it keeps up
``min_rate``, with pauses shorter than ``read_timeout``. One that sends nothing is
refused after ``read_timeout`` seconds; one that sent a burst and then stalls, after at
most ``read_timeout`` seconds (a burst earns no more); one slower than ``min_rate`` (a
trickle of a byte now and then), within ``read_timeout * min_rate / (min_rate - its
rate)`` seconds: about ``read_timeout`` for a trickle. Only time spent *waiting* for
the client counts: the body is read only when the application asks for more, and time
the application spends on what it already has is not the client's.

A refusal is `UploadTimeout` (408 Request Timeout); its `detail` names the argument and
its value. ``min_rate=None`` keeps only the silence limit (any byte refills the whole
allowance); ``read_timeout=None`` turns the rule off (``min_rate`` must then be None).

How each adapter keeps it: ASGI, Quart and aiohttp read the body through `timed_body`,
which waits for each chunk through a `ReadTimer` that cuts a wait at the moment the
rule breaks. A WSGI read is a
blocking call that returns only when it has all the bytes it asked for, so nobody can
tell how many came so far: it is given the time that the bytes it waits for would
earn (``wait_started(size)``), and the rule is checked again when it returns
(`ReadRule.wait_ended`); see `streamfx.adapters.wsgi._upload` for how a read is cut.

Hand-written: servers time out whole requests or idle connections (or nothing), each
differently; this is the one rule for the body of an upload, whatever the server.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import Final, TypedDict, TypeVar, Unpack

from streamfx._upload.errors import UploadError, UploadTooLarge
from streamfx._upload.multipart import parse_multipart
from streamfx._upload.stream import PartStream, Sniff
from streamfx.adapters._upload_refusal import BodyState
from streamfx.metrics import MetricsHook

READ_TIMEOUT: Final = 30.0
"""The default ``read_timeout``, in seconds."""

MIN_RATE: Final = 1024
"""The default ``min_rate``, in bytes per second."""

T = TypeVar("T")


class UploadOptions(TypedDict, total=False):
    """The keyword arguments of `streamfx.parse_multipart` an upload helper passes on
    as they are (besides ``max_size``, ``max_part_size`` and ``max_parts``, which every
    helper requires): the per-kind limits, the header and preamble limits, the allowed
    types, the sniff hook, and the metrics' name and hook."""

    max_file_size: int | None
    max_field_size: int | None
    max_files: int | None
    max_fields: int | None
    max_headers: int
    max_header_size: int
    max_preamble_size: int
    allowed_types: Iterable[str] | None
    sniff: Sniff | None
    name: str
    metrics: MetricsHook | None


class UploadTimeout(UploadError):
    """The client sent the request body too slowly (see `ReadRule`): 408."""

    status_code = 408


def refuse_declared_length(length: int | None, max_size: int) -> None:
    """Raise `UploadTooLarge` when the request's declared `length` (its
    ``Content-Length``, None when it has none) is larger than `max_size`."""
    if length is not None and length > max_size:
        raise UploadTooLarge(
            f"the upload is larger than {max_size} bytes (max_size={max_size}): "
            f"its Content-Length is {length}",
            limit="max_size",
            value=max_size,
        )


def parse_upload(
    body: AsyncIterable[bytes],
    content_type: str | bytes | None,
    declared_length: int | None,
    *,
    max_size: int,
    max_part_size: int,
    max_parts: int,
    **options: Unpack[UploadOptions],
) -> PartStream:
    """`streamfx.parse_multipart` over `body`, started the way every upload helper starts
    it: the arguments are checked first (a bad one is a `ValueError` whatever the
    request), then a `declared_length` (the ``Content-Length``) over `max_size` is
    refused (`refuse_declared_length`). Nothing of `body` is read here."""
    stream = parse_multipart(
        body,
        content_type,
        max_size=max_size,
        max_part_size=max_part_size,
        max_parts=max_parts,
        **options,
    )
    refuse_declared_length(declared_length, max_size)
    return stream


def content_length(value: str | bytes | None) -> int | None:
    """A ``Content-Length`` header's value as an int; None when it is missing or is not
    a non-negative integer (the server refuses such a request itself, or it has none)."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        return None
    return int(text)


def check_read_rule(read_timeout: float | None, min_rate: int | None) -> None:
    """Raise `ValueError` unless `read_timeout` is positive seconds or None and
    `min_rate` a positive int (bytes per second) or None, and not a `min_rate` without a
    `read_timeout`."""
    if read_timeout is not None and (
        isinstance(read_timeout, bool)
        or not isinstance(read_timeout, int | float)
        or not 0 < read_timeout < math.inf
    ):
        raise ValueError(
            f"read_timeout must be a positive number of seconds or None, got {read_timeout!r}"
        )
    if min_rate is not None and (
        isinstance(min_rate, bool) or not isinstance(min_rate, int) or min_rate < 1
    ):
        raise ValueError(
            f"min_rate must be a positive int (bytes per second) or None, got {min_rate!r}"
        )
    if read_timeout is None and min_rate is not None:
        raise ValueError("min_rate is counted against read_timeout: give a read_timeout too")


class ReadRule:
    """The read rule of one request body (see the module docstring).

    The adapter calls `wait_started` when it begins to wait for the body and
    `wait_ended` when the wait gave bytes (or the end of the body); a wait it cuts at
    the time `wait_started` returned is answered with `expired`. `deadline` is the
    clock time the current wait breaks the rule at (None: no wait, or no limit), for a
    watchdog on another thread.
    """

    __slots__ = (
        "_allowance",
        "_clock",
        "_min_rate",
        "_read_timeout",
        "_silent",
        "_started",
        "deadline",
    )

    def __init__(
        self,
        read_timeout: float | None,
        min_rate: int | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_read_rule(read_timeout, min_rate)
        self._read_timeout = read_timeout
        self._min_rate = min_rate
        self._clock = clock
        self._allowance = math.inf if read_timeout is None else float(read_timeout)
        self._started = 0.0
        self._silent = True  # the allowance was whole when the current wait began
        self.deadline: float | None = None

    @property
    def clock(self) -> Callable[[], float]:
        """The clock `deadline` is read on."""
        return self._clock

    @property
    def read_timeout(self) -> float | None:
        """``read_timeout``: seconds of silence allowed (None: the rule is off)."""
        return self._read_timeout

    @property
    def min_rate(self) -> int | None:
        """``min_rate``: bytes per second (None: only silence counts)."""
        return self._min_rate

    @property
    def enabled(self) -> bool:
        """False when ``read_timeout`` is None: nothing is ever refused."""
        return self._read_timeout is not None

    def wait_started(self, size: int | None = None) -> float | None:
        """A wait for the body begins now: the seconds it may last with nothing in
        return (None: for ever). `size`: the wait is one blocking read of that many
        bytes, whose progress cannot be seen before it returns: it may last as long as
        its whole size would earn."""
        now = self._clock()
        self._started = now
        # Cut with a whole allowance, a wait that can see its bytes saw none for
        # read_timeout; a blocking read may have had a trickle.
        self._silent = size is None and self._allowance >= (self._read_timeout or 0.0)
        if self._read_timeout is None:
            self.deadline = None
            return None
        seconds = self._allowance
        if size is not None:
            if self._min_rate is None:
                # Any byte refills the whole allowance: a read making progress is fine,
                # and this side cannot see progress before the read returns.
                self.deadline = None
                return None
            seconds += size / self._min_rate
        self.deadline = now + seconds
        return seconds

    def wait_ended(self, size: int) -> None:
        """The wait ended with `size` bytes (0: the body ended). Raises `UploadTimeout`
        when the wait took longer than the rule allows for what it brought (a wait that
        could not be cut in time)."""
        self.deadline = None
        if self._read_timeout is None:
            return
        waited = self._clock() - self._started
        if not size:
            earned = 0.0
        elif self._min_rate is None:
            earned = math.inf
        else:
            earned = size / self._min_rate
        left = self._allowance + earned - waited
        if left < 0 and size:
            raise self.expired()
        self._allowance = min(self._read_timeout, left) if size else max(left, 0.0)

    def expired(self) -> UploadTimeout:
        """The error for a wait that broke the rule."""
        if self._silent or self._min_rate is None:
            return self.silence()
        timeout = self._read_timeout or 0.0
        return UploadTimeout(
            f"the client sent the upload slower than min_rate={self._min_rate} bytes per "
            f"second (read_timeout={timeout:g})"
        )

    def silence(self) -> UploadTimeout:
        """The error for a client that sent nothing for ``read_timeout`` seconds."""
        timeout = self._read_timeout or 0.0
        return UploadTimeout(
            f"the client sent no upload data for {timeout:g} s (read_timeout={timeout:g})"
        )


class ReadTimer:
    """Cuts the waits of one request body at the read rule's deadline (ASGI, aiohttp).

    ``await timer.read(wait)`` awaits `wait` (the next piece of the body) and raises
    `UploadTimeout` if the rule breaks first; the caller reports what came with
    ``rule.wait_ended(size)``. One timer per body, not one per wait (an
    ``asyncio.timeout`` per chunk costs more than the chunk's parsing): it is armed
    at the first wait's deadline and, when it fires, cancels the waiting task only if
    the current wait is past its deadline, else moves to the current deadline. A wait
    is cut with ``task.cancel()``; a cancellation from elsewhere at the same moment
    is kept, as ``asyncio.timeout`` keeps it. Call `stop` when the body is done.
    """

    __slots__ = ("_fired", "_loop", "_rule", "_task", "_timer", "_timer_at")

    def __init__(self, rule: ReadRule) -> None:
        self._rule = rule
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[object] | None = None  # the task waiting now, if any
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf  # the rule clock's time the timer fires at
        self._fired = False

    async def read(self, wait: Awaitable[T]) -> T:
        rule = self._rule
        seconds = rule.wait_started()
        if seconds is None:
            return await wait
        task = asyncio.current_task()
        assert task is not None, "ReadTimer.read must run in a task"
        deadline = rule.deadline
        assert deadline is not None
        if deadline < self._timer_at:
            self._arm(seconds, deadline)
        self._task = task
        try:
            return await wait
        except asyncio.CancelledError:
            if self._fired and task.uncancel() == 0:
                self._fired = False
                raise rule.expired() from None
            raise
        finally:
            self._task = None

    def stop(self) -> None:
        """The body is done: drop the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = math.inf
        self._task = None

    def _arm(self, seconds: float, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._timer = self._loop.call_later(seconds, self._check)
        self._timer_at = deadline

    def _check(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        task = self._task
        deadline = self._rule.deadline
        if task is None or deadline is None:
            return  # no wait now: the next one arms the timer again
        left = deadline - self._rule.clock()
        if left > 0:
            self._arm(left, deadline)
            return
        self._fired = True
        task.cancel()


ReceiveChunk = Callable[[], Awaitable[tuple[bytes, bool]]]
"""``await receive_chunk()``: the next piece of a request body (maybe empty) and whether
more follows; ``(b"", False)`` when the body has ended. It raises the adapter's own
reading errors as `UploadError`s (a client that left is `MalformedUpload`)."""


def timed_body(
    receive_chunk: ReceiveChunk,
    read_timeout: float | None,
    min_rate: int | None,
    state: BodyState | None = None,
) -> AsyncIterator[bytes]:
    """The request body read with `receive_chunk` under the read rule of `read_timeout`
    and `min_rate` (checked here: `ValueError`), as the parser asks for it: each wait is
    cut by one `ReadTimer` (`UploadTimeout` when the rule breaks), what came is
    reported to the rule, and to `state` (the refusal's connection rule,
    `streamfx.adapters._upload_refusal`) when given, its end included. Empty pieces are
    not yielded. The timer is dropped when the body ends or is closed."""
    return _timed_body(receive_chunk, ReadRule(read_timeout, min_rate), state)


async def _timed_body(
    receive_chunk: ReceiveChunk, rule: ReadRule, state: BodyState | None
) -> AsyncIterator[bytes]:
    timer = ReadTimer(rule)
    try:
        more = True
        while more:
            chunk, more = await timer.read(receive_chunk())
            rule.wait_ended(len(chunk))
            if state is not None:
                state.took(len(chunk))
                if not more:
                    state.ended = True
            if chunk:
                yield chunk
    finally:
        timer.stop()
