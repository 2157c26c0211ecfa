"""The broadcast section's floor sentence (`bench.report_broadcast`): the floor's
latency and CPU per write, what one publish costs, and whether the floor was met."""

from __future__ import annotations

from typing import Any

from bench.report_broadcast import _live_floor, _per_write


def run(p50: float, p99: float, user: float, system: float, writes: int = 1000) -> dict[str, Any]:
    return {
        "p50": p50,
        "p99": p99,
        "server_user_us_per_write": user,
        "server_sys_us_per_write": system,
        "server_writes": writes,
        "subscribers": 1000,
        "stalled": 0,
        "events": 10,
        "delivered_share": 1.0,
    }


def live(floor: dict[str, Any]) -> dict[str, Any]:
    return {
        "subscribers": 1000,
        "rate": 100,
        "runs": {"streamfx": run(20.0, 40.0, 20.0, 15.0)},
        "floor": floor,
        "low_rate": {
            "rate": 10,
            "runs": {
                "raw": run(9.0, 19.0, 11.0, 14.0, writes=10_000),
                "streamfx": run(11.0, 22.0, 16.0, 14.0),
            },
        },
    }


def test_the_floor_sentence_names_its_figures_and_the_cost_of_one_publish() -> None:
    text = _live_floor(live(run(12.5, 27.0, 12.0, 14.0, writes=4_000)))
    # the cost of one publish comes from the low rate, where each write carries one event
    assert "(10,000 writes for 10,000 deliveries)" in text
    assert "25.0 µs of server CPU per write (11.0 user + 14.0 sys)" in text
    assert "costs at least 25.0 ms of CPU" in text  # 1,000 subscribers x 25 µs
    assert "more than the 10 ms between two publishes at 100 events/s" in text
    assert "At 100 events/s it measured p50 12.5 / p99 27.0 ms, with 4,000 writes for" in text
    assert "is **not met** on this machine" in text
    assert (
        "at 100 events/s p50 20.0 / p99 40.0 ms with 1,000 writes for 10,000 deliveries and 35.0"
        in text
    )


def test_a_floor_within_the_live_floor_says_so() -> None:
    text = _live_floor(live(run(0.8, 9.0, 0.5, 0.5)))
    assert "within the live floor" in text
    assert "not met" not in text


def test_results_without_the_floor_say_it_was_not_in_the_run() -> None:
    assert "not in this run" in _live_floor({"subscribers": 1000, "rate": 100, "runs": {}})
    assert _per_write({"p50": 1.0}) == "n/a"
    assert _per_write(run(1, 2, 3.0, 4.0)) == "3.0 + 4.0 = 7.0"
