"""StallWatch: a partition whose position stops while its lag stays positive is reported once."""

from __future__ import annotations

from stream_app.stall import StallWatch

P0, P1 = ("readings", 0), ("readings", 1)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_position_that_stops_below_the_high_watermark_is_a_stall_reported_once() -> None:
    clock = Clock()
    watch = StallWatch(stall_after_s=10, clock=clock)
    assert watch.observe({P0: 100, P1: 50}, {P0: 30_000, P1: 60}) == []
    clock.now = 5
    assert watch.observe({P0: 100, P1: 60}, {P0: 30_000, P1: 60}) == []
    clock.now = 11
    assert watch.observe({P0: 100, P1: 60}, {P0: 30_000, P1: 60}) == [P0]  # P1 is caught up, not stalled
    assert watch.lag == {P0: 29_900, P1: 0}
    clock.now = 30
    assert watch.observe({P0: 100, P1: 60}, {P0: 30_000, P1: 60}) == []  # once, not at every check
    clock.now = 31
    assert watch.observe({P0: 200, P1: 60}, {P0: 30_000, P1: 60}) == []  # moving again
    clock.now = 42
    assert watch.observe({P0: 200, P1: 60}, {P0: 30_000, P1: 60}) == [P0]  # a new stall is a new report


def test_a_quiet_partition_is_not_stalled_and_a_revoked_one_is_forgotten() -> None:
    clock = Clock()
    watch = StallWatch(stall_after_s=10, clock=clock)
    watch.observe({P0: 10, P1: 5}, {P0: 10, P1: 9})
    clock.now = 60
    assert watch.observe({P0: 10}, {P0: 10}) == []  # no lag: nothing to read, not a stall
    assert watch.lag == {P0: 0}
    # A high watermark below the position (the embedded broker's answer for batched writes) is no lag.
    assert watch.observe({P0: 10}, {P0: 4}) == [] and watch.lag == {P0: 0}
