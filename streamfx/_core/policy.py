"""Buffer policies: how much a stage may hold and what happens when it is full.

Every queue in streamfx has an explicit, positive, integer capacity. Anything else
(`0`, a negative number, `None`, a float such as `inf`, the string ``"unbounded"``) is
refused when the policy or the combinator is *created*, so a misconfiguration surfaces
at start-up instead of as a memory leak under load.
"""

from __future__ import annotations

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
"""

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


def check_strategy(strategy: object) -> Strategy:
    """Return `strategy` if it is one of `STRATEGIES`; raise `ValueError` otherwise."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown buffer strategy {strategy!r}; expected one of {STRATEGIES}")
    return strategy  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class BufferPolicy:
    """A capacity and a strategy, validated when created.

    Response builders take one of these to override their per-kind default
    (SSE: sliding 64; download: suspend 256; export: suspend 128; upload: suspend 64).
    """

    capacity: int
    strategy: Strategy = "suspend"

    def __post_init__(self) -> None:
        check_capacity(self.capacity)
        check_strategy(self.strategy)
