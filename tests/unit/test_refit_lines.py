"""A kept refit's lines: never tighter than the first calibration, and a widening fades with stream time."""

from __future__ import annotations

import pytest

from stream_app.models.store import Thresholds
from stream_app.training.refit import FirstLines, bounded_lines

DAY_MS = 86_400_000


def lines(threshold: float, envelope: tuple[float, float], peak: float | None = 2.0) -> Thresholds:
    return Thresholds(
        quantile=0.99, multiplier=1.25, threshold=threshold, feature_reference=[1.0],
        feature_thresholds={"x": threshold}, feature_envelope={"x": envelope}, peak_threshold=peak,
    )  # fmt: skip


FIRST = FirstLines(threshold=2.0, feature_thresholds={"x": 2.0}, feature_envelope={"x": (0.0, 10.0)}, peak_threshold=2.0)


def test_a_refit_never_tightens_below_the_first_calibration() -> None:
    out = bounded_lines(lines(1.5, (2.0, 8.0), peak=1.0), lines(2.0, (0.0, 10.0)), FIRST, keep=1.0)
    assert out["threshold"] == 2.0 and out["feature_thresholds"] == {"x": 2.0} and out["peak_threshold"] == 2.0
    assert out["feature_envelope"] == {"x": (0.0, 10.0)}


def test_a_refit_may_widen_past_the_first_calibration() -> None:
    out = bounded_lines(lines(3.0, (-1.0, 12.0)), lines(2.0, (0.0, 10.0)), FIRST, keep=1.0)
    assert out["threshold"] == 3.0 and out["feature_envelope"] == {"x": (-1.0, 12.0)}


def test_an_earlier_widening_is_remembered_in_part_and_fades() -> None:
    serving = lines(4.0, (-10.0, 30.0))  # an earlier refit widened both
    calm = lines(1.0, (1.0, 9.0))  # the stream is back inside the first calibration
    held = bounded_lines(calm, serving, FIRST, keep=1.0)
    assert held["threshold"] == 4.0 and held["feature_envelope"] == {"x": (-10.0, 30.0)}
    half = bounded_lines(calm, serving, FIRST, keep=0.5)
    assert half["threshold"] == pytest.approx(3.0) and half["feature_envelope"] == {"x": (-5.0, 20.0)}
    gone = bounded_lines(calm, serving, FIRST, keep=0.0)
    assert gone["threshold"] == 2.0 and gone["feature_envelope"] == {"x": (0.0, 10.0)}


def test_a_model_without_an_envelope_gets_none_from_a_refit() -> None:
    first = FIRST.model_copy(update={"feature_envelope": {}})
    out = bounded_lines(lines(2.0, (0.0, 10.0)), lines(2.0, (0.0, 10.0)), first, keep=1.0)
    assert out["feature_envelope"] == {}


def test_the_share_remembered_halves_every_half_life() -> None:
    from stream_app.training.refit import remembered
    from tests.support.builders import bundle

    b = bundle(["x"], window=2)
    assert remembered(b, 5 * DAY_MS, 7 * 86400.0) == 1.0  # not a refit: nothing widened yet
    refitted = b.model_copy(update={"card": b.card.model_copy(update={"notes": {"refit_at_ms": 0}})})
    assert remembered(refitted, 7 * DAY_MS, 7 * 86400.0) == pytest.approx(0.5)
    assert remembered(refitted, 14 * DAY_MS, 7 * 86400.0) == pytest.approx(0.25)
    assert remembered(refitted, 14 * DAY_MS, 0.0) == 0.0
