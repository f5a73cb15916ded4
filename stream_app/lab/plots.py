"""PNG plots of an evaluation: each device's score over time, and score histograms.

The plotted score is each window's distance to normal, the ratio the episodes run on (model score
over its threshold, or the level check, whichever is larger): the alerting line is at 1.0 for
every model and calibration method. Matplotlib with the Agg backend: no display needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stream_app.lab.evaluate import Trace
from stream_app.lab.quality import runs

# Stuck sensors give an infinite ratio; plots show them at this height.
_CAP = 50.0


def _pyplot() -> Any:  # matplotlib.pyplot, imported late (the Agg backend first)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_trace(trace: Trace, path: Path, *, title: str) -> None:
    """Score over time (log scale), the line at 1.0, labelled spans shaded red, open episodes as a bar."""
    plt = _pyplot()
    minutes = (trace.ts - trace.ts[0]) / 60_000
    ratio = np.clip(trace.ratio, 1e-3, _CAP)  # NaN (no window yet) stays a gap; inf (stuck) goes to the cap
    fig, ax = plt.subplots(figsize=(11, 3.6), dpi=110)
    for first, last in runs(trace.truth):
        ax.axvspan(minutes[first], minutes[last], color="tab:red", alpha=0.18, lw=0, label="_labelled")
    for first, last in runs(trace.is_open):
        ax.axvspan(minutes[first], minutes[last], ymin=0.0, ymax=0.04, color="tab:orange", lw=0)
    ax.plot(minutes, ratio, color="tab:blue", lw=0.8, label="score / threshold")
    ax.axhline(1.0, color="black", ls="--", lw=1, label="alert line (1.0)")
    ax.set_yscale("log")
    ax.set_xlabel("minutes since the first scored reading")
    ax.set_ylabel("score / threshold")
    ax.set_title(title, fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    from matplotlib.patches import Patch

    handles += [Patch(color="tab:red", alpha=0.18), Patch(color="tab:orange")]
    labels += ["labelled anomaly", "episode open"]
    ax.legend(handles, labels, loc="upper left", fontsize=8, ncol=4)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_histogram(traces: list[Trace], path: Path, *, title: str) -> None:
    """Histograms of window scores on normal and on anomalous points, log-spaced, with the line."""
    plt = _pyplot()
    ratio = np.concatenate([t.ratio for t in traces])
    truth = np.concatenate([t.truth for t in traces])
    keep = ~np.isnan(ratio)
    ratio, truth = np.clip(ratio[keep], 1e-3, _CAP), truth[keep]  # clip also brings inf (stuck) to the cap
    bins = np.logspace(np.log10(max(ratio.min(), 1e-3)), np.log10(_CAP), 60)
    fig, ax = plt.subplots(figsize=(8, 4), dpi=110)
    # Each class as shares of its own points: anomalies are often under 1% of the points, and on a
    # count axis their histogram would be invisible beside the normal one.
    for name, part, colour in (("normal", ratio[~truth], "tab:blue"), ("anomalous", ratio[truth], "tab:red")):
        if len(part):
            label = f"{name} points ({len(part):,}; {(part > 1.0).mean():.2%} over the line)"
            ax.hist(part, bins=bins, weights=np.full(len(part), 1 / len(part)), alpha=0.6, color=colour, label=label)
    ax.axvline(1.0, color="black", ls="--", lw=1, label="alert line (1.0)")
    ax.set_xscale("log")
    ax.set_xlabel("score / threshold")
    ax.set_ylabel("share of the class's points")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_plots(traces: list[Trace], out_dir: Path, *, title: str, max_devices: int = 40) -> list[Path]:
    """A histogram, and one time plot per device with a labelled anomaly (then others), up to ``max_devices``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "histogram.png"]
    plot_histogram(traces, written[0], title=f"{title}\nscores on normal vs anomalous points")
    ordered = sorted(traces, key=lambda t: not t.truth.any())
    for trace in ordered[:max_devices]:
        path = out_dir / f"score-{trace.device_id}.png"
        plot_trace(trace, path, title=f"{title}: {trace.device_id}")
        written.append(path)
    return written
