"""`BufferPolicy` and the checks behind every buffer: capacity, strategy, stall_after,
each refused with a clear error when the policy is created."""

from __future__ import annotations

from typing import Any

import pytest

from streamfx import BufferPolicy
from streamfx._core.policy import check_stall_after


def test_stall_after_defaults_to_a_quarter_second() -> None:
    assert BufferPolicy(64, "sliding").stall_after == 0.25
    assert BufferPolicy(64, "sliding", stall_after=None).stall_after is None
    assert BufferPolicy(8, "dropping", 0.25).stall_after == 0.25


@pytest.mark.parametrize("strategy", ["suspend", "sliding", "dropping"])
@pytest.mark.parametrize("stall_after", [None, 1, 0.001, 30.0])
def test_a_good_stall_after_is_accepted_with_every_strategy(
    strategy: Any, stall_after: float | None
) -> None:
    assert BufferPolicy(4, strategy, stall_after).stall_after == stall_after
    assert check_stall_after(stall_after) == stall_after


@pytest.mark.parametrize(
    ("stall_after", "error"),
    [
        (0, ValueError),
        (0.0, ValueError),
        (-1, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (float("-inf"), ValueError),
        ("1", TypeError),
        (True, TypeError),
        ([1.0], TypeError),
    ],
)
def test_a_bad_stall_after_is_refused_when_the_policy_is_created(
    stall_after: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="stall_after"):
        BufferPolicy(64, "sliding", stall_after)


@pytest.mark.parametrize(
    ("capacity", "strategy", "error", "match"),
    [
        (0, "sliding", ValueError, "capacity"),
        (1.5, "sliding", TypeError, "capacity"),
        (4, "fifo", ValueError, "strategy"),
    ],
)
def test_a_bad_capacity_or_strategy_is_refused(
    capacity: Any, strategy: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        BufferPolicy(capacity, strategy)
