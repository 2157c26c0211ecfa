"""Positions: how a ``Last-Event-ID`` names where a subscriber is.

A subscription to one topic uses that topic's event ids as they are: the id of the
last event the client received *is* its position.

A subscription to several topics writes, with every event, an id that lists the
subscriber's position in each topic, in the order the topics were given, separated
by commas: ``"<position in topic 1>,<position in topic 2>,..."``. Such an id is only
meaningful for the same list of topics in the same order (the URL that produced it,
typically); any other shape is malformed and leads to a ``reset``.

The header is untrusted: at most `MAX_POSITION_LENGTH` characters per topic (plus the
commas) are looked at; anything longer, empty parts, or the wrong number of parts make
the id malformed. Each backend then parses its own positions.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MALFORMED", "MAX_POSITION_LENGTH", "join_positions", "split_positions"]

MAX_POSITION_LENGTH: Final = 64
"""The longest position (one topic's part of a ``Last-Event-ID``) that is parsed."""

MALFORMED: Final = "malformed"


def split_positions(last_event_id: str | None, count: int) -> list[str] | str | None:
    """The ``Last-Event-ID`` of a subscription to `count` topics, split per topic.

    Returns None when there is none (no header, or an empty one), the list of `count`
    positions, or `MALFORMED`.
    """
    if not last_event_id:
        return None
    if not isinstance(last_event_id, str):
        return MALFORMED
    if len(last_event_id) > count * (MAX_POSITION_LENGTH + 1) - 1:
        return MALFORMED
    parts = [last_event_id] if count == 1 else last_event_id.split(",")
    if len(parts) != count or any(not 0 < len(part) <= MAX_POSITION_LENGTH for part in parts):
        return MALFORMED
    return parts


def join_positions(positions: list[str]) -> str:
    """The ``Last-Event-ID`` of a multi-topic subscriber at `positions`."""
    return ",".join(positions)
