"""Buffer policies: how much a stage may hold and what happens when it is full.

Every queue in streamfx has an explicit, positive, integer capacity. Anything else
(`0`, a negative number, `None`, a float such as `inf`, the string ``"unbounded"``) is
refused when the policy or the combinator is *created*, so a misconfiguration surfaces
at start-up instead of as a memory leak under load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal, get_args

Strategy = Literal["suspend", "sliding", "dropping"]
"""What a full buffer does with the next item.

- ``"suspend"``: nothing is lost; the producer waits until the consumer makes room.
- ``"sliding"``: the oldest waiting item is dropped so that the newest gets in.
- ``"dropping"``: the incoming item is dropped; what is already waiting stays.

The two lossy strategies drop only while the consumer is not ready (away from the
buffer, blocked in a write, say): while it waits for the next item, a full buffer makes
the producer wait, so a burst into a consumer that keeps up loses nothing.

A lossy buffer given a `stall_after` (`BufferPolicy`: `DEFAULT_STALL_AFTER`, 0.25 s,
by default; `buffer`: None, never) stops dropping once its consumer has stayed away
that long while the buffer was full (a stalled client): the producer *pauses*. It
keeps the item it had just pulled in hand and pulls nothing more from its source, so
a stalled stream costs nothing per item its source would have produced (that stays
in the source: an upstream queue grows, a publisher's event is not waited on). What the buffer holds
is kept, in order; the pause drops nothing. When the consumer comes back (takes
again) the producer resumes at once: the item in hand goes in after the held ones,
then the source is pulled again and the strategy applies as before. Before
`stall_after` the strategy drops exactly as described above.

What a consumer that comes back after a pause gets, against one that was never
paused: the held items are the newest *as of the pause* instead of as of its return,
then the item in hand, then the source's next. It misses no more: a live source's
items published while the producer is paused (a publisher's ticks) are never pulled,
exactly as the ones it would have dropped are never sent; a source that waits (a
queue, a generator) loses nothing, its items stay there. So a short `stall_after`
costs a returning consumer only freshness, and bounds what one that is away costs:
per absence, the pulls that fill the buffer (`capacity` items) and `stall_after`
seconds of pulls that are dropped, however long the absence lasts.
"""

DEFAULT_STALL_AFTER: Final = 0.25
"""`BufferPolicy`'s `stall_after`: a quarter of a second of drops, the buffer full and
its consumer away. Long beside a turn of a busy event loop or a write into a briefly
full socket (a client that keeps up is not paused), short beside any write timeout
(the adapters' 60 s). At 1 s, a slow client (40 KB/s against a 200 KB/s stream, one
64 KB chunk written every 1.6 s) had its source pulled for 1.3 s of each 1.6 s, and
200 clients that stalled together each pulled for 1.3 s after it: in the soak's
readers scenario this doubled the healthy clients' p99 latency."""

STRATEGIES: Final[tuple[str, ...]] = get_args(Strategy)


def check_capacity(capacity: object) -> int:
    """Return `capacity` if it is a positive ``int``; raise otherwise.

    Raises `TypeError` for a value that is not an ``int`` at all (a float, a string,
    ``None``, a ``bool``) and `ValueError` for an ``int`` below 1. ``"unbounded"``,
    ``None`` and ``float("inf")`` get a `ValueError` that says so, because they are the
    usual attempts to ask for an unbounded buffer, which streamfx never provides.
    """
    if capacity is None or capacity == "unbounded" or capacity == float("inf"):
        raise ValueError(
            f"capacity must be a positive int; {capacity!r} asks for an unbounded buffer, "
            "which streamfx does not provide"
        )
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise TypeError(f"capacity must be a positive int, not {type(capacity).__name__}")
    if capacity < 1:
        raise ValueError(f"capacity must be a positive int, got {capacity}")
    return capacity


def check_stall_after(stall_after: object) -> float | None:
    """Return `stall_after` if it is None or a positive, finite number of seconds.

    Raises `TypeError` for anything that is not an ``int``, a ``float`` or None (a
    ``bool``, a string) and `ValueError` for zero, a negative number, NaN or an
    infinity (None, not ``inf``, is how to say "never pause").
    """
    if stall_after is None:
        return None
    if isinstance(stall_after, bool) or not isinstance(stall_after, int | float):
        raise TypeError(
            f"stall_after must be a number of seconds or None, not {type(stall_after).__name__}"
        )
    if not (stall_after > 0 and math.isfinite(stall_after)):
        raise ValueError(
            f"stall_after must be a positive, finite number of seconds or None (never "
            f"pause), got {stall_after!r}"
        )
    return float(stall_after)


def check_strategy(strategy: object) -> Strategy:
    """Return `strategy` if it is one of `STRATEGIES`; raise `ValueError` otherwise."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown buffer strategy {strategy!r}; expected one of {STRATEGIES}")
    return strategy  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class BufferPolicy:
    """A capacity, a strategy and a stall time, validated when created.

    Response builders take one of these to override their per-kind default
    (SSE: sliding 64; download: suspend 256; export: suspend 128; upload: suspend 64).

    `stall_after` (seconds, or None: never): a lossy buffer (``"sliding"``,
    ``"dropping"``) whose consumer has stayed away that long while the buffer was full
    stops pulling its source until the consumer comes back; what it holds is kept and
    nothing more is dropped meanwhile (see `Strategy`, which says what a consumer gets
    when it comes back). So the default SSE stream of a client that stopped reading
    costs nothing per published event a quarter of a second after its buffer filled
    (`DEFAULT_STALL_AFTER`), until the adapter's write timeout ends it. It means
    nothing for ``"suspend"`` (whose producer waits for room anyway) and is accepted
    there.

    Raises, when created: `TypeError` for a capacity that is not an ``int`` or a
    `stall_after` that is not a number or None; `ValueError` for a capacity below 1 (or
    one asking for "unbounded"), an unknown strategy, or a `stall_after` that is not
    positive and finite.
    """

    capacity: int
    strategy: Strategy = "suspend"
    stall_after: float | None = DEFAULT_STALL_AFTER

    def __post_init__(self) -> None:
        check_capacity(self.capacity)
        check_strategy(self.strategy)
        check_stall_after(self.stall_after)
