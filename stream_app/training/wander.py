"""Which features' levels wander: a random walk's, not a process's that returns to where it runs.

A process a plant runs returns to its operating level: how far a reading moves in ``lag`` steps is about
what it moves in a few. A level that wanders (a counter's rate, a price, a slowly integrating quantity)
keeps going: its moves over ``lag`` steps grow with the lag, about ``sqrt(lag)`` times a one-step move for
a random walk. The ratio read here, ``var(x[t+lag] - x[t]) / (lag * var(x[t+1] - x[t]))``, is about 1 for
a random walk at any lag, and for a process that returns about ``2 var(x) / (lag var(dx))``: ~0.03 for white
noise at lag 32, ~0.3 for a strongly autocorrelated AR(0.9). The moves' mean is taken out first, so a steady
trend under noise does not read as wandering. A cycle whose period is about twice the lag (a duty cycle of
~60 readings) reads high too: centring such a sensor keeps what a window can show of it, its edges. The
training's series decide, pooled.
"""

from __future__ import annotations

import numpy as np

WANDER_LAG = 32
# Half a random walk's ratio at lag 32: an AR(0.95) reads 0.5 (a move halves in ~14 steps), slower ones more.
WANDER_RATIO = 0.5
# What `train` and `evaluate` say of a centred sensor.
CENTRED_NOTE = "its level wanders like a random walk; the model reads its windows for their shape"


def centred_features(series: list[np.ndarray]) -> list[bool]:
    """Per feature of a model's (time, F) training series: whether its windows are centred. Only a lone
    sensor's, if it wanders: in a model of several, where a sensor sits relative to the others is what the
    model learns (SKAB: faults that show as a thermocouple's level, though it drifts through every run;
    centring it there lost 3 of 26 faults found), and the level check watches levels."""
    width = series[0].shape[-1] if series else 0
    return wandering(series) if width == 1 else [False] * width


def wandering(series: list[np.ndarray], *, lag: int = WANDER_LAG, ratio: float = WANDER_RATIO) -> list[bool]:
    """Per feature of (time, F) series: whether its level wanders (see the module's docstring).

    Series shorter than ``2 * lag`` say nothing; a feature with no one-step moves at all (a constant)
    does not wander."""
    width = series[0].shape[-1] if series else 0
    far = np.zeros(width)
    near = np.zeros(width)
    for s in series:
        x = np.asarray(s, np.float64).reshape(len(s), -1)
        if len(x) < 2 * lag:
            continue
        far += np.var(x[lag:] - x[:-lag], axis=0)
        near += np.var(x[1:] - x[:-1], axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        vr = far / (lag * near)
    return [bool(v >= ratio) for v in np.nan_to_num(vr, nan=0.0, posinf=0.0)]

