"""Level shifts: where a lone sensor sits now, against where it sat lately, blind to spikes.

The model reads a window's shape, and a stream that steps to a new level and stays there as noisy as
before is reconstructed well (a CPU whose floor moved under its spikes, byte rates that fell to near
zero, a service three times slower). The level check compares a window's mean with calibration's
envelope, which a bursty stream stretches wide (one spike window is enough) and which never moves.

So each device keeps the lower and upper quartiles of its recent windows: one pair every window's length
(they do not overlap) and no closer than ``horizon_s / history`` of stream time (they span a day or more:
a daily cycle's other half is not a step), from windows under the line and outside episodes (a fault's
level is not the device's). A rise is judged by the lower quartile and a fall by the upper one, so bursts
up and dips down of up to three quarters of a window move neither (a median moves at half). A window
whose lower quartile lies further above the centre of their range than ``margin`` times its half-width
(never narrower than the sensor's noise: its windows' median absolute deviation), or whose upper quartile
lies that far below, is that far over the line (1.0), in the detector's level channel. A sensor whose
quartiles were all positive (and not near zero) is also read on a log scale, where a rate or a time lives:
a fall from 300k-1.9M bytes/s to 17k is under two half-widths in bytes, and three orders of magnitude. A
level that wanders slowly stays inside (each new window is near the last ones); a step of a few widths
does not. Judged so for models of one sensor (``max_features``; ``LevelShifts`` says why).

For models of several sensors (up to ``relative_max_features``) the device keeps window medians instead, to fit each sensor on the
others (ridge regression, refitted at each median kept), and a sensor is judged by how far its median is
from that prediction against the range of the kept medians' leave-one-out residuals: a temperature that
rises while current and speed stay where the load puts them. Only while the others are inside their own
ranges (all moving together is a regime the fit may not know yet) and only the sensor furthest off.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

_NEVER = np.iinfo(np.int64).min // 2
# An exported slot (``export``): medians kept, windows since the last kept, that one's end; then the noise per
# sensor (float64) and the medians oldest first (float32).
_HEAD = struct.Struct("<qqq")


@dataclass(frozen=True, slots=True)
class ShiftConfig:
    history: int = 256  # windows kept per device (their quartiles alone, medians relative)
    horizon_s: float = 86_400.0  # ... one every window's length, and at least every horizon / history of stream time:
    # they span a day or more, so that a daily cycle's other half is not a shift
    min_samples: int = 16  # windows kept before a device's shifts are judged
    margin: float = 2.0  # the line: this many half-widths of the kept levels' range from its centre
    noise: float = 1.0  # the half-width is at least this times the mean of the windows' median absolute deviation
    log_floor: float = 0.1  # on the log scale, the half-width is at least this (10%: steady sensors are the linear scale's)
    # The log scale reads sensors whose lowest median is at least this share of their highest: clearly away from
    # zero (a signed sensor that drifts through zero has its lowest near it first, and is not a fall to nothing).
    log_min_share: float = 0.05
    cap: float = 1000.0  # the largest ratio (a step off a sensor that never moved is infinitely far)
    max_features: int = 1  # judged alone for models of at most this many sensors (``LevelShifts.__init__`` says why)
    # Models of more sensors, up to this many, judge each sensor's median against what the others' medians
    # predict (relative); 1 or less: off. (A fit per kept median costs O(F^3), and a device keeps F x F weights.)
    relative_max_features: int = 16
    relative_min_samples: int = 64  # medians before a relative fit is judged (it weighs F - 1 others, not one level)
    relative_sd: float = 2.5  # the half-width of the residuals' range is at least this many of their sd
    ridge: float = 0.1  # the fit's ridge, in units of the standardised medians' variance (few, collinear medians)
    enabled: bool = True


def window_quartiles(windows: np.ndarray) -> np.ndarray:
    """(n, T, F) -> (n, 2F): each window's lower quartiles, then its upper ones, as np.quantile's linear ones
    (from one sort of the short axis)."""
    ordered = np.sort(windows, axis=1)
    out = []
    for q in (0.25, 0.75):
        at = q * (windows.shape[1] - 1)
        below = int(at)
        above = min(below + 1, windows.shape[1] - 1)
        out.append(ordered[:, below] + (at - below) * (ordered[:, above] - ordered[:, below]))
    return np.concatenate(out, axis=1)


def window_medians(windows: np.ndarray) -> np.ndarray:
    """(n, T, F) -> (n, F): each window's median per sensor, as np.median (a sort of the short axis costs a
    seventh of its partition: ~0.3 us a window of 30 x 4 against 2.2)."""
    length = windows.shape[1]
    ordered = np.sort(windows, axis=1)
    middle = ordered[:, (length - 1) // 2 : length // 2 + 1]
    return middle[:, 0] if length % 2 else middle.mean(axis=1)


class LevelShifts:
    """Per window-store slot: a ring of the device's window medians (history, F) and their range.

    Indexed by the device's slot in the detector's ``WindowStore`` (a batch's windows come with it), so a
    batch's lookups are array gathers; ``forget`` a slot when its device is evicted.
    """

    def __init__(self, config: ShiftConfig, window: int, features: int, capacity: int = 64) -> None:
        # A model of several sensors learns their levels relative to each other: one sensor's step breaks that,
        # and the model sees it; all stepping together is a change of load or regime (the simulator's fleet-day
        # opened 52 false episodes instead of 2 with this on). A lone sensor's level is all there is to it.
        # Relative to the others, though, a sensor that moves alone is plain: load moves current, speed and
        # temperature together, an overheating motor moves its temperature alone.
        self.relative = config.enabled and config.max_features < features <= config.relative_max_features
        self.enabled = config.enabled and features <= config.max_features or self.relative
        self.config = config
        self.every = window
        self.sensors = features
        # Judged alone, a sensor keeps two levels a window: its lower quartile judges rises, its upper one falls, so
        # bursts and dips of up to three quarters of a window move neither (a median: half). Relative: its median.
        features = features if self.relative else 2 * features
        self.features = features  # (columns kept per window)
        self._medians = np.zeros((capacity, config.history, features), np.float32)
        self._filled = np.zeros(capacity, np.int64)
        self._pos = np.zeros(capacity, np.int64)
        self._since = np.zeros(capacity, np.int64)  # windows since the last median kept
        self._changes = np.zeros(capacity, np.int64)  # times the slot's medians changed (``changes``)
        self._taken_ms = np.full(capacity, _NEVER, np.int64)  # and that window's end
        self.spacing_ms = int(config.horizon_s * 1000 / config.history)
        self._noise = np.zeros((capacity, features))  # mean median absolute deviation of the sampled windows
        # The range of the medians, per scale: centre and half-width (inf: not judged yet, or not positive).
        self._centre = np.zeros((capacity, features))
        self._half = np.full((capacity, features), np.inf)
        self._centre_log = np.zeros((capacity, features))
        self._half_log = np.full((capacity, features), np.inf)
        self._lo = np.zeros((capacity, features))  # the lowest median (a log-scale reading is floored at 1e-3 x it)
        # Relative: the medians' mean and spread, and each sensor's weights on the others' standardised medians.
        self._mean = np.zeros((capacity, features))
        self._spread = np.ones((capacity, features))
        self._weights = np.zeros((capacity, features, features) if self.relative else (0, 0, 0))
        self._rel_centre = np.zeros((capacity, features))  # and the range of the medians' residuals
        self._rel_half = np.full((capacity, features), np.inf)

    @property
    def nbytes(self) -> int:
        arrays = (self._medians, self._filled, self._pos, self._since, self._taken_ms, self._noise, self._weights)
        return sum(a.nbytes for a in arrays) + 9 * self._lo.nbytes

    def ready(self, slots: np.ndarray) -> np.ndarray:
        """Per slot, whether any of its sensors is judged yet (the detector takes medians only of those windows)."""
        if not self.enabled or not len(slots):
            return np.zeros(len(slots), bool)
        self._ensure(int(slots.max()) + 1)
        return np.isfinite((self._rel_half if self.relative else self._half)[slots]).any(axis=1)

    def levels(self, windows: np.ndarray) -> np.ndarray:
        """(n, T, F) windows -> what is kept of them: (n, 2F) quartiles alone, (n, F) medians relative."""
        return window_medians(windows) if self.relative else window_quartiles(windows)

    def ratios(self, slots: np.ndarray, levels: np.ndarray) -> np.ndarray:
        """(n, F): how far each window's ``levels`` are from its device's recent ones (1.0 = the line; 0 while the
        device has too few). The detector asks round by round, so a device's earlier windows count."""
        if not self.enabled or not len(slots):
            return np.zeros((len(slots), self.sensors), np.float32)
        self._ensure(int(slots.max()) + 1)
        if self.relative:
            r = self._relative(slots, levels)
        else:
            d, d_log = self._alone(slots, levels)
            f = self.sensors
            up = np.fmax(d[:, :f], d_log[:, :f])  # lower quartiles judge rises, upper ones falls
            down = -np.fmin(d[:, f:], d_log[:, f:])
            r = np.maximum(np.maximum(up, down), 0.0)
        return np.minimum(r, self.config.cap).astype(np.float32)

    def _alone(self, slots: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each kept column's value against the range of its recent ones, signed (above the centre positive), on
        the linear and the log scale (0 where a column has none)."""
        margin = self.config.margin
        with np.errstate(invalid="ignore", divide="ignore"):  # (0/0 where a sensor never moved and still has not)
            d = (values - self._centre[slots]) / (margin * self._half[slots])
            half_log = self._half_log[slots]
            low = np.maximum(values, 1e-3 * self._lo[slots])  # (a zero or negative value: 1,000 times lower)
            d_log = (np.log(low) - self._centre_log[slots]) / (margin * half_log)
        return np.nan_to_num(d, nan=0.0), np.where(np.isfinite(half_log), np.nan_to_num(d_log, nan=0.0), 0.0)

    def _relative(self, slots: np.ndarray, medians: np.ndarray) -> np.ndarray:
        """How far each sensor's median is from what the others predict, counted only while the others are within
        their own recent ranges: when they have all moved too (a load regime the fit has not seen yet), this is no
        sensor moving alone, and those windows teach the fit how they move together."""
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (medians - self._mean[slots]) / self._spread[slots]
            residual = z - np.einsum("nk,njk->nj", z, self._weights[slots])
            r = np.nan_to_num(np.abs(residual - self._rel_centre[slots]) / (self.config.margin * self._rel_half[slots]), nan=0.0)
        d, d_log = self._alone(slots, medians)
        out = np.fmax(np.abs(d), np.abs(d_log)) > 1.0
        r = np.where(out.sum(axis=1, keepdims=True) - out == 0, r, 0.0)  # none of the others out
        # A sensor off its prediction puts the others' predictions off too: the one furthest out is the one that moved.
        return np.where(r >= r.max(axis=1, keepdims=True), r, 0.0)

    def observe(self, slots: np.ndarray, windows: np.ndarray, end_ms: np.ndarray, quiet: np.ndarray) -> None:
        """Count windows of distinct devices (``slots``), each ending at ``end_ms``, and keep the levels of those
        ``quiet`` (under the line and outside an episode: a fault's level is not the device's) that come a window's
        length and ``spacing_ms`` or more after the device's last one kept."""
        if not self.enabled or not len(slots):
            return
        self._ensure(int(slots.max()) + 1)
        self._since[slots] += 1
        due = quiet & (self._since[slots] >= self.every) & (end_ms - self._taken_ms[slots] >= self.spacing_ms)
        take = np.flatnonzero(due)
        if not len(take):
            return
        s = slots[take]
        self._since[s], self._taken_ms[s] = 0, end_ms[take]
        self._changes[s] += 1
        h = self.config.history
        medians = window_medians(windows[take])  # (only of the windows kept: most are not)
        mad = np.median(np.abs(windows[take] - medians[:, None, :]), axis=1)
        if not self.relative:
            medians, mad = window_quartiles(windows[take]), np.concatenate([mad, mad], axis=1)
        self._medians[s, self._pos[s]] = medians
        count = np.minimum(self._filled[s] + 1, h)  # the noise: a running mean over (about) the last ``history``
        self._noise[s] += (mad - self._noise[s]) / count[:, None]
        self._pos[s] = (self._pos[s] + 1) % h
        self._filled[s] = count
        self._refresh(s)

    def observe_one(self, slot: int, window: np.ndarray, end_ms: int, quiet: bool) -> None:
        """``observe`` for one window (the detector's windows that go one by one), in scalars until a median is due."""
        if not self.enabled:
            return
        self._ensure(slot + 1)
        since = int(self._since[slot]) + 1
        if quiet and since >= self.every and end_ms - int(self._taken_ms[slot]) >= self.spacing_ms:
            self.observe(np.array([slot]), window[None], np.array([end_ms]), np.array([True]))
        else:
            self._since[slot] = since

    def changes(self, slot: int) -> int:
        """How often the slot's medians changed so far: ratios read before a change are stale after it."""
        return int(self._changes[slot]) if slot < len(self._changes) else 0

    def export(self, slot: int | None) -> bytes | None:
        """The slot's medians as bytes (None when it has none), for ``restore`` in a later worker."""
        if slot is None or not self.enabled or slot >= len(self._filled) or not self._filled[slot]:
            return None
        filled, h = int(self._filled[slot]), self.config.history
        ordered = self._medians[slot, :filled] if filled < h else np.roll(self._medians[slot], -int(self._pos[slot]), axis=0)
        head = _HEAD.pack(filled, int(self._since[slot]), int(self._taken_ms[slot]))
        return head + self._noise[slot].astype("<f8").tobytes() + ordered.astype("<f4").tobytes()

    def restore(self, slot: int, state: bytes) -> bool:
        """Take up an ``export`` into an empty slot (False, unchanged, for one that has medians or when off);
        ValueError for bytes that are not one."""
        if not self.enabled:
            return False
        self._ensure(slot + 1)
        if self._filled[slot]:
            return False
        f = self.features
        try:
            filled, since, taken_ms = _HEAD.unpack_from(state)
        except struct.error:
            raise ValueError(f"not a level shifts state ({len(state)} bytes)") from None
        if filled < 1 or since < 0 or len(state) != _HEAD.size + 8 * f + 4 * f * filled:
            raise ValueError(f"not a level shifts state of {f} sensor(s) ({len(state)} bytes)")
        noise = np.frombuffer(state, "<f8", f, _HEAD.size)
        medians = np.frombuffer(state, "<f4", f * filled, _HEAD.size + 8 * f).reshape(filled, f)[-self.config.history :]
        if not (np.isfinite(noise).all() and np.isfinite(medians).all() and (noise >= 0).all()):
            raise ValueError("not a level shifts state (values out of range)")
        kept = len(medians)
        self._medians[slot, :kept] = medians
        self._filled[slot], self._pos[slot] = kept, kept % self.config.history
        self._since[slot], self._taken_ms[slot] = since, taken_ms
        self._noise[slot] = noise
        self._changes[slot] += 1
        self._refresh(np.array([slot]))
        return True

    def forget(self, slot: int | None) -> None:
        """A slot handed to another device, or whose device runs at a new level now, starts empty."""
        if slot is not None and slot < len(self._filled):
            self._filled[slot] = self._pos[slot] = self._since[slot] = 0
            self._changes[slot] += 1
            self._taken_ms[slot] = _NEVER
            self._noise[slot] = 0.0
            self._half[slot] = self._half_log[slot] = self._rel_half[slot] = np.inf

    def _refresh(self, slots: np.ndarray) -> None:
        """Recompute the range of the slots' medians (a ring fills from its start); none before they are judged."""
        slots = slots[self._filled[slots] >= (self.config.relative_min_samples if self.relative else self.config.min_samples)]
        if not len(slots):
            return
        filled = self._filled[slots]
        valid = (np.arange(self.config.history) < filled[:, None])[:, :, None]
        values = self._medians[slots]
        if self.relative:
            self._refresh_relative(slots, values.astype(np.float64), valid, filled)
        lo = np.where(valid, values, np.inf).min(axis=1).astype(np.float64)
        hi = np.where(valid, values, -np.inf).max(axis=1).astype(np.float64)
        ready = (filled >= self.config.min_samples)[:, None]
        centre = (lo + hi) / 2
        floor = np.maximum(self.config.noise * self._noise[slots], 1e-6 * (1.0 + np.abs(centre)))
        self._centre[slots] = centre
        self._half[slots] = np.where(ready, np.maximum((hi - lo) / 2, floor), np.inf)
        positive = ready & (lo > 0) & (lo >= self.config.log_min_share * hi)
        lo_log, hi_log = np.log(np.where(positive, lo, 1.0)), np.log(np.where(positive, hi, 1.0))
        self._lo[slots] = lo
        self._centre_log[slots] = (lo_log + hi_log) / 2
        self._half_log[slots] = np.where(positive, np.maximum((hi_log - lo_log) / 2, self.config.log_floor), np.inf)

    def _refresh_relative(self, slots: np.ndarray, values: np.ndarray, valid: np.ndarray, filled: np.ndarray) -> None:
        """Fit each sensor on the others over the slots' medians (ridge, standardised), and take the range of the
        medians' residuals. A sensor whose medians never moved is not judged here (the level check has it)."""
        count = np.maximum(filled, 1)[:, None]
        mean = np.where(valid, values, 0.0).sum(axis=1) / count
        spread = np.sqrt(np.where(valid, (values - mean[:, None]) ** 2, 0.0).sum(axis=1) / count)
        moved = spread > 1e-9 * (1.0 + np.abs(mean))
        spread = np.where(moved, spread, 1.0)
        z = np.where(valid & moved[:, None], (values - mean[:, None]) / spread[:, None], 0.0)
        features = self.features
        gram = np.einsum("shj,shk->sjk", z, z) / count[:, :, None] + self.config.ridge * np.eye(features)
        precision = np.linalg.inv(gram)
        diagonal = np.diagonal(precision, axis1=1, axis2=2)
        weights = -precision / diagonal[:, :, None]  # sensor j on the others: -P_jk / P_jj
        weights[:, np.arange(features), np.arange(features)] = 0.0
        # Each median's residual as if it had been left out of the fit (ridge's leave-one-out: e / (1 - h)): a fit
        # on few medians hugs them, and the range of its own residuals would be narrower than a new window's.
        pz = np.einsum("sjk,shk->shj", precision, z)
        leverage = ((z * pz).sum(axis=2, keepdims=True) - pz**2 / diagonal[:, None, :]) / count[:, :, None]
        residuals = (z - np.einsum("shk,sjk->shj", z, weights)) / np.maximum(1.0 - leverage, 0.05)
        lo = np.where(valid, residuals, np.inf).min(axis=1)
        hi = np.where(valid, residuals, -np.inf).max(axis=1)
        # The range of a few residuals is narrower than of many (of 16 normal ones about 3.5 sd, of 256 about 5.5), and a
        # device judged every reading tries the line thousands of times a day: never closer than ``relative_sd`` sd.
        sd = np.sqrt(np.where(valid, residuals**2, 0.0).sum(axis=1) / count)
        floor = np.maximum(np.maximum(self.config.noise * self._noise[slots] / spread, self.config.relative_sd * sd), 1e-6)
        ready = (filled >= self.config.relative_min_samples)[:, None] & moved
        self._mean[slots], self._spread[slots], self._weights[slots] = mean, spread, weights
        self._rel_centre[slots] = (lo + hi) / 2
        self._rel_half[slots] = np.where(ready, np.maximum((hi - lo) / 2, floor), np.inf)

    def _ensure(self, size: int) -> None:
        """Room for slots up to ``size`` (the window store grows by doubling; so do these)."""
        if size <= len(self._filled):
            return
        grow = max(size - len(self._filled), len(self._filled))

        def extend(a: np.ndarray, fill: float) -> np.ndarray:
            return np.concatenate([a, np.full((grow, *a.shape[1:]), fill, a.dtype)])

        # (the rings: zeros the OS maps on first write, so a device takes their memory only once it keeps a median)
        medians = np.zeros((len(self._filled) + grow, *self._medians.shape[1:]), self._medians.dtype)
        kept = np.flatnonzero(self._filled)
        medians[kept] = self._medians[kept]
        self._medians = medians
        self._filled, self._pos, self._since = extend(self._filled, 0), extend(self._pos, 0), extend(self._since, 0)
        self._changes = extend(self._changes, 0)
        self._taken_ms = extend(self._taken_ms, _NEVER)
        self._noise, self._centre, self._lo, self._centre_log = (extend(a, 0.0) for a in (self._noise, self._centre, self._lo, self._centre_log))
        self._half, self._half_log = extend(self._half, np.inf), extend(self._half_log, np.inf)
        self._mean, self._spread, self._weights = extend(self._mean, 0.0), extend(self._spread, 1.0), extend(self._weights, 0.0)
        self._rel_centre, self._rel_half = extend(self._rel_centre, 0.0), extend(self._rel_half, np.inf)
