"""The detector: device lines that learn each device's normal, what refits may learn from, idle-device
eviction, and the checks and operator rules beside the model."""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.contracts import Reading, iso_ms
from stream_app.pipeline.detector import Detection, Detector, DetectorConfig, RefitHook
from stream_app.pipeline.episodes import EpisodeRule, OpenEpisode
from stream_app.pipeline.lines import LineConfig
from stream_app.pipeline.reservoir import RefitConfig
from stream_app.pipeline.rules import parse_rules
from tests.support.builders import T0, MaxScorer, bundle
from tests.support.builders import detector as build_detector



def detector(*, warmup: int = 20, on_refit: RefitHook | None = None, refit: RefitConfig = RefitConfig()) -> Detector:
    """Adaptive lines on one feature ``x``, windows of 2: an episode opens after 3 windows over the line."""
    config = DetectorConfig(
        rule=EpisodeRule(open_after=3, close_after=5, close_ratio=0.8),
        lines=LineConfig(history=32, block=2, warmup=warmup, max_step=0.05),
        refit=refit,
    )
    return build_detector(bundle(["x"], window=2), config, scorer=MaxScorer(max_batch=16), on_refit=on_refit)


def run(d: Detector, xs: list[float], *, device: str = "d", start: int = 0) -> list[tuple[int, str]]:
    """Feed one reading a second; return (reading index, alert state) of every alert."""
    readings = [Reading(device_id=device, ts=T0 + (start + i) * 1000, values={"x": float(x)}) for i, x in enumerate(xs)]
    out = []
    for k in range(0, len(readings), 16):
        for alert in d.process(readings[k : k + 16], now_ms=T0 + 10**9).alerts:
            index = (int(np.datetime64(alert.window_end[:-1], "ms").astype(np.int64)) - T0) // 1000
            out.append((int(index), alert.episode.state))
    return out


def test_a_normal_the_model_never_saw_is_learnt_in_warmup_and_a_fault_still_found() -> None:
    rng = np.random.default_rng(1)
    d = detector(warmup=20)
    normal = list(3.0 + 0.2 * rng.random(300))  # always 3x over the model's own line
    assert run(d, normal) == []  # no episode: not during warm-up, not after
    alerts = run(d, [30.0] * 5 + list(3.0 + 0.2 * rng.random(40)), start=300)
    assert alerts[0] == (302, "open")  # the third window over the device's own line


def test_windows_of_an_episode_never_reach_the_refit_reservoir() -> None:
    d = detector(warmup=4, on_refit=lambda *_: None, refit=RefitConfig(capacity=512, min_windows=10**6))
    assert d.reservoir is not None
    rng = np.random.default_rng(2)
    # A device that floods anomalies: mostly at 50, with short normal breaks.
    xs = [0.5 + 0.1 * rng.random() for _ in range(40)]
    for _ in range(10):
        xs += [50.0] * 30 + [0.5] * 2
    run(d, xs)
    kept = d.reservoir.windows()
    assert len(kept) > 0
    assert kept.max() < 1.0  # only plainly normal windows: nothing of the fault


def test_a_refit_hook_sees_only_windows_before_it_is_called() -> None:
    calls: list[tuple[int, int]] = []

    def hook(det: Detector, windows: np.ndarray, now_ms: int) -> None:
        calls.append((len(windows), now_ms))

    d = detector(warmup=4, on_refit=hook, refit=RefitConfig(capacity=64, min_windows=32, every_windows=32, min_interval_s=10))
    run(d, [0.5] * 200)
    assert len(calls) >= 2
    assert all(n <= 64 for n, _ in calls)
    assert all(b - a >= 10_000 for (_, a), (_, b) in zip(calls, calls[1:]))


def test_evict_idle_drops_only_devices_idle_longer_than_the_limit_by_the_workers_clock() -> None:
    d = detector(warmup=2)
    now = T0 + 10**9

    def send(device: str, i: int, at: int) -> None:
        d.process([Reading(device_id=device, ts=T0 + i * 1000, values={"x": 0.5})], now_ms=at)

    for i in range(4):
        send("old", i, now)
        send("busy", i, now)
    send("busy", 10, now + 50_000)
    assert d.devices == 2
    assert d.evict_idle(now + 60_000, 30_000) == ["old"]  # busy was seen 10 s before, old 60 s
    assert d.devices == 1 and d.unseen(["old", "busy"]) == ["old"]
    assert not d.episodes.knows("old") and len(d.model_lines) == len(d.level_lines) <= 1
    send("old", 0, now + 61_000)  # back: starts afresh, an old timestamp is no longer "out of order"
    assert d.devices == 2 and d.windows.filled(d.windows._slots["old"]) == 1


def test_memory_stays_flat_when_every_device_is_new_and_idle_ones_are_evicted() -> None:
    d = detector(warmup=2)
    sizes = []
    for round_ in range(5):
        now = T0 + round_ * 1_000_000
        for k in range(0, 2_000, 500):
            batch = [Reading(device_id=f"r{round_}-{k + j}", ts=T0, values={"x": 0.5}) for j in range(500)]
            d.process(batch, now_ms=now)
        d.evict_idle(now + 1_000_000, 500_000)
        sizes.append(d.windows.nbytes)
    assert d.devices == 0 and len(set(sizes)) == 1  # the arrays never grew after the first round


# --- checks and operator rules in the detector ---------------------------------------------


def checks_detector(
    rules: str = "", *, stride: int = 1, window: int = 3, open_after: int = 3, **thresholds_extra: object
) -> Detector:
    # No envelope and no stuck features: only the model (line at 1.0) and the rules can alert.
    episodes = EpisodeRule(open_after=open_after, close_after=3, close_ratio=0.8)
    config = DetectorConfig(
        stride=stride, rule=episodes, rules=tuple(parse_rules(rules)), lines=LineConfig(enabled=False), min_check_windows=0
    )
    return build_detector(bundle(["x", "y"], window, **thresholds_extra), config)


def xy_readings(x: list[float], y: float = 0.5) -> list[Reading]:
    # Small varying noise on y so nothing is flat; every value stays well under the model's line.
    return [
        Reading(device_id="d", ts=T0 + i * 1000, values={"x": v, "y": y + 0.01 * (i % 3)}) for i, v in enumerate(x)
    ]


def feed(detector: Detector, readings: list[Reading]) -> Detection:
    return detector.process(readings, now_ms=T0 + 10**8)


def test_a_sensor_repeating_one_value_for_its_last_readings_is_stuck() -> None:
    # x repeats 0.3 for readings 5-9; y is flat throughout but is not a stuck-checked feature.
    x = [0.1, 0.2, 0.1, 0.2, 0.1] + [0.3] * 5 + [0.1, 0.2, 0.1, 0.2]
    readings = [Reading(device_id="d", ts=T0 + i * 1000, values={"x": v, "y": 0.5}) for i, v in enumerate(x)]

    out = feed(checks_detector(open_after=1, window=4, stuck_features=["x"], stuck_run=3), readings)

    # Windows end at readings 3..13; those ending at 7, 8, 9 have x's last three readings all 0.3.
    assert np.isinf(out.window_ratio).tolist() == [i in (7, 8, 9) for i in range(3, 14)]
    assert out.alerts[0].check_failures == ["stuck:x"]


def test_a_window_whose_mean_leaves_the_envelope_is_out_of_range() -> None:
    # x's normal envelope is [0, 0.4]; the model (line 1.0) sees nothing wrong with 0.7.
    x = [0.2] * 5 + [0.7] * 4 + [0.2] * 5
    out = feed(checks_detector(open_after=2, feature_envelope={"x": (0.0, 0.4)}), xy_readings(x))

    values = np.array([[r.values["x"], r.values["y"]] for r in xy_readings(x)])
    windows = np.lib.stride_tricks.sliding_window_view(values, 3, axis=0)  # (n, 2, 3)
    model = windows.max(axis=(1, 2))  # the stand-in model's score, over a line of 1.0
    level = np.abs(windows[:, 0].mean(axis=1) - 0.2) / 0.2  # distance from the envelope's centre / half-width
    np.testing.assert_allclose(out.window_ratio, np.maximum(model, level), rtol=1e-5)
    assert (level > 1).any() and (level < 1).any()
    assert out.alerts[0].episode.state == "open" and out.alerts[0].check_failures == ["level:x"]


def test_an_envelope_calibrated_on_few_windows_is_widened_not_dropped() -> None:
    """The card says 1 calibration window: under ``min_check_windows`` the envelope [0, 0.4] is widened 2x
    around its centre ([-0.2, 0.6]); 0.5 is then normal and 0.9 still out of range. 0 turns the check off."""

    def detector(widening: float) -> Detector:
        episodes = EpisodeRule(open_after=2, close_after=3, close_ratio=0.8)
        config = DetectorConfig(rule=episodes, lines=LineConfig(enabled=False), min_check_windows=1000, short_check_widening=widening)
        return build_detector(bundle(["x", "y"], 3, feature_envelope={"x": (0.0, 0.4)}), config, scorer=MaxScorer(gain=0.1))

    def failures(d: Detector, level: float) -> list[str]:
        out = feed(d, xy_readings([0.2] * 5 + [level] * 4 + [0.2] * 5))
        return [f for a in out.alerts for f in a.check_failures]

    assert failures(detector(2.0), 0.5) == []
    assert failures(detector(2.0), 0.9) == ["level:x"]
    assert failures(detector(0.0), 0.9) == []  # off below the minimum, as before
    assert failures(checks_detector(open_after=2, feature_envelope={"x": (0.0, 0.4)}), 0.5) == ["level:x"]  # trusted: as is


def test_a_sensor_whose_level_wanders_has_no_level_check() -> None:
    # The same out-of-envelope x as above, on a model that reads x centred (its level wanders): no level verdict.
    def detector() -> Detector:
        d = checks_detector(open_after=2, feature_envelope={"x": (0.0, 0.4), "y": (0.4, 0.6)})
        centred = d.bundle.model_copy(update={"scaler": d.bundle.scaler.model_copy(update={"centred": [True, False]})})
        d.use_model(centred, d.scorer)
        return d

    assert feed(detector(), xy_readings([0.2] * 5 + [0.7] * 4 + [0.2] * 5)).alerts == []
    y_far = feed(detector(), xy_readings([0.2] * 14, y=0.9))  # y keeps its check
    assert y_far.alerts[0].check_failures == ["level:y"]


def test_a_rule_on_a_feature_the_model_does_not_use_fails_at_construction() -> None:
    with pytest.raises(ValueError, match=r"rule:pressure<3: no such feature in model .*\(features: x, y\)"):
        checks_detector("x<1, pressure<3")


def test_a_broken_rule_opens_an_episode_the_model_alone_would_not() -> None:
    x = [0.2] * 10 + [0.7] * 5 + [0.2] * 10  # 0.7: under the model's line, over the operator's
    readings = xy_readings(x)

    alone = feed(checks_detector(), readings)
    assert alone.alerts == [] and (alone.window_ratio <= 1.0).all()

    out = feed(checks_detector("x <= 0.6, y > 0"), readings)

    opened, closed = out.alerts
    assert opened.episode.state == "open" and closed.episode.state == "closed"
    assert opened.check_failures == ["rule:x<=0.6"]
    assert opened.top_feature == "x"
    assert opened.score < opened.threshold  # the model's own verdict: normal
    # One window per reading after the first full one; the five bad readings are five anomalous windows.
    assert np.isinf(out.window_ratio).sum() == 5
    assert opened.episode.episode_id == f"d@{T0 + 10_000}"  # the window ending at the first bad reading


def test_the_rule_names_the_top_feature_over_the_model_error() -> None:
    # y's error (0.5) is the model's largest; the rule on x still names x.
    out = feed(checks_detector("x > 0.1", open_after=1), xy_readings([0.2, 0.2, 0.05]))
    (opened,) = out.alerts
    assert opened.feature_errors["y"] > opened.feature_errors["x"]
    assert opened.top_feature == "x" and opened.check_failures == ["rule:x>0.1"]


@pytest.mark.parametrize("stride", [1, 2, 3, 5])
@pytest.mark.parametrize("at", range(3, 15))
def test_each_reading_is_checked_in_exactly_one_window(stride: int, at: int) -> None:
    x = [0.2] * 15
    x[at] = 0.9
    out = feed(checks_detector("x<0.8", stride=stride), xy_readings(x))
    # With stride 5 > window 3, readings between windows belong to no window and cannot be checked.
    in_a_window = (2 - at) % stride < 3  # scored windows end at readings 2, 2 + stride, ...
    assert np.isinf(out.window_ratio).sum() == int(in_a_window)


@pytest.mark.parametrize("at", [0, 1, 2])
def test_the_first_window_checks_all_its_readings(at: int) -> None:
    x = [0.2] * 7
    x[at] = 0.9
    out = feed(checks_detector("x<0.8", stride=2), xy_readings(x))  # windows end at readings 2, 4, 6
    assert np.isinf(out.window_ratio).tolist() == [True, False, False]

def test_a_stuck_run_longer_than_the_window_is_counted_across_windows() -> None:
    # x's stuck run (6) is longer than the window (4): a quantised sensor that often repeats itself.
    x = [0.1, 0.2, 0.1, 0.2] + [0.3] * 8 + [0.1, 0.2]
    out = feed(checks_detector(open_after=1, window=4, stuck_runs={"x": 6}), xy_readings(x))

    # Windows end at readings 3..13; x has repeated 0.3 six times by reading 9, and until reading 11.
    assert np.isinf(out.window_ratio).tolist() == [i in (9, 10, 11) for i in range(3, 14)]
    assert out.alerts[0].check_failures == ["stuck:x"]


def test_a_value_a_sensor_rested_at_and_left_is_not_stuck_the_next_time() -> None:
    moving = [0.1, 0.2] * 6
    x = [0.1, 0.2, 0.1, 0.2] + [0.0] * 5 + moving + [0.0] * 5 + moving + [0.7] * 5 + [0.1]
    out = feed(checks_detector(open_after=1, window=4, stuck_runs={"x": 3}), xy_readings(x))

    opened = [a for a in out.alerts if a.episode.state == "open"]
    closed = [a for a in out.alerts if a.episode.state == "closed"]
    # The first rest at 0.0 alerts; it ends by itself, so the second at 0.0 does not; a stop at 0.7 does.
    assert [a.window_end for a in opened] == [out.alerts[0].window_end, opened[-1].window_end] and len(opened) == 2
    assert closed[0].episode.close_reason == "quiet"
    assert all(a.check_failures == ["stuck:x"] for a in opened)
    assert opened[-1].window_end == iso_ms(T0 + (len(x) - 4) * 1000)


def test_a_value_the_sensor_rested_at_in_training_is_never_stuck() -> None:
    # Training showed x resting at 0.0 (an idle floor): a long run there is normal from the first day on;
    # a run at 0.7 is still a stuck sensor.
    moving = [0.1, 0.2] * 6
    x = [0.1, 0.2, 0.1, 0.2] + [0.0] * 10 + moving + [0.7] * 5 + [0.1]
    out = feed(checks_detector(open_after=1, window=4, stuck_runs={"x": 3}, resting_values={"x": [0.0]}), xy_readings(x))

    opened = [a for a in out.alerts if a.episode.state == "open"]
    assert len(opened) == 1 and opened[0].check_failures == ["stuck:x"]
    assert opened[0].window_end == iso_ms(T0 + (len(x) - 4) * 1000)


def test_a_rest_is_learnt_when_the_model_opened_the_episode_before_the_sensor_sat_still() -> None:
    # x steps up to 2.0 (over the model's line at once) and sits there: the model opens the episode, the stuck
    # check joins it; x moves on, the episode closes; the second time 2.0 is over the line but not stuck.
    moving = [0.1, 0.2] * 6
    x = [0.1, 0.2, 0.1, 0.2] + [2.0] * 6 + moving + [2.0] * 6 + moving
    out = feed(checks_detector(open_after=1, window=4, stuck_runs={"x": 3}), xy_readings(x))

    stuck = np.isinf(out.window_ratio)
    first, second = slice(4 - 3, 10 - 3), slice(22 - 3, 28 - 3)  # windows ending at readings 4-9 and 22-27
    assert stuck[first].tolist() == [False, False, True, True, True, True]
    assert not stuck[second].any() and (out.window_ratio[second] > 1.0).all()


def test_a_sensor_that_stops_inside_an_episode_is_a_new_one_and_its_value_not_a_rest() -> None:
    # x steps up to 2.0 and wanders there (the model opens an episode), then stops at 2.25: the stuck check
    # escalates it to an episode of its own, and the escalated close does not learn 2.25 as a resting
    # value (the sensor never left it), so the stop stays stuck until it ends.
    # (Three windows to open: the escalating run is counted inside the old episode before it closes.)
    x = [0.1, 0.2, 0.1, 0.2] + [2.0, 2.1] * 4 + [2.25] * 8 + [0.1, 0.2] * 6
    out = feed(checks_detector(open_after=3, window=4, stuck_runs={"x": 3}), xy_readings(x))

    kinds = [(a.episode.state, a.episode.close_reason) for a in out.alerts if a.episode.state in ("open", "closed")]
    assert kinds[:3] == [("open", None), ("closed", "superseded"), ("open", None)]
    stuck = np.isinf(out.window_ratio)
    stop = slice(14 - 3, 20 - 3)  # windows ending at readings 14-19: 2.25 repeated 3 to 8 times
    assert stuck[stop].all()


def _excursions(length: int, count: int, seed: int) -> list[float]:
    """Normal around 0.5 (the line is 1.0), with excursions to 2.5: past 3x the median, where no line can follow."""
    rng = np.random.default_rng(seed)
    xs = [0.5 + 0.1 * rng.random() for _ in range(60)]
    for _ in range(count):
        xs += [2.5] * length + [0.5 + 0.1 * rng.random() for _ in range(18)]
    return xs


def test_excursions_past_the_median_cap_alert_every_time() -> None:
    d = detector(warmup=4)
    opened = [i for i, state in run(d, _excursions(12, 20, seed=5)) if state == "open"]
    assert len(opened) == 20  # every one of them, the last as the first


def test_lone_and_repeated_devices_in_a_batch_give_the_same_verdicts() -> None:
    """A device with one window in a batch has its lines read and fed over the batch, one with several
    window by window: the same readings in batches of either shape give the same ratios, alerts and refit windows."""
    rng = np.random.default_rng(8)
    n_devices, n_readings = 12, 240
    level = rng.uniform(0.3, 4.0, n_devices)  # some devices sit over the model's line: they learn their own
    xs = level[:, None] * (1.0 + 0.2 * rng.random((n_devices, n_readings)))
    xs[2, 120:130] = 40.0  # faults: episodes open and close
    xs[5, 60:200] = 25.0  # long enough to close at max duration and relearn
    readings = [Reading(device_id=f"d{k}", ts=T0 + t * 1000, values={"x": float(xs[k, t])}) for t in range(n_readings) for k in range(n_devices)]
    results = []
    for size in (n_devices, 3 * n_devices, n_devices + n_devices // 2):  # all lone, none lone, a mix
        config = DetectorConfig(
            rule=EpisodeRule(open_after=3, close_after=5, close_ratio=0.8, max_duration_s=50),
            lines=LineConfig(history=16, block=2, warmup=8, max_step=0.05),
            refit=RefitConfig(capacity=4096, min_windows=10**6),
        )
        d = build_detector(bundle(["x"], window=2), config, scorer=MaxScorer(max_batch=64), on_refit=lambda *_: None)
        d.min_round = 1  # every round over arrays, however few its devices
        ratios, alerts = [], []
        for k in range(0, len(readings), size):
            out = d.process(readings[k : k + size], now_ms=T0 + 10**9)
            ratios += out.window_ratio.tolist()
            alerts += [(a.device_id, a.window_end, a.episode.state, a.episode.close_reason, a.score) for a in out.alerts]
        assert d.reservoir is not None
        results.append((ratios, alerts, d.reservoir.windows(), [d.model_lines.line(f"d{k}") for k in range(n_devices)]))
    first = results[0]
    assert any(state == "closed" for _, _, state, _, _ in first[1]) and len(first[2]) > 100
    for other in results[1:]:
        assert other[0] == first[0] and other[1] == first[1] and other[3] == first[3]
        np.testing.assert_array_equal(other[2], first[2])


def _batch_run(batch_quiet: bool, readings: list[Reading], size: int, n_devices: int, min_round: int = 1) -> list[object]:
    config = DetectorConfig(
        rule=EpisodeRule(open_after=3, close_after=10, close_ratio=0.8, close_after_s=200, max_duration_s=3000),  # (4 windows)
        rules=tuple(parse_rules("x<100")),
        lines=LineConfig(history=16, block=2, warmup=8, max_step=0.05),
        refit=RefitConfig(capacity=4096, min_windows=10**6),
        trace=True,
    )
    d = build_detector(bundle(["x"], window=2), config, scorer=MaxScorer(max_batch=64), on_refit=lambda *_: None)
    d.batch_quiet = batch_quiet
    d.min_round = min_round
    d.resume("d7", OpenEpisode("d7@" + str(T0 + 30 * 60_000), T0 + 30 * 60_000, 2.5, 4))  # another worker's episode
    seen: list[object] = []
    for k in range(0, len(readings), size):
        out = d.process(readings[k : k + size], now_ms=T0 + 10**12)
        seen.append((
            out.window_devices, out.window_end_ms.tolist(), out.window_ratio.tolist(), out.window_open.tolist(),
            out.window_score.tolist(), out.window_line.tolist(), out.window_episode, out.window_opened.tolist(),
            [a.model_dump(exclude={"detected_at"}) for a in out.alerts],
            {k: (s.device_id, s.last_reading_ms, s.state, s.last_score, s.line, s.ratio) for k, s in out.statuses.items()},
        ))  # fmt: skip
    assert d.reservoir is not None
    seen.append((d.reservoir.windows().tolist(), d.episodes.open_episodes()))
    seen.append([(d.model_lines.line(f"d{k}"), d.level_lines.line(f"d{k}"), d.season.allowance(f"d{k}")) for k in range(n_devices)])
    return seen


@pytest.mark.parametrize("min_round", [1, 8])
@pytest.mark.parametrize("shape", ["lone", "repeated", "mixed", "runs"])
def test_quiet_windows_judged_over_the_batch_match_window_by_window(shape: str, min_round: int) -> None:
    """Judging a batch round by round (quiet windows over arrays; with ``min_round`` 8, thin rounds window by
    window) gives what every window one by one gives: verdicts, alerts, episode ids, statuses, trace, refit
    windows and lines, through openings, escalations, closes (quiet, max duration), a broken rule, a resumed
    episode and new hours."""
    rng = np.random.default_rng(21)
    n_devices, n_readings = 12, 300
    level = rng.uniform(0.3, 4.0, n_devices)
    xs = level[:, None] * (1.0 + 0.2 * rng.random((n_devices, n_readings)))
    xs[2, 120:130] = 40.0
    xs[3, 100:104] = 500.0  # breaks the rule
    xs[5, 60:200] = 25.0  # lasts past max duration: relearns
    xs[7, 40:45] = 9.0  # the resumed episode's device
    xs[9, 150:153] = 1000.0  # critical at once
    minute = 60_000  # readings a minute apart: the seasonal hours turn over
    readings = [Reading(device_id=f"d{k}", ts=T0 + t * minute, values={"x": float(xs[k, t])}) for t in range(n_readings) for k in range(n_devices)]
    if shape == "runs":  # a backlog drained by partition: 5 readings of each device in a row, device by device
        readings = [readings[t * n_devices + k] for start in range(0, n_readings, 5) for k in range(n_devices) for t in range(start, start + 5)]
    size = {"lone": n_devices, "repeated": 3 * n_devices, "mixed": n_devices + n_devices // 2, "runs": 5 * n_devices}[shape]
    batch = _batch_run(True, readings, size, n_devices, min_round)
    one_by_one = _batch_run(False, readings, size, n_devices)
    assert batch == one_by_one
    alerts = [a for step in one_by_one[:-2] for a in step[8]]  # type: ignore[index]
    states = {(a["episode"]["state"], a["episode"]["close_reason"]) for a in alerts}
    assert {("open", None), ("closed", "quiet"), ("closed", "max duration")} <= states


@pytest.mark.parametrize("fresh", [False, True])
def test_a_refit_trained_afresh_makes_the_device_lines_learn_anew(fresh: bool) -> None:
    from stream_app.pipeline.detector import record_refit
    from stream_app.pipeline.reservoir import RefitResult

    d = detector(warmup=20)
    rng = np.random.default_rng(2)
    run(d, list(3.0 + 0.2 * rng.random(200)))  # the device's own line settles near 3x the model's
    assert not d.model_lines.learning("d") and d.model_lines.line("d") > 2.5
    record_refit(d, RefitResult(d.bundle, d.scorer, 1.0, 1.0, fresh, 0.1))
    # Fine-tuned: the same units, the line stays. Afresh: the old verdicts' line would be wrong by any factor.
    assert d.model_lines.learning("d") is fresh and (d.model_lines.line("d") == 1.0) is fresh
