"""evaluate --plot: the PNGs are written, one per device (labelled ones first), and open as images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stream_app.lab.evaluate import Trace
from stream_app.lab.plots import write_plots


def _trace(device: str, *, anomalous: slice | None = None, n: int = 300) -> Trace:
    rng = np.random.default_rng(0)
    truth = np.zeros(n, bool)
    if anomalous is not None:
        truth[anomalous] = True
    ratio = np.where(truth, 3.0, 0.5) * rng.uniform(0.8, 1.2, n)
    ratio[:9] = np.nan  # the first window is still filling
    ratio[200] = np.inf  # a stuck sensor
    is_open = truth.copy()
    return Trace(device, np.arange(n, dtype=np.int64) * 1000, truth, is_open, ratio > 1.0, ratio)


def test_plots_are_written_labelled_devices_first_and_are_images(tmp_path: Path) -> None:
    import matplotlib.image

    traces = [_trace("quiet"), _trace("failing", anomalous=slice(100, 160))]
    written = write_plots(traces, tmp_path / "plots", title="t")
    assert [p.name for p in written] == ["histogram.png", "score-failing.png", "score-quiet.png"]
    for path in written:
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 600
        # Not a blank canvas: the plot drew something besides the white background.
        assert (image[..., :3] < 0.9).mean() > 0.01


def test_histogram_without_anomalous_points_is_still_written(tmp_path: Path) -> None:
    written = write_plots([_trace("quiet")], tmp_path, title="t", max_devices=0)
    assert [p.name for p in written] == ["histogram.png"] and written[0].stat().st_size > 0
