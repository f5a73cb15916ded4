"""AdaptiveLines: each device's line follows its own normal, slowly, and never below calibration."""

from __future__ import annotations

import numpy as np

from stream_app.pipeline.lines import AdaptiveLines, LineConfig

CONFIG = LineConfig(history=64, block=4, quantile=0.99, margin=1.25, warmup=32, max_step=0.05, median_cap=3.0)


def feed(lines: AdaptiveLines, device: str, values: np.ndarray) -> list[float]:
    out = []
    for v in values:
        lines.observe(device, float(v))
        out.append(lines.line(device))
    return out


def test_a_device_that_fits_the_model_keeps_the_calibrated_line() -> None:
    lines = AdaptiveLines(CONFIG)
    rng = np.random.default_rng(0)
    feed(lines, "d", rng.uniform(0.1, 0.6, 500))
    assert lines.line("d") == 1.0
    assert not lines.learning("d")


def test_a_device_whose_normal_the_model_never_saw_gets_its_own_line_during_warmup() -> None:
    lines = AdaptiveLines(CONFIG)
    assert lines.learning("d")
    feed(lines, "d", np.full(32, 4.0))
    assert not lines.learning("d")
    assert lines.line("d") == 4.0 * 1.25  # free to settle while it learns
    assert lines.line("other") == 1.0  # devices are independent


def test_after_warmup_a_line_rises_at_most_max_step_per_block() -> None:
    lines = AdaptiveLines(CONFIG)
    feed(lines, "d", np.full(256, 0.5))  # a full history of normal
    assert lines.line("d") == 1.0
    trail = feed(lines, "d", np.linspace(0.5, 10.0, 80))  # a creeping fault, 20 blocks
    steps = np.diff([1.0, *trail])
    assert np.all(steps <= np.array([1.0, *trail[:-1]]) * 0.05 + 1e-6)
    assert trail[-1] < 1.05**20 + 1e-6  # the fault grew 20x; the line at most 2.65x
    assert trail[-1] <= 0.5 * 3.0 + 1e-6  # and no more than 3x the history's median, still mostly normal


def test_a_noisier_device_gets_a_line_above_calibration_after_warmup() -> None:
    lines = AdaptiveLines(CONFIG)
    rng = np.random.default_rng(3)
    feed(lines, "d", rng.uniform(0.2, 0.6, 32))
    feed(lines, "d", rng.uniform(0.5, 1.6, 600))  # its normal is noisier than the validation windows were
    assert 1.5 < lines.line("d") <= 1.6 * 1.25 + 1e-6


def test_relearn_forgets_the_history() -> None:
    lines = AdaptiveLines(CONFIG)
    feed(lines, "d", np.full(200, 3.0))
    assert lines.line("d") > 1.0
    lines.relearn("d")
    assert lines.learning("d") and lines.line("d") == 1.0


def test_disabled_lines_stay_at_calibration_and_never_learn() -> None:
    lines = AdaptiveLines(LineConfig(enabled=False))
    feed(lines, "d", np.full(100, 5.0))
    assert lines.line("d") == 1.0 and not lines.learning("d")


def test_a_forgotten_device_frees_its_slot_for_the_next_one() -> None:
    lines = AdaptiveLines(CONFIG)
    feed(lines, "old", np.full(100, 3.0))
    lines.forget("old")
    feed(lines, "new", np.full(8, 0.5))
    assert len(lines._history) == 64  # no growth: the slot was reused
    assert lines.line("new") == 1.0 and lines.learning("new")
    assert lines.line("old") == 1.0 and lines.learning("old")  # unknown again


def test_a_device_the_model_fits_is_trusted_after_a_few_blocks() -> None:
    lines = AdaptiveLines(CONFIG)
    feed(lines, "d", np.full(4 * 4, 0.4))  # four blocks under the calibrated line
    assert not lines.learning("d")
    feed(lines, "misfit", np.full(4 * 4, 3.0))
    assert lines.learning("misfit")  # it learns for the whole warm-up


def test_the_sorted_history_gives_numpys_quantiles() -> None:
    from stream_app.pipeline.lines import _quantile

    rng = np.random.default_rng(0)
    lines = AdaptiveLines(LineConfig(history=16, block=2))
    for _ in range(300):  # past the history's length: the oldest blocks leave as new ones come
        lines.observe("a", float(rng.random() * 3))
        lines.observe("b", float(rng.standard_normal()))
        for slot in (0, 1):
            n = lines._filled[slot]
            assert (np.sort(lines._history[slot, :n]) == lines._sorted[slot, :n]).all()
            for q in (0.5, 0.99):
                assert n == 0 or abs(_quantile(lines._sorted[slot], n, q) - float(np.quantile(lines._history[slot, :n], q))) < 1e-6


def test_a_batch_gives_the_same_lines_to_the_bit_as_window_by_window() -> None:
    """``observe_each`` (the detector's lone devices) against ``observe``, through full histories and relearns."""
    config = LineConfig(history=16, block=3, quantile=0.9, margin=1.25, warmup=20, max_step=0.05, median_cap=3.0)
    one, batch = AdaptiveLines(config), AdaptiveLines(config)
    rng = np.random.default_rng(5)
    devices = [f"d{k}" for k in range(150)]  # more than the arrays' first 64 slots
    for step in range(200):
        chosen = [d for d in devices if rng.random() < 0.6]
        values = rng.lognormal(0.0, 0.6, len(chosen)).astype(np.float32)
        slots = batch.slots(chosen)
        assert batch.lines_at(slots).tolist() == [one.line(d) for d in chosen]
        assert batch.learning_at(slots).tolist() == [one.learning(d) for d in chosen]
        for d, v in zip(chosen, values):
            one.observe(d, float(v))
        batch.observe_each(chosen, values)
        if step % 50 == 49:
            for lines in (one, batch):
                lines.relearn("d3")
                lines.forget("d7")
    assert [one.line(d) for d in devices] == [batch.line(d) for d in devices]
    assert len({one.line(d) for d in devices}) > 10  # the lines did move


def test_a_batch_observes_nothing_when_lines_are_off() -> None:
    lines = AdaptiveLines(LineConfig(enabled=False))
    lines.observe_each(["a", "b"], np.array([5.0, 6.0]))
    assert len(lines) == 0 and lines.lines_at(lines.slots(["a"])).tolist() == [1.0]
    assert lines.learning_at(lines.slots(["a"])).tolist() == [False]
