"""How a subscriber starts: from now, from its ``Last-Event-ID``, or with a ``reset``.

`plan` decides the start when it can (the logs are ready and hold the id, or the
backend's `fetch` already found it), else says to `WAIT` for the logs or to `fetch`
from the store first; `fetch` asks the store. The start's promises are those of
`streamfx.broadcast._subscription` (exactly one ``reset`` when the id cannot be
honoured, the replay otherwise, never a partial replay).
"""

from __future__ import annotations

from collections.abc import Sequence

from streamfx.broadcast._backend import FETCH, WAIT, Backend, Located
from streamfx.broadcast._frames import reset_frame, retagged
from streamfx.broadcast._log import TopicLog
from streamfx.broadcast._positions import MALFORMED, join_positions

__all__ = ["Start", "fetch", "plan"]


class Start:
    """How a subscriber starts: its cursors and what it writes before the live frames."""

    __slots__ = ("cursors", "lead", "replayed", "reset")

    def __init__(self, cursors: list[int], lead: bytes, replayed: int, reset: bool) -> None:
        self.cursors = cursors
        self.lead = lead
        self.replayed = replayed
        self.reset = reset


def _fresh(logs: Sequence[TopicLog]) -> Start:
    return Start([log.head for log in logs], b"", 0, False)


def _reset(backend: Backend, logs: Sequence[TopicLog], reason: str) -> Start:
    cursors = [log.head for log in logs]
    positions = [backend.position(log, cursor) for log, cursor in zip(logs, cursors, strict=True)]
    return Start(cursors, reset_frame(join_positions(positions), reason), 0, True)


def plan(
    backend: Backend,
    logs: Sequence[TopicLog],
    wanted: list[str] | str | None,
    found: list[Located | None],
) -> Start | str:
    """The start if it can be decided now (`found` holds what `fetch` returned), else
    `WAIT` or `FETCH`."""
    if not all(log.ready for log in logs):
        return WAIT
    if wanted is None:
        return _fresh(logs)
    if wanted == MALFORMED:
        return _reset(backend, logs, "malformed")
    results: list[Located | str] = []
    for index, (log, position) in enumerate(zip(logs, wanted, strict=True)):
        known = found[index]
        results.append(known if known is not None else backend.locate(log, position))
    for result in results:
        if isinstance(result, Located) and result.cursor is None:
            return _reset(backend, logs, result.reason)
    if WAIT in results:
        return WAIT
    if FETCH in results:
        return FETCH
    located = [result for result in results if isinstance(result, Located)]
    if any(
        result.cursor is not None and result.cursor < log.first - 1
        for log, result in zip(logs, located, strict=True)
    ):
        found[:] = [None] * len(logs)  # the log moved on while the store was read: again
        return FETCH
    cursors = [result.cursor for result in located if result.cursor is not None]
    assert isinstance(wanted, list)
    if len(logs) == 1:
        lead = b"".join(frame for _, frame in located[0].replay)
    else:
        lead = _tagged_replay(backend, logs, wanted, located)
    return Start(cursors, lead, sum(len(result.replay) for result in located), False)


def _tagged_replay(
    backend: Backend, logs: Sequence[TopicLog], wanted: list[str], located: list[Located]
) -> bytes:
    """The replay of a multi-topic subscriber, each frame carrying its composite id."""
    positions = list(wanted)
    pieces: list[bytes] = []
    for index, result in enumerate(located):
        for event_id, frame in result.replay:
            positions[index] = event_id
            pieces.append(retagged(frame, join_positions(positions)))
    return b"".join(pieces)


async def fetch(
    backend: Backend, logs: Sequence[TopicLog], wanted: list[str], found: list[Located | None]
) -> bool:
    """Ask the store where each topic that needs it starts; False when one of them must
    wait for its log to catch up first."""
    for index, (log, position) in enumerate(zip(logs, wanted, strict=True)):
        if found[index] is None and backend.locate(log, position) == FETCH:
            result = await backend.fetch(log, position)
            if not isinstance(result, Located):
                return False
            found[index] = result
    return True
