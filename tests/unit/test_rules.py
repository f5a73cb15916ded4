"""Operator rules beside the model: parsing, evaluation, settings, and alerts from the detector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from stream_app.contracts import Reading, iso_ms
from stream_app.pipeline.lines import LineConfig
from stream_app.pipeline.detector import Detection, Detector, DetectorConfig
from stream_app.pipeline.episodes import EpisodeRule
from stream_app.models.store import ModelBundle, ModelCard, Scaler, Thresholds, TrainingSummary, ValidationMetrics
from stream_app.pipeline.rules import Rule, parse_rules
from stream_app.pipeline.scorer import Scores
from stream_app.config.settings import Settings

T0 = 1_700_000_000_000


# --- parsing ---------------------------------------------------------------------------------


def test_parses_comma_and_semicolon_separated_rules() -> None:
    assert parse_rules("temperature<0.09, vibration <= 0.1; motor_rpm>0.03") == [
        Rule("temperature", "<", 0.09),
        Rule("vibration", "<=", 0.1),
        Rule("motor_rpm", ">", 0.03),
    ]


def test_whitespace_and_empty_parts_are_tolerated() -> None:
    assert parse_rules("  temperature   <   0.09 ,, ;\t motor_amps>=-1e-3 ; ") == [
        Rule("temperature", "<", 0.09),
        Rule("motor_amps", ">=", -0.001),
    ]
    assert parse_rules("") == parse_rules(" , ; ") == []


@pytest.mark.parametrize("op", ["<", "<=", ">", ">="])
def test_each_operator(op: str) -> None:
    assert parse_rules(f"x{op}2") == [Rule("x", op, 2.0)]  # type: ignore[arg-type]
    assert parse_rules(f"x {op} 2") == [Rule("x", op, 2.0)]  # type: ignore[arg-type]


def test_a_feature_name_may_hold_spaces() -> None:
    assert parse_rules("Volume Flow RateRMS >= 30") == [Rule("Volume Flow RateRMS", ">=", 30.0)]


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("temperature", "temperature"),
        ("temperature<0.09, vibration", "vibration"),
        ("temperature = 1", "temperature = 1"),
        ("temperature == 1", "temperature == 1"),
        ("temperature != 1", "temperature != 1"),
        ("temperature <> 1", "temperature <> 1"),
        ("temperature << 1", "temperature << 1"),
        ("< 1", "< 1"),
        ("temperature <", "temperature <"),
        ("temperature < hot", "temperature < hot"),
        ("temperature < 0.09 0.1", "temperature < 0.09 0.1"),
        ("temperature < nan", "temperature < nan"),
        ("temperature < inf", "temperature < inf"),
    ],
)
def test_bad_syntax_names_the_bad_part(text: str, bad: str) -> None:
    with pytest.raises(ValueError, match=f"bad rule {bad!r}"):
        parse_rules(text)


def test_name_is_the_check_in_check_failures() -> None:
    assert [r.name for r in parse_rules("temperature<0.09, motor_rpm >= 100, vibration<=1e-05")] == [
        "rule:temperature<0.09",
        "rule:motor_rpm>=100",
        "rule:vibration<=1e-05",
    ]


# --- evaluation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "broken"),
    [
        ("<", [False, True, True]),
        ("<=", [False, False, True]),
        (">", [True, True, False]),
        (">=", [True, False, False]),
    ],
)
def test_broken_is_elementwise_with_the_limit_on_the_right_side(op: str, broken: list[bool]) -> None:
    rule = Rule("x", op, 1.0)  # type: ignore[arg-type]
    values = np.array([[0.5, 1.0, 1.5]], np.float32)
    assert rule.broken(values).tolist() == [broken]


# --- settings --------------------------------------------------------------------------------


def test_settings_read_and_parse_floorwatch_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOORWATCH_RULES", "temperature<0.09; vibration<=0.1")
    assert Settings().rule_list() == (Rule("temperature", "<", 0.09), Rule("vibration", "<=", 0.1))
    monkeypatch.delenv("FLOORWATCH_RULES")
    assert Settings().rule_list() == ()


def test_a_bad_rule_is_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOORWATCH_RULES", "temperature<0.09, vibration=0.1")
    with pytest.raises(ValidationError, match=r"rules\n.*bad rule 'vibration=0.1'"):
        Settings()


# --- the detector ----------------------------------------------------------------------------


class PerFeatureMaxScorer:
    """A stand-in model: each feature's error is its largest value in the window; the score, the largest."""

    max_batch = 8

    def score(self, windows: np.ndarray) -> Scores:
        errors = windows.max(axis=1).astype(np.float32)
        return Scores(feature_errors=errors, score=errors.max(axis=1))


def _detector(
    rules: str = "", *, stride: int = 1, window: int = 3, open_after: int = 3, **thresholds_extra: object
) -> Detector:
    features = ["x", "y"]
    card = ModelCard(
        features=features, window=window, units=0,
        training=TrainingSummary(source="t", series=1, readings=1, train_windows=1, validation_windows=1,
                                 feature_mean={}, feature_std={}, epochs=0),
        validation=ValidationMetrics(train_loss=0, validation_loss=0, validation_score_p50=0, validation_score_p99=0,
                                     validation_score_max=0, validation_windows_over_threshold=0),
    )  # fmt: skip
    # No envelope and no stuck features: only the model (line at 1.0) and the rules can alert.
    thresholds = Thresholds.model_validate(
        dict(quantile=0.99, multiplier=1.0, threshold=1.0, feature_reference=[1.0, 1.0], stuck_features=[])
        | thresholds_extra
    )
    scaler = Scaler(mean=[0.0, 0.0], scale=[1.0, 1.0])
    bundle = ModelBundle(path=Path("."), card=card, scaler=scaler, thresholds=thresholds)
    episodes = EpisodeRule(open_after=open_after, close_after=3, close_ratio=0.8)
    config = DetectorConfig(
        stride=stride, rule=episodes, rules=tuple(parse_rules(rules)), lines=LineConfig(enabled=False), min_check_windows=0
    )
    return Detector(bundle, PerFeatureMaxScorer(), config)  # type: ignore[arg-type]


def _readings(x: list[float], y: float = 0.5) -> list[Reading]:
    # Small varying noise on y so nothing is flat; every value stays well under the model's line.
    return [
        Reading(device_id="d", ts=T0 + i * 1000, values={"x": v, "y": y + 0.01 * (i % 3)}) for i, v in enumerate(x)
    ]


def _feed(detector: Detector, readings: list[Reading]) -> Detection:
    return detector.process(readings, now_ms=T0 + 10**8)


def test_a_sensor_repeating_one_value_for_its_last_readings_is_stuck() -> None:
    # x repeats 0.3 for readings 5-9; y is flat throughout but is not a stuck-checked feature.
    x = [0.1, 0.2, 0.1, 0.2, 0.1] + [0.3] * 5 + [0.1, 0.2, 0.1, 0.2]
    readings = [Reading(device_id="d", ts=T0 + i * 1000, values={"x": v, "y": 0.5}) for i, v in enumerate(x)]

    out = _feed(_detector(open_after=1, window=4, stuck_features=["x"], stuck_run=3), readings)

    # Windows end at readings 3..13; those ending at 7, 8, 9 have x's last three readings all 0.3.
    assert np.isinf(out.window_ratio).tolist() == [i in (7, 8, 9) for i in range(3, 14)]
    assert out.alerts[0].check_failures == ["stuck:x"]


def test_a_window_whose_mean_leaves_the_envelope_is_out_of_range() -> None:
    # x's normal envelope is [0, 0.4]; the model (line 1.0) sees nothing wrong with 0.7.
    x = [0.2] * 5 + [0.7] * 4 + [0.2] * 5
    out = _feed(_detector(open_after=2, feature_envelope={"x": (0.0, 0.4)}), _readings(x))

    values = np.array([[r.values["x"], r.values["y"]] for r in _readings(x)])
    windows = np.lib.stride_tricks.sliding_window_view(values, 3, axis=0)  # (n, 2, 3)
    model = windows.max(axis=(1, 2))  # the stand-in model's score, over a line of 1.0
    level = np.abs(windows[:, 0].mean(axis=1) - 0.2) / 0.2  # distance from the envelope's centre / half-width
    np.testing.assert_allclose(out.window_ratio, np.maximum(model, level), rtol=1e-5)
    assert (level > 1).any() and (level < 1).any()
    assert out.alerts[0].episode.state == "open" and out.alerts[0].check_failures == ["level:x"]


def test_a_rule_on_a_feature_the_model_does_not_use_fails_at_construction() -> None:
    with pytest.raises(ValueError, match=r"rule:pressure<3: no such feature in model .*\(features: x, y\)"):
        _detector("x<1, pressure<3")


def test_a_broken_rule_opens_an_episode_the_model_alone_would_not() -> None:
    x = [0.2] * 10 + [0.7] * 5 + [0.2] * 10  # 0.7: under the model's line, over the operator's
    readings = _readings(x)

    alone = _feed(_detector(), readings)
    assert alone.alerts == [] and (alone.window_ratio <= 1.0).all()

    out = _feed(_detector("x <= 0.6, y > 0"), readings)

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
    out = _feed(_detector("x > 0.1", open_after=1), _readings([0.2, 0.2, 0.05]))
    (opened,) = out.alerts
    assert opened.feature_errors["y"] > opened.feature_errors["x"]
    assert opened.top_feature == "x" and opened.check_failures == ["rule:x>0.1"]


@pytest.mark.parametrize("stride", [1, 2, 3, 5])
@pytest.mark.parametrize("at", range(3, 15))
def test_each_reading_is_checked_in_exactly_one_window(stride: int, at: int) -> None:
    x = [0.2] * 15
    x[at] = 0.9
    out = _feed(_detector("x<0.8", stride=stride), _readings(x))
    # With stride 5 > window 3, readings between windows belong to no window and cannot be checked.
    in_a_window = (2 - at) % stride < 3  # scored windows end at readings 2, 2 + stride, ...
    assert np.isinf(out.window_ratio).sum() == int(in_a_window)


@pytest.mark.parametrize("at", [0, 1, 2])
def test_the_first_window_checks_all_its_readings(at: int) -> None:
    x = [0.2] * 7
    x[at] = 0.9
    out = _feed(_detector("x<0.8", stride=2), _readings(x))  # windows end at readings 2, 4, 6
    assert np.isinf(out.window_ratio).tolist() == [True, False, False]


def test_a_stuck_run_longer_than_the_window_is_counted_across_windows() -> None:
    # x's stuck run (6) is longer than the window (4): a quantised sensor that often repeats itself.
    x = [0.1, 0.2, 0.1, 0.2] + [0.3] * 8 + [0.1, 0.2]
    out = _feed(_detector(open_after=1, window=4, stuck_runs={"x": 6}), _readings(x))

    # Windows end at readings 3..13; x has repeated 0.3 six times by reading 9, and until reading 11.
    assert np.isinf(out.window_ratio).tolist() == [i in (9, 10, 11) for i in range(3, 14)]
    assert out.alerts[0].check_failures == ["stuck:x"]


def test_a_value_a_sensor_rested_at_and_left_is_not_stuck_the_next_time() -> None:
    moving = [0.1, 0.2] * 6
    x = [0.1, 0.2, 0.1, 0.2] + [0.0] * 5 + moving + [0.0] * 5 + moving + [0.7] * 5 + [0.1]
    out = _feed(_detector(open_after=1, window=4, stuck_runs={"x": 3}), _readings(x))

    opened = [a for a in out.alerts if a.episode.state == "open"]
    closed = [a for a in out.alerts if a.episode.state == "closed"]
    # The first rest at 0.0 alerts; it ends by itself, so the second at 0.0 does not; a stop at 0.7 does.
    assert [a.window_end for a in opened] == [out.alerts[0].window_end, opened[-1].window_end] and len(opened) == 2
    assert closed[0].episode.close_reason == "quiet"
    assert all(a.check_failures == ["stuck:x"] for a in opened)
    assert opened[-1].window_end == iso_ms(T0 + (len(x) - 4) * 1000)


def test_a_rest_is_learnt_when_the_model_opened_the_episode_before_the_sensor_sat_still() -> None:
    # x steps up to 2.0 (over the model's line at once) and sits there: the model opens the episode, the stuck
    # check joins it; x moves on, the episode closes; the second time 2.0 is over the line but not stuck.
    moving = [0.1, 0.2] * 6
    x = [0.1, 0.2, 0.1, 0.2] + [2.0] * 6 + moving + [2.0] * 6 + moving
    out = _feed(_detector(open_after=1, window=4, stuck_runs={"x": 3}), _readings(x))

    stuck = np.isinf(out.window_ratio)
    first, second = slice(4 - 3, 10 - 3), slice(22 - 3, 28 - 3)  # windows ending at readings 4-9 and 22-27
    assert stuck[first].tolist() == [False, False, True, True, True, True]
    assert not stuck[second].any() and (out.window_ratio[second] > 1.0).all()
