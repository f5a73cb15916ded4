"""StallWatch: records left unread for the stall time while the position stands (or creeps while
the consumer idles) are a stall, reported once."""

from __future__ import annotations

from stream_app.worker.stall import StallWatch

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
    assert watch.observe({P0: 100, P1: 60}, {P0: 30_000, P1: 70}) == []
    clock.now = 11
    # P1 read up to where it stood 5 s ago and more has come: flowing, not stalled.
    assert watch.observe({P0: 100, P1: 70}, {P0: 30_000, P1: 80}) == [P0]
    assert watch.lag == {P0: 29_900, P1: 10}
    clock.now = 30
    assert watch.observe({P0: 100, P1: 80}, {P0: 30_000, P1: 80}) == []  # once, not at every check


def test_a_busy_consumer_reading_a_long_backlog_slowly_is_not_stalled() -> None:
    clock = Clock()
    watch = StallWatch(stall_after_s=10, clock=clock)
    for t in range(0, 60, 5):
        clock.now = t
        assert watch.observe({P0: 1_000 + 500 * t}, {P0: 1_000_000}) == []


def test_a_position_creeping_while_the_consumer_idles_is_a_stall() -> None:
    clock = Clock()
    watch = StallWatch(stall_after_s=10, clock=clock)
    watch.observe({P0: 900}, {P0: 40_000})
    clock.now = 5
    assert watch.observe({P0: 925}, {P0: 40_000}, idle=True) == []
    clock.now = 10
    assert watch.observe({P0: 950}, {P0: 40_000}, idle=True) == [P0]


def test_a_quiet_partition_is_not_stalled_and_a_revoked_one_is_forgotten() -> None:
    clock = Clock()
    watch = StallWatch(stall_after_s=10, clock=clock)
    watch.observe({P0: 10, P1: 5}, {P0: 10, P1: 9})
    clock.now = 60
    assert watch.observe({P0: 10}, {P0: 10}, idle=True) == []  # no lag: nothing to read, not a stall
    assert watch.lag == {P0: 0}
    # A high watermark below the position (the embedded broker's answer for batched writes) is no lag.
    assert watch.observe({P0: 10}, {P0: 4}) == [] and watch.lag == {P0: 0}
