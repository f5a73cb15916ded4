"""A device's adaptation state (lines, seasonal hours) exported and taken up by another detector: a restarted
worker goes on where the last one was instead of warming up again."""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.contracts import Reading
from stream_app.pipeline import adaptation
from stream_app.pipeline.detector import Detector, DetectorConfig, record_refit
from stream_app.pipeline.episodes import EpisodeRule
from stream_app.pipeline.lines import AdaptiveLines, LineConfig
from stream_app.pipeline.seasonal import HOUR_MS, SeasonalLines
from tests.support.builders import T0, MaxScorer, bundle
from tests.support.builders import detector as build_detector

CONFIG = LineConfig(history=64, block=4, warmup=32, max_step=0.05)


def test_lines_taken_up_go_on_to_the_bit_as_the_original_would() -> None:
    rng = np.random.default_rng(2)
    original = AdaptiveLines(CONFIG)
    for v in rng.lognormal(0.3, 0.5, 1001):  # past a full history (the ring has wrapped), mid-block
        original.observe("d", float(v))
    state = original.export("d")
    assert state is not None and original.export("other") is None
    taken = AdaptiveLines(CONFIG)
    assert taken.restore("d", state)
    assert taken.line("d") == original.line("d") > 1.0 and not taken.learning("d")
    for v in rng.lognormal(0.5, 0.6, 300):
        original.observe("d", float(v))
        taken.observe("d", float(v))
        assert taken.line("d") == original.line("d")


def test_lines_keep_the_newest_blocks_when_the_history_is_shorter() -> None:
    original = AdaptiveLines(CONFIG)
    for v in np.linspace(0.1, 5.0, 256):  # 64 blocks, rising: the newest are the largest
        original.observe("d", float(v))
    state = original.export("d")
    assert state is not None
    short = AdaptiveLines(LineConfig(history=8, block=4, warmup=32))
    assert short.restore("d", state)
    newest = np.sort(original._history[0, -8:])  # the ring is full and unwrapped: its last 8 are the newest
    assert short._filled[0] == 8 and short._sorted[0, :8].tolist() == newest.tolist()


def test_a_known_device_keeps_its_own_lines_and_junk_is_refused() -> None:
    lines = AdaptiveLines(CONFIG)
    lines.observe("d", 3.0)
    other = AdaptiveLines(CONFIG)
    for _ in range(100):
        other.observe("d", 9.0)
    state = other.export("d")
    assert state is not None
    assert not lines.restore("d", state)  # its own state is newer
    with pytest.raises(ValueError):
        lines.restore("e", b"not a state")
    with pytest.raises(ValueError):
        lines.restore("e", state[:-2])
    assert lines.learning("e") and len(lines) == 1  # nothing taken up


def test_seasonal_hours_taken_up_give_the_same_allowances() -> None:
    rng = np.random.default_rng(4)
    original = SeasonalLines()
    end = 0
    for end in range(0, 5 * 24 * HOUR_MS, HOUR_MS // 6):  # five days, a window every 10 minutes
        night = (end // HOUR_MS) % 24 < 6
        original.observe("d", end, (3.0 if night else 0.5 + 0.1 * rng.random(), 0.2))
    state = original.export("d")
    assert state is not None
    taken = SeasonalLines()
    assert taken.restore("d", state)
    assert taken.allowance("d") == original.allowance("d")
    for end in range(end + HOUR_MS // 6, end + 2 * 24 * HOUR_MS, HOUR_MS // 6):
        night = (end // HOUR_MS) % 24 < 6
        values = (3.0 if night else 0.6, 0.2)
        assert taken.observe("d", end, values) == original.observe("d", end, values)
    assert max(original.allowance("d")) >= 0 and any(
        original.observe("d", t, (0.5, 0.2))[0] > 3.0 for t in range(end, end + 24 * HOUR_MS, HOUR_MS)
    )  # the nights are learnt: their hours are allowed their level
    assert not SeasonalLines(channels=1).restore("d", state)  # kept with other channels: not taken


def _detector(version: str = "v0001") -> Detector:
    config = DetectorConfig(
        rule=EpisodeRule(open_after=3, close_after=5, close_ratio=0.8), lines=LineConfig(history=32, block=2, warmup=64)
    )
    model = bundle(["x"], window=2, card_fields={"version": version})
    return build_detector(model, config, scorer=MaxScorer(max_batch=16))


def _feed(d: Detector, xs: list[float], start: int) -> list[str]:
    readings = [Reading(device_id="d", ts=T0 + (start + i) * 1000, values={"x": float(x)}) for i, x in enumerate(xs)]
    states = []
    for k in range(0, len(readings), 16):
        states += [a.episode.state for a in d.process(readings[k : k + 16], now_ms=T0 + 10**9).alerts]
    return states


def test_a_restarted_detector_that_takes_up_the_state_finds_a_fault_at_once() -> None:
    """Without the state a device whose normal sits over the model's line warms up again for 64 windows,
    and a fault in them is not reported; with it the fault opens an episode after 3 windows."""
    rng = np.random.default_rng(7)
    first = _detector()
    normal = list(2.0 + 0.2 * rng.random(400))  # its own normal, twice the model's line: learnt in warm-up
    assert _feed(first, normal, 0) == []
    state = first.export_state("d")
    assert state is not None and first.known_devices() == ["d"]
    fault = [2.1] * 4 + [9.0] * 30
    fresh, restarted = _detector(), _detector()
    assert restarted.restore_state("d", state)
    assert restarted.model_lines.line("d") == first.model_lines.line("d") > 2.0
    assert _feed(fresh, fault, 500) == []  # warming up: blind to it
    assert _feed(restarted, fault, 500)[:1] == ["open"]


def test_a_state_of_another_basis_or_of_a_known_device_is_not_taken() -> None:
    first = _detector("v0001")
    _feed(first, [2.0] * 100, 0)
    state = first.export_state("d")
    assert state is not None
    assert adaptation.unpack(state)[0] == "v0001"
    assert not _detector("v0002").restore_state("d", state)  # other units: the device warms up as new
    known = _detector("v0001")
    _feed(known, [0.5] * 10, 0)
    assert not known.restore_state("d", state)
    junk = _detector("v0001")
    with pytest.raises(ValueError):
        junk.restore_state("d", adaptation.pack("v0001", {"model": state[:10], "level": b"x"}))
    assert junk.model_lines.learning("d") and len(junk.model_lines) == 0  # all or nothing


def test_a_fine_tuned_refit_keeps_the_basis_and_a_fresh_one_starts_its_own() -> None:
    from stream_app.pipeline.reservoir import RefitResult

    d = _detector("v0001")
    _feed(d, [2.0] * 100, 0)

    def result(version: str, fresh: bool) -> RefitResult:
        model = bundle(["x"], window=2, card_fields={"version": version})
        return RefitResult(
            bundle=model, scorer=MaxScorer(max_batch=16), serving_median=1.0, candidate_median=1.0,  # type: ignore[arg-type]
            fresh_scaler=fresh, seconds=0.0,
        )  # fmt: skip

    record_refit(d, result("v0002", fresh=False))
    assert d.line_basis == "v0001"
    record_refit(d, result("v0003", fresh=True))
    assert d.line_basis == "v0003"


def test_unpack_refuses_what_pack_did_not_make() -> None:
    state = adaptation.pack("v1", {"a": b"123", "b": b""})
    assert adaptation.unpack(state) == ("v1", {"a": b"123", "b": b""})
    for junk in (b"", b"FWA1", b"XXXX\x00\x00", state[:-1]):
        with pytest.raises(ValueError):
            adaptation.unpack(junk)
