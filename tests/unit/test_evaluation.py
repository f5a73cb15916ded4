"""match_episodes(): event-wise matching of opened episodes to labelled failures."""

from __future__ import annotations

import numpy as np

from stream_app.contracts import iso_ms
from stream_app.lab.evaluation import match_episodes
from tests.support.builders import T0, alert, label

START, END = T0, T0 + 60_000  # the failure's span (epoch ms), as ``label()`` makes it
GRACE = 30_000


def test_episode_opening_inside_the_failure_detects_it_with_exact_delay() -> None:
    report = match_episodes([label()], [alert("press-01", START + 12_345)], grace_ms=GRACE)

    [outcome] = report.failures
    assert outcome.episodes == 1
    assert outcome.detected_ms == START + 12_345
    assert outcome.delay_ms == 12_345
    assert report.detected == 1
    assert report.episodes == 1
    assert report.false_alerts == []
    np.testing.assert_array_equal(report.delays_s(), [12.345])


def test_window_bounds_are_inclusive() -> None:
    at_start = match_episodes([label()], [alert("press-01", START)], grace_ms=GRACE)
    at_grace_end = match_episodes([label()], [alert("press-01", END + GRACE)], grace_ms=GRACE)

    assert at_start.failures[0].delay_ms == 0
    assert at_grace_end.failures[0].delay_ms == END + GRACE - START
    assert at_start.false_alerts == at_grace_end.false_alerts == []


def test_episode_just_after_the_grace_period_is_a_false_alert() -> None:
    late = alert("press-01", END + GRACE + 1)
    report = match_episodes([label()], [late], grace_ms=GRACE)

    assert report.detected == 0
    assert report.failures[0].episodes == 0
    assert report.failures[0].delay_ms is None
    assert report.false_alerts == [late]


def test_episode_one_ms_before_the_failure_starts_is_a_false_alert() -> None:
    early = alert("press-01", START - 1)
    report = match_episodes([label()], [early], grace_ms=GRACE)

    assert report.detected == 0
    assert report.false_alerts == [early]
    assert report.episodes == 1


def test_episode_on_a_healthy_device_is_a_false_alert() -> None:
    hit = alert("press-01", START + 5_000)
    elsewhere = alert("press-02", START + 5_000)

    report = match_episodes([label()], [hit, elsewhere], grace_ms=GRACE)

    assert report.detected == 1
    assert report.failures[0].episodes == 1
    assert report.false_alerts == [elsewhere]
    assert report.episodes == 2


def test_two_episodes_for_one_failure_both_match_and_the_first_sets_the_delay() -> None:
    second = alert("press-01", START + 40_000)
    first = alert("press-01", START + 10_000)

    report = match_episodes([label()], [second, first], grace_ms=GRACE)

    [outcome] = report.failures
    assert outcome.episodes == 2
    assert outcome.detected_ms == START + 10_000
    assert outcome.delay_ms == 10_000
    assert report.episodes == 2
    assert report.false_alerts == []


def test_close_alert_is_not_an_episode() -> None:
    opened = alert("press-01", START + 2_000, episode_id="press-01@X")
    closed = alert("press-01", START + 90_000, state="closed", episode_id="press-01@X")
    # A closing alert alone (its open alert was lost) is not counted either.
    orphan_close = alert("press-02", START + 1_000, state="closed")

    report = match_episodes([label()], [opened, closed, orphan_close], grace_ms=GRACE)

    assert report.episodes == 1
    assert report.failures[0].episodes == 1
    assert report.failures[0].delay_ms == 2_000
    assert report.false_alerts == []


def test_duplicate_open_alerts_of_one_episode_count_once() -> None:
    first = alert("press-01", START + 2_000, episode_id="press-01@E")
    redelivered = alert("press-01", START + 2_000, episode_id="press-01@E")
    report = match_episodes([label()], [first, redelivered], grace_ms=GRACE)
    assert report.episodes == 1
    assert report.failures[0].episodes == 1


def test_mixed_report() -> None:
    labels = [label("press-01"), label("press-02", start=START + 100_000, end=START + 160_000), label("press-03")]
    alerts = [
        alert("press-01", START + 3_000),  # detects press-01 after 3 s
        alert("press-02", START + 50_000),  # before press-02 fails: false
        alert("press-02", START + 107_500),  # detects press-02 after 7.5 s
        alert("press-04", START),  # never failed: false
    ]

    report = match_episodes(labels, alerts, grace_ms=GRACE)

    assert report.episodes == 4
    assert report.detected == 2
    assert [f.episodes for f in report.failures] == [1, 1, 0]
    assert [f.delay_ms for f in report.failures] == [3_000, 7_500, None]
    assert sorted(a.device_id for a in report.false_alerts) == ["press-02", "press-04"]
    assert [a.window_end for a in report.false_alerts if a.device_id == "press-02"] == [iso_ms(START + 50_000)]
    np.testing.assert_array_equal(report.delays_s(), [3.0, 7.5])


def test_no_alerts() -> None:
    report = match_episodes([label()], [], grace_ms=GRACE)
    assert (report.episodes, report.detected, report.false_alerts) == (0, 0, [])
    assert report.delays_s().shape == (0,)
