"""EpisodeTracker: consecutive anomalous windows open one episode; quiet windows close it."""

from __future__ import annotations

import pytest

from stream_app.pipeline.episodes import EpisodeRule, EpisodeTracker, Transition

RULE = EpisodeRule(open_after=3, close_after=5, close_ratio=0.8)
STEP = 1000  # ms between windows


def feed(
    tracker: EpisodeTracker, device: str, ratios: list[float], *, start_ms: int = 0, updates: bool = False
) -> list[tuple[int, Transition]]:
    """Feed one ratio per window, STEP apart from ``start_ms``; return (at_ms, transition) for each
    open and close (and severity update, with ``updates``)."""
    out = []
    for i, ratio in enumerate(ratios):
        at_ms = start_ms + i * STEP
        for transition in tracker.update(device, at_ms, ratio):
            if updates or transition.kind != "update":
                out.append((at_ms, transition))
    return out


def one(transitions: list[Transition]) -> Transition | None:
    """The single open/close transition of one window, or None (severity updates left out)."""
    kept = [t for t in transitions if t.kind != "update"]
    assert len(kept) <= 1
    return kept[0] if kept else None


@pytest.fixture
def tracker() -> EpisodeTracker:
    return EpisodeTracker(RULE)


def test_ratios_at_or_below_the_line_never_open(tracker: EpisodeTracker) -> None:
    assert feed(tracker, "d", [0.1, 0.5, 0.99, 1.0] * 50) == []
    assert not tracker.is_open("d")


def test_two_anomalous_windows_do_not_open(tracker: EpisodeTracker) -> None:
    assert feed(tracker, "d", [2.0, 2.0, 0.5, 2.0, 2.0, 0.5]) == []
    assert not tracker.is_open("d")


def test_three_anomalous_windows_open_one_episode(tracker: EpisodeTracker) -> None:
    transitions = feed(tracker, "d", [0.5, 1.5, 2.5, 1.2, 3.0, 4.0], start_ms=10_000)

    [(at_ms, opened)] = transitions
    assert at_ms == 13_000  # the third anomalous window
    assert opened == Transition("open", "d@11000", started_ms=11_000, ended_ms=None, peak_score=2.5, windows=3)
    assert tracker.is_open("d")
    assert tracker.open_episodes() == {"d": "d@11000"}


def test_hovering_around_the_line_after_opening_does_not_flap(tracker: EpisodeTracker) -> None:
    feed(tracker, "d", [2.0, 2.0, 2.0])
    hovering = [0.85, 1.2, 0.9, 1.0, 0.8, 1.1] * 17  # 102 windows, all >= close_ratio
    assert feed(tracker, "d", hovering, start_ms=3 * STEP) == []
    assert tracker.is_open("d")


def test_five_quiet_windows_close_with_end_at_the_last_anomalous_window(tracker: EpisodeTracker) -> None:
    # 0..2 open; 3 anomalous (1.5 at 3000 ms); 4 hovers (0.9, not anomalous); 5..9 quiet.
    ratios = [2.0, 3.0, 2.0, 1.5, 0.9, 0.1, 0.2, 0.3, 0.4, 0.79]
    transitions = feed(tracker, "d", ratios)

    assert [t.kind for _, t in transitions] == ["open", "closed"]
    at_ms, closed = transitions[1]
    assert at_ms == 9 * STEP  # the fifth quiet window
    assert closed == Transition("closed", "d@0", started_ms=0, ended_ms=3 * STEP, peak_score=3.0, windows=10, reason="quiet")
    assert not tracker.is_open("d")
    assert tracker.open_episodes() == {}


def test_four_quiet_windows_do_not_close_and_a_hover_resets_the_quiet_run(tracker: EpisodeTracker) -> None:
    feed(tracker, "d", [2.0, 2.0, 2.0])
    quiet = [0.1] * 4
    assert feed(tracker, "d", quiet + [0.85] + quiet, start_ms=3 * STEP) == []
    assert tracker.is_open("d")


def test_a_later_failure_opens_a_second_different_episode(tracker: EpisodeTracker) -> None:
    first = feed(tracker, "d", [2.0] * 3 + [0.1] * 5)
    second = feed(tracker, "d", [0.1] * 10 + [2.0] * 3 + [0.1] * 5, start_ms=100_000)

    assert [t.kind for _, t in first] == ["open", "closed"]
    assert [t.kind for _, t in second] == ["open", "closed"]
    first_id, second_id = first[0][1].episode_id, second[0][1].episode_id
    assert first_id == "d@0"
    assert second_id == "d@110000"
    assert first_id != second_id
    # The second episode counts only its own windows and peak.
    assert second[1][1].windows == 8
    assert second[1][1].started_ms == 110_000 and second[1][1].ended_ms == 112_000


def test_devices_are_independent(tracker: EpisodeTracker) -> None:
    # Interleave: "a" is anomalous, "b" alternates, so only "a" reaches three in a row.
    events = []
    for i in range(4):
        events.append(("a", one(tracker.update("a", i * STEP, 2.0))))
        events.append(("b", one(tracker.update("b", i * STEP, 2.0 if i % 2 == 0 else 0.5))))

    opened = [(device, t) for device, t in events if t is not None]
    assert len(opened) == 1
    assert opened[0][0] == "a"
    assert opened[0][1].episode_id == "a@0"
    assert tracker.open_episodes() == {"a": "a@0"}
    assert not tracker.is_open("b")


def test_replaying_the_same_windows_gives_the_same_ids() -> None:
    ratios = [0.5] * 4 + [1.5] * 4 + [0.1] * 6 + [0.9] * 3 + [2.0] * 5 + [0.2] * 5
    runs = []
    for _ in range(2):
        tracker = EpisodeTracker(RULE)
        runs.append(feed(tracker, "press-7", ratios, start_ms=1_700_000_000_000))

    assert runs[0] == runs[1]
    assert [t.episode_id for _, t in runs[0]] == [
        "press-7@1700000004000",
        "press-7@1700000004000",
        "press-7@1700000017000",
        "press-7@1700000017000",
    ]


# --- Resuming an episode another worker left open (a takeover or restart) ---------------------

from stream_app.pipeline.episodes import OpenEpisode  # noqa: E402


def test_resumed_episode_is_joined_by_the_first_window_at_or_after_its_start() -> None:
    tracker = EpisodeTracker(EpisodeRule(open_after=3, close_after=2, close_ratio=0.8))
    tracker.resume("d", OpenEpisode("d@1000", 1000, 2.5, 4))
    assert one(tracker.update("d", 900, 1.5)) is None and not tracker.is_open("d")  # re-read history before it
    assert one(tracker.update("d", 1100, 1.5)) is None and tracker.is_open("d")  # joined, no second "open"
    assert one(tracker.update("d", 1200, 0.1)) is None
    closed = one(tracker.update("d", 1300, 0.1))
    assert closed is not None and closed.kind == "closed" and closed.episode_id == "d@1000"
    assert closed.started_ms == 1000 and closed.peak_score == 2.5 and closed.windows == 7


def test_re_read_readings_that_reach_the_episode_start_join_it_without_a_second_open() -> None:
    tracker = EpisodeTracker(EpisodeRule(open_after=2, close_after=5, close_ratio=0.8))
    tracker.resume("d", OpenEpisode("d@1000", 1000, 2.0, 3))
    assert one(tracker.update("d", 900, 0.2)) is None
    assert one(tracker.update("d", 1000, 2.0)) is None and tracker.open_episodes() == {"d": "d@1000"}
    assert one(tracker.update("d", 1100, 2.0)) is None


def test_an_episode_that_opens_before_the_resumed_one_replaces_it() -> None:
    tracker = EpisodeTracker(EpisodeRule(open_after=2, close_after=1, close_ratio=0.8))
    tracker.resume("d", OpenEpisode("d@1000", 1000, 2.0, 3))
    assert one(tracker.update("d", 700, 2.0)) is None
    opened = one(tracker.update("d", 800, 2.0))  # this worker saw an earlier episode open: it is authoritative
    assert opened is not None and opened.episode_id == "d@700"
    closed = one(tracker.update("d", 900, 0.1))
    assert closed is not None and closed.episode_id == "d@700"
    assert one(tracker.update("d", 1100, 0.1)) is None and not tracker.is_open("d")  # the resumed copy is gone


def test_resume_does_not_override_a_device_this_worker_already_tracks() -> None:
    tracker = EpisodeTracker(EpisodeRule(open_after=1, close_after=5, close_ratio=0.8))
    one(tracker.update("d", 500, 0.2))
    tracker.resume("d", OpenEpisode("d@1000", 1000, 2.0, 3))
    assert one(tracker.update("d", 1100, 0.2)) is None and not tracker.is_open("d")


# --- Time-aware closing, new faults inside an episode, escalation, maximum length ---------------


def test_a_slow_stream_closes_after_close_after_s_not_thirty_windows() -> None:
    rule = EpisodeRule(open_after=3, close_after=30, close_ratio=0.8, close_after_s=900)
    tracker = EpisodeTracker(rule)
    hour = 3_600_000
    for i in range(3):
        tracker.update("d", i * hour, 0.1)  # learn the pace: one window an hour
    feed_at = [(3 + i) * hour for i in range(6)]
    kinds = [[t.kind for t in tracker.update("d", at, r)] for at, r in zip(feed_at, [2.0, 2.0, 2.0, 0.1, 0.1, 0.1])]
    # 900 s is under one window: the quiet stretch is min(open_after, close_after) = 3 windows.
    assert kinds == [[], [], ["open"], [], [], ["closed"]]


def test_a_new_fault_after_a_quiet_stretch_opens_its_own_episode() -> None:
    tracker = EpisodeTracker(EpisodeRule(open_after=3, close_after=10, close_ratio=0.8))
    out = feed(tracker, "d", [2.0] * 3 + [0.1] * 5 + [2.0] * 3)
    assert [(t.kind, t.episode_id, t.reason) for _, t in out] == [
        ("open", "d@0", ""),
        ("closed", "d@0", "new episode"),
        ("open", "d@8000", ""),
    ]
    assert out[1][1].ended_ms == 2 * STEP


def test_an_open_episode_reports_each_escalation_once() -> None:
    tracker = EpisodeTracker(EpisodeRule(open_after=2, close_after=5, close_ratio=0.8))
    out = feed(tracker, "d", [1.2, 1.2, 1.6, 1.7, 3.2, 3.3, 2.0], updates=True)
    assert [(t.kind, t.peak_score) for _, t in out] == [("open", 1.2), ("update", 1.6), ("update", 3.2)]


def test_a_fault_far_larger_than_the_open_episode_opens_its_own() -> None:
    # A marginal episode (peak 1.3) is open when a fault three times as far from normal starts: it is not
    # hidden in the old episode, quiet stretch or not. Growth by less than the factor stays an update.
    # Its own growth, however fast, is an update while it settles (lag 4: its first 8 windows).
    tracker = EpisodeTracker(EpisodeRule(open_after=3, close_after=10, close_ratio=0.8, escalate_lag=4))
    settling = [1.2, 1.3, 1.2, 1.1, 2.0, 3.0, 1.5, 1.4, 1.5, 1.3]
    out = feed(tracker, "d", settling + [7.0, 7.0, 7.0, 9.0, 13.9, 1.0])
    assert [(at, t.kind, t.reason) for at, t in out] == [
        (2000, "open", ""),
        (12_000, "closed", "superseded"),
        (12_000, "open", ""),
    ]
    assert out[1][1].peak_score == 3.0 and out[2][1].episode_id == "d@10000" and out[2][1].peak_score == 7.0


def test_a_stuck_sensor_inside_an_episode_the_model_opened_is_a_new_fault() -> None:
    tracker = EpisodeTracker(EpisodeRule(open_after=2, close_after=10, close_ratio=0.8))
    out = feed(tracker, "d", [1.5, 1.5, 1.4, float("inf"), float("inf"), float("inf")])
    assert [(t.kind, t.reason) for _, t in out] == [("open", ""), ("closed", "superseded"), ("open", "")]
    assert feed(tracker, "d", [float("inf")] * 5, start_ms=6 * STEP) == []  # nothing is larger than a stop


def test_escalation_can_be_turned_off() -> None:
    tracker = EpisodeTracker(EpisodeRule(open_after=3, close_after=10, close_ratio=0.8, escalate_factor=0))
    out = feed(tracker, "d", [1.2, 1.3, 1.2, 4.0, 4.0, 4.0, 4.0])
    assert [t.kind for _, t in out] == ["open"]


def test_an_episode_longer_than_max_duration_closes() -> None:
    tracker = EpisodeTracker(EpisodeRule(open_after=2, close_after=5, close_ratio=0.8, max_duration_s=10))
    out = feed(tracker, "d", [2.0] * 14)
    assert [(at, t.kind, t.reason) for at, t in out] == [(1000, "open", ""), (10_000, "closed", "max duration"), (12_000, "open", "")]


def test_a_run_barely_over_the_line_needs_more_windows(tracker: EpisodeTracker) -> None:
    """Three windows at 1.05 x the line add up to less than three at 1.2: more windows first, up to 12."""
    assert [at for at, t in feed(tracker, "marginal", [1.05] * 20)] == [11_000]  # the twelfth window
    assert [at for at, t in feed(tracker, "growing", [1.05, 1.1, 1.3, 1.5])] == [3_000]  # adds up at the fourth
    assert [at for at, t in feed(tracker, "far", [1.05, 1.05, 3.0])] == [2_000]  # one far window is enough
    assert [at for at, t in feed(tracker, "stuck", [1.05, 1.05, float("inf")])] == [2_000]
    assert feed(tracker, "flapping", [1.1, 1.1, 1.1, 1.1, 0.5] * 10) == []  # (a run ends under the line)
    held = EpisodeTracker(RULE)  # (held back past where it would have opened: the detector keeps its windows out of the lines)
    assert [held.holding("d") for ratio in [1.05] * 4 if not held.update("d", 0, ratio)] == [False, False, True, True]
    feed(held, "d", [1.05] * 8, start_ms=1000)
    assert held.is_open("d") and not held.holding("d")
    plain = EpisodeTracker(EpisodeRule(open_after=3, close_after=5, close_ratio=0.8, marginal_ratio=1.0))
    assert [at for at, t in feed(plain, "marginal", [1.05] * 20)] == [2_000]


def test_the_setting_turns_the_marginal_rule_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from stream_app.config.settings import Settings
    from stream_app.worker.start import detector_config

    settings = Settings()
    assert detector_config(settings.detection, settings.episodes).rule.marginal_ratio == 1.2
    monkeypatch.setenv("FLOORWATCH_EPISODE_MARGINAL_RATIO", "1")
    settings = Settings()
    assert detector_config(settings.detection, settings.episodes).rule.marginal_ratio == 1.0
