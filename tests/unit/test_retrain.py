"""Retraining from the stream leaves out alert episodes and confirmed faults, widened by a window."""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.ops.retrain import RecentReadings, normal_series, parse_since

T0 = 1_767_225_600_000


def _recent(n: int = 200) -> RecentReadings:
    ts = T0 + np.arange(n, dtype=np.int64) * 1000
    values = np.arange(n, dtype=np.float32).reshape(n, 1)
    return RecentReadings(["x"], {"d1": ts, "d2": ts.copy()}, {"d1": values, "d2": values.copy()})


def test_confirmed_fault_span_is_left_out_with_a_window_either_side() -> None:
    spans = {"d1": [(T0 + 100_000, T0 + 120_000, "confirmed fault")]}
    out = normal_series(_recent(), spans, window=8, max_gap_ms=60_000)
    d1 = [s for s in out.series if len(s) != 200]
    kept = np.concatenate(d1)[:, 0]
    # Readings 92..128 (the span and a window of 8 readings either side) are not learned as normal.
    assert not np.any((kept >= 92) & (kept <= 128))
    assert kept.min() == 0 and kept.max() == 199
    assert out.readings_left_out == 37 and out.kept_by_device == {"d1": 163, "d2": 200}


def test_an_open_episode_runs_to_the_end_and_short_runs_are_dropped() -> None:
    spans = {"d1": [(T0 + 20_000, np.iinfo(np.int64).max, "alert episode")]}
    out = normal_series(_recent(), spans, window=8, max_gap_ms=60_000)
    assert out.kept_by_device == {"d2": 200}, "d1 keeps only 12 readings before the episode: under two windows"


def test_a_gap_splits_a_run() -> None:
    recent = _recent()
    recent.ts["d1"] = np.concatenate([recent.ts["d1"][:100], recent.ts["d1"][100:] + 120_000])
    out = normal_series(recent, {}, window=8, max_gap_ms=60_000)
    assert sorted(len(s) for s in out.series) == [100, 100, 200]


@pytest.mark.parametrize(("text", "ms"), [("24h", 86_400_000), ("90m", 5_400_000), ("2d", 172_800_000), ("30s", 30_000)])
def test_parse_since(text: str, ms: int) -> None:
    assert parse_since(text) == ms


def test_parse_since_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="expected a number and a unit"):
        parse_since("yesterday")
