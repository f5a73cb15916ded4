"""PNG plots of an evaluation: a fleet page, each notable device's score over its raw sensor traces, and
score histograms.

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
# Sensors drawn under a device's score (SMD has 38: the page would be unreadable).
_MAX_SENSORS = 12


def _pyplot() -> Any:  # matplotlib.pyplot, imported late (the Agg backend first)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _shade(ax: Any, trace: Trace, minutes: np.ndarray, *, episodes: bool = True) -> None:
    for first, last in runs(trace.truth):
        ax.axvspan(minutes[first], minutes[last], color="tab:red", alpha=0.18, lw=0)
    if episodes:
        for first, last in runs(trace.is_open):
            ax.axvspan(minutes[first], minutes[last], ymin=0.0, ymax=0.04, color="tab:orange", lw=0)


def _named(trace: Trace) -> str:
    """The device, and its labelled failures when the source names them."""
    return f"{trace.device_id}: {', '.join(trace.failures)}" if trace.failures else trace.device_id


def plot_trace(trace: Trace, path: Path, *, title: str) -> None:
    """Score over time (log scale), the line at 1.0, labelled spans shaded red, open episodes as a bar;
    under it each sensor's raw readings on the same time axis, the labelled spans shaded alike."""
    plt = _pyplot()
    minutes = (trace.ts - trace.ts[0]) / 60_000
    ratio = np.clip(trace.ratio, 1e-3, _CAP)  # NaN (no window yet) stays a gap; inf (stuck) goes to the cap
    sensors = list(trace.features) if trace.values is not None else []
    shown = sensors[:_MAX_SENSORS]
    fig, axes = plt.subplots(
        1 + len(shown), 1, figsize=(11, 3.6 + 1.1 * len(shown)), dpi=110, sharex=True,
        gridspec_kw={"height_ratios": [3.0] + [1.0] * len(shown)}, squeeze=False,
    )  # fmt: skip
    ax = axes[0, 0]
    _shade(ax, trace, minutes)
    ax.plot(minutes, ratio, color="tab:blue", lw=0.8, label="score / threshold")
    ax.axhline(1.0, color="black", ls="--", lw=1, label="alert line (1.0)")
    ax.set_yscale("log")
    ax.set_ylabel("score / threshold")
    ax.set_title(f"{title}: {_named(trace)}", fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    from matplotlib.patches import Patch

    handles += [Patch(color="tab:red", alpha=0.18), Patch(color="tab:orange")]
    labels += ["labelled anomaly", "episode open"]
    ax.legend(handles, labels, loc="upper left", fontsize=8, ncol=4)
    values = trace.values if trace.values is not None else np.empty((len(minutes), 0))
    for row, name in enumerate(shown, start=1):
        sub = axes[row, 0]
        _shade(sub, trace, minutes, episodes=False)
        sub.plot(minutes, values[:, sensors.index(name)], color="tab:gray", lw=0.6)
        sub.set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
        sub.tick_params(which="both", labelsize=7)
    if len(sensors) > len(shown):
        axes[-1, 0].annotate(f"(+{len(sensors) - len(shown)} more sensors not drawn)", (1.0, -0.45), xycoords="axes fraction",
                             ha="right", fontsize=7)  # fmt: skip
    axes[-1, 0].set_xlabel("minutes since the first scored reading")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_fleet(traces: list[Trace], path: Path, *, title: str, max_devices: int = 60) -> None:
    """One page for the fleet: each device's score as a small multiple (same log scale, the line at 1.0),
    labelled spans shaded, open episodes as a bar; devices with a labelled anomaly or an episode first."""
    plt = _pyplot()
    ordered = sorted(traces, key=lambda t: (not t.truth.any(), not t.is_open.any(), t.device_id))[:max_devices]
    cols = 4 if len(ordered) > 3 else len(ordered)
    rows = -(-len(ordered) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 1.5 * rows + 0.6), dpi=100, sharey=True, squeeze=False)
    for ax, trace in zip(axes.flat, ordered):
        minutes = (trace.ts - trace.ts[0]) / 60_000
        _shade(ax, trace, minutes)
        ax.plot(minutes, np.clip(trace.ratio, 1e-3, _CAP), color="tab:blue", lw=0.5)
        ax.axhline(1.0, color="black", ls="--", lw=0.6)
        ax.set_yscale("log")
        episodes = len(runs(trace.is_open))
        ax.set_title(f"{_named(trace)} ({episodes} episode{'s' if episodes != 1 else ''})", fontsize=7)
        ax.tick_params(which="both", labelsize=6)
    for ax in list(axes.flat)[len(ordered) :]:
        ax.axis("off")
    more = f"; {len(traces) - len(ordered)} more devices not drawn" if len(traces) > len(ordered) else ""
    fig.suptitle(f"{title}: score / threshold per device, labelled anomalies shaded red, episodes orange{more}", fontsize=9)
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
    """The histogram, one fleet page (every device's score, small), and a page with the sensor traces for
    each device that had a labelled anomaly or an episode, up to ``max_devices``: a healthy device that never
    alerted is on the fleet page only."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "histogram.png", out_dir / "fleet.png"]
    plot_histogram(traces, written[0], title=f"{title}\nscores on normal vs anomalous points")
    plot_fleet(traces, written[1], title=title)
    notable = sorted((t for t in traces if t.truth.any() or t.is_open.any()), key=lambda t: (not t.truth.any(), t.device_id))
    for trace in notable[:max_devices]:
        path = out_dir / f"score-{trace.device_id}.png"
        plot_trace(trace, path, title=title)
        written.append(path)
    return written
