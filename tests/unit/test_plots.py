"""evaluate --plot: the histogram, one fleet page, and a page with sensor traces per notable device."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stream_app.lab.evaluate import Trace
from stream_app.lab.plots import write_plots


def _trace(device: str, *, anomalous: slice | None = None, n: int = 300, failures: tuple[str, ...] = ()) -> Trace:
    rng = np.random.default_rng(0)
    truth = np.zeros(n, bool)
    if anomalous is not None:
        truth[anomalous] = True
    ratio = np.where(truth, 3.0, 0.5) * rng.uniform(0.8, 1.2, n)
    ratio[:9] = np.nan  # the first window is still filling
    ratio[200] = np.inf  # a stuck sensor
    is_open = truth.copy()
    values = rng.normal(0, 1, (n, 2)).astype(np.float32)
    return Trace(device, np.arange(n, dtype=np.int64) * 1000, truth, is_open, ratio > 1.0, ratio,
                 values=values, features=("temperature", "vibration"), failures=failures)  # fmt: skip


def _drawn(path: Path) -> None:
    import matplotlib.image

    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 600
    # Not a blank canvas: the plot drew something besides the white background.
    assert (image[..., :3] < 0.9).mean() > 0.01


def test_a_fleet_page_and_a_page_per_failing_device_with_its_sensors_not_per_healthy_one(tmp_path: Path) -> None:
    import matplotlib.image

    traces = [_trace(f"quiet-{i}") for i in range(6)] + [_trace("failing", anomalous=slice(100, 160), failures=("overheating",))]
    written = write_plots(traces, tmp_path / "plots", title="t")
    assert [p.name for p in written] == ["histogram.png", "fleet.png", "score-failing.png"]
    for path in written:
        _drawn(path)
    # The device page is taller than a score alone: one panel per sensor under it.
    assert matplotlib.image.imread(written[2]).shape[0] > 500


def test_histogram_and_fleet_without_anomalous_points_are_still_written(tmp_path: Path) -> None:
    written = write_plots([_trace("quiet")], tmp_path, title="t", max_devices=0)
    assert [p.name for p in written] == ["histogram.png", "fleet.png"] and all(p.stat().st_size > 0 for p in written)
