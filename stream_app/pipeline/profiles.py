"""Hour profiles: a lone sensor's hour against the same hour of past days and of past weeks.

A street's traffic on a public holiday, a line that did not start its shift, a quiet day: every reading is
one the sensor often reads, at another hour or on another day, so no check of a window alone sees it; what
is wrong is *when*. ``HourProfiles`` keeps, per device, the median reading of each hour of its last three
weeks and three days (of the stream's time, UTC; the median of up to 32 readings spread over the hour, so a
burst of a few readings, which busy streams make every day, does not move it). When an hour is over, it is
compared with two references: the **daily** one, the median of the same hour on the last three days of its
type (Monday to Friday, or the weekend, of the device's own week: see below; of those kept, the nearest at
least), and the **weekly** one, the
median of the same hour one, two and three weeks back (of those kept, so one odd week, a holiday's, does not
set it) moved by the median of how far each of the last 24 hours was from its own weeks back (so a new level
is followed within a day; the same hour of the last three days, three moves, was too noisy: a lasting move
of two noise sd went over the line). Days of its type, because the three days before a Monday are a Friday
and a weekend, whose median is a weekend's level: a Monday as quiet as a Sunday (a holiday, a shift that
never started) was near it.

A device's own week: a site far from UTC, or a Friday-Saturday weekend, has days that by their UTC dates are
of the wrong type (a Sunday evening west of UTC is a Monday's hours), far from the last days of that type every
week. So each device's week is the UTC week moved by the lag (0-167 hours) whose types its last two weeks'
hours fit best (their mean distance to their daily references), fitted when its line is (re)learnt (each day
for two weeks, then once a week) and taken when under 0.8 x the current lag's mean (noise fits every lag
alike: a stream without a weekly shape keeps the UTC week); its kept distances are then recomputed under it.

Each device uses the reference that fits it: the one whose distances over its last two weeks' hours (those
with both) have the lower 0.99 quantile, the daily one until three days of such hours are kept. A device's
line is ``margin`` times that quantile (of its distances under the line), first learnt after a week of the
device's history (three days of distances at least), so that every day of the week is among the hours it is
learnt from: a stream whose weekend falls on other UTC days (a Friday-Saturday weekend, a site far from
UTC) has some days always far from its daily reference, and a line learnt before it met them would call them
anomalous every week, since an hour over the line does not teach it. The line is never under ``spread`` times
the typical scatter of readings within an hour (their sd, the median over those hours): an hour's median is
steady, so without it a lasting move of the level by two noise sd (a new load, a regime) would be far from
the days before for a day or two. A device's verdict (1.0 = its line) is its last finished hour's and holds
until the next one is over. The line and the choice of reference are recomputed once a day of a device's
hours (a quantile over two weeks of hours, per hour, was most of the check's cost).
Models of one sensor only, as the level shifts (shifts.py): several sensors are left to the model.

State: per device 24 days of hour medians, two weeks of both distances (and their hours) and of scatters,
the last day's moves, the week's lag, which hours were over the line and the current hour's sample, ~11.3 KB, in memory and saved to Redis with the lines (``export``, adaptation.py).
"""

from __future__ import annotations

import math
import statistics
import struct
from dataclasses import dataclass
from itertools import islice
from typing import TypeVar

import numpy as np

T = TypeVar("T", int, np.ndarray)

HOUR_MS = 3_600_000
SAMPLE = 32  # readings of an hour kept for its median: every reading, then every 2nd, 4th... once full
MOVES = 24  # hours whose move from their weeks back (median - weekly base) moves the weekly reference
# A device's exported state (``export``): ring and history lengths, the hour accumulating, its sample's size,
# stride and readings to skip, the current verdict, how many distances were kept, the line, when it was
# computed and whether it is the weekly reference's; then the sample (float64, SAMPLE: the readings as read),
# the ring's medians (float32) and hours (int32), the daily and weekly distances and the scatters (float32),
# the last hours' moves (float64, MOVES) and their hours (int64); then the week's lag, each kept distance's
# hour (int32) and whether each of the ring's hours was over the line (uint8).
_HEAD = struct.Struct("<qqqqqqdqdqqq")
_HEAD_V1 = struct.Struct("<qqqqqqdqdqq")  # saved before 2026-11-28 (later session): no week lag, no distances' hours


@dataclass(frozen=True, slots=True)
class ProfileConfig:
    enabled: bool = True
    days: int = 3  # the daily reference: the median of the same hour on up to this many past days (the nearest kept)
    day_types: bool = True  # ... of the day's type (Monday to Friday, or the weekend; by the stream's UTC date)
    # ... the device's own week: its days' types as its hours fit them best, the UTC week moved by 0-167 hours
    # (a site far from UTC, a Friday-Saturday weekend), fitted at each relearning
    own_week: bool = True
    own_week_gain: float = 0.8  # a new lag is taken when its mean distance is under this x the current lag's
    first_trim: float = 10.0  # the first line is learnt without the distances over this x their median
    weeks: int = 3  # the weekly reference: the median of the same hour of the week 1..weeks back (the last kept)
    history_h: int = 336  # hours of distances the line is learnt from
    min_history_h: int = 72  # distances before a device's line is trusted
    first_line_h: int = 168  # and hours of its history before its first line: every day of the week seen
    quantile: float = 0.99
    margin: float = 1.5
    spread: float = 4.0  # the line is at least this x the readings' typical sd within an hour
    relearn_h: int = 24  # hours between two computations of a device's line
    # Lines learnt in one batch (``observe_many``) at most, the rest taken up in the next batches: a fleet that
    # started together learns its lines in the same hour (~0.5-1 ms a device), which would hold up that batch
    # (a second for 1,024 devices). Up to ``relearns_min`` a batch, or one per ``windows_per_relearn`` windows.
    relearns_min: int = 64
    windows_per_relearn: int = 16


class HourProfiles:
    """Per device: its last hours' median readings and how far each finished hour was from the same hour before."""

    def __init__(self, config: ProfileConfig = ProfileConfig()) -> None:
        self.config = config
        self._daily = [_daily_back(weekday, config.days, config.day_types) for weekday in range(7)]
        self._daily_table = np.array(self._daily, np.int64)  # (7, days): the same, for fitting a week's lag
        # Hours kept (h - ring is read before h is kept), as many as the saved states of earlier versions hold
        # when that is enough: a weekend's daily reference reaches 13 days back.
        self._ring = max(24 * config.days + 168 * config.weeks, max(max(back) for back in self._daily) + 1)
        self._weekly = [168 * k for k in range(1, config.weeks + 1)]
        self._slots: dict[str, int] = {}
        self._free: list[int] = []
        self._medians = np.zeros((0, self._ring), np.float32)
        self._hour_of = np.zeros((0, self._ring), np.int32)
        self._dist = np.zeros((0, config.history_h), np.float32)  # each kept hour's distance to the daily reference
        self._dist_weekly = np.zeros((0, config.history_h), np.float32)  # and to the weekly one
        self._spread = np.zeros((0, config.history_h), np.float32)  # each kept hour's sd of readings (NaN: one reading)
        self._dist_hour = np.zeros((0, config.history_h), np.int32)  # each kept distance's hour (-1: not known)
        self._far = np.zeros((0, self._ring), bool)  # the ring's hours judged over the line: no base for a week on
        # Per slot, as Python lists: read and written once a window, where numpy scalars cost more.
        self._hour: list[int] = []
        self._sample: list[list[float]] = []  # the hour's readings kept (every ``stride``-th)
        self._stride: list[int] = []
        self._skip: list[int] = []  # readings to pass over before the next is kept
        self._ratio: list[float] = []
        self._kept: list[int] = []  # distances kept so far (the next goes to kept % history_h)
        self._line: list[float] = []  # the device's line in its sensor's units (0.0: none yet)
        self._line_at: list[int] = []  # ``kept`` when the line was last computed
        self._by_week: list[bool] = []  # the line (and the verdict) is the weekly reference's
        self._lag: list[int] = []  # hours the device's week lags the UTC week (0: its weekend is Saturday-Sunday, UTC)
        # Each hour's move from its weeks back, kept when it closes (at hour % MOVES, with that hour), so the
        # weekly reference reads the last day's moves instead of computing 24 bases again each hour.
        self._moves: list[list[float]] = []
        self._move_hours: list[list[int]] = []
        # Devices whose line is due but was left for a later batch (``relearns_min``), oldest first, and how
        # many more lines this batch may learn (unbounded outside ``observe_many``).
        self._due: dict[int, None] = {}
        self._budget = _UNBOUNDED

    def __len__(self) -> int:
        return len(self._slots)

    def observe(self, device_id: str, end_ms: int, value: float) -> float:
        """Record a window's newest reading; returns the device's verdict (1.0 = its line; 0.0 until it has one)."""
        if not self.config.enabled:
            return 0.0
        hour = end_ms // HOUR_MS
        slot = self._slots.get(device_id)
        if slot is None:
            slot = self._add(device_id, hour)
        elif hour != self._hour[slot]:
            if hour < self._hour[slot]:  # (the detector refuses readings out of order; be safe anyway)
                return self._ratio[slot]
            self._close(slot)
            self._hour[slot] = hour
        if math.isfinite(value):
            if self._skip[slot]:
                self._skip[slot] -= 1
            else:
                sample = self._sample[slot]
                sample.append(value)
                self._skip[slot] = self._stride[slot] - 1
                if len(sample) == SAMPLE:  # full: keep every other one, and from now on every other reading
                    del sample[1::2]
                    self._stride[slot] *= 2
                    self._skip[slot] = self._stride[slot] - 1
        return self._ratio[slot]

    def observe_many(self, device_ids: list[str], end_ms: np.ndarray, values: np.ndarray) -> np.ndarray:
        """``observe`` for windows of distinct devices (or one device's, in order): their verdicts, float32."""
        config = self.config
        self._budget = max(config.relearns_min, len(device_ids) // max(1, config.windows_per_relearn))
        try:
            observe = self.observe
            verdicts = [observe(d, e, v) for d, e, v in zip(device_ids, end_ms.tolist(), values.tolist())]
            for slot in list(islice(self._due, self._budget)):  # (those left by earlier batches, with what is left)
                del self._due[slot]
                self._learn(slot, self._hour[slot])
        finally:
            self._budget = _UNBOUNDED
        return np.array(verdicts, np.float32)

    def export(self, device_id: str) -> bytes | None:
        """The device's state as bytes (None for a device never seen), for ``restore`` in another worker."""
        slot = self._slots.get(device_id)
        if slot is None:
            return None
        sample = self._sample[slot]
        head = _HEAD.pack(
            self._ring, self.config.history_h, self._hour[slot], len(sample), self._stride[slot], self._skip[slot],
            self._ratio[slot], self._kept[slot], self._line[slot], self._line_at[slot], self._by_week[slot],
            self._lag[slot],
        )  # fmt: skip
        return b"".join((
            head, np.array(sample + [0.0] * (SAMPLE - len(sample)), "<f8").tobytes(),
            self._medians[slot].astype("<f4").tobytes(), self._hour_of[slot].astype("<i4").tobytes(),
            self._dist[slot].astype("<f4").tobytes(), self._dist_weekly[slot].astype("<f4").tobytes(),
            self._spread[slot].astype("<f4").tobytes(), np.array(self._moves[slot], "<f8").tobytes(),
            np.array(self._move_hours[slot], "<i8").tobytes(), self._dist_hour[slot].astype("<i4").tobytes(),
            self._far[slot].astype("<u1").tobytes(),
        ))  # fmt: skip

    def restore(self, device_id: str, state: bytes) -> bool:
        """Take up an ``export``ed state for a device this instance has not met (False, unchanged, for one it
        has, or for a state kept with other lengths). Raises ValueError for bytes that are not one."""
        if device_id in self._slots or not self.config.enabled:
            return False
        if len(state) < _HEAD.size:
            raise ValueError(f"not an hour profile ({len(state)} bytes)")
        ring, history, hour, n, stride, skip, ratio, kept, line, line_at, by_week = _HEAD_V1.unpack_from(state)
        if (ring, history) != (self._ring, self.config.history_h):
            return False
        body = 8 * SAMPLE + 8 * ring + 12 * history + 16 * MOVES
        if len(state) == _HEAD.size + body + 4 * history + ring:
            lag = _HEAD.unpack_from(state)[-1]
            head = _HEAD.size
        elif len(state) == _HEAD_V1.size + body:  # (a previous version's: its week is the UTC week)
            lag, head = 0, _HEAD_V1.size
        else:
            raise ValueError("not an hour profile (inconsistent length)")
        if not 0 <= n < SAMPLE or kept < 0 or stride < 1 or not 0 <= lag < 168:
            raise ValueError("not an hour profile (inconsistent fields)")
        slot = self._add(device_id, hour)
        self._sample[slot] = np.frombuffer(state, "<f8", n, head).tolist()
        self._stride[slot], self._skip[slot] = stride, skip
        at = head + 8 * SAMPLE
        self._medians[slot] = np.frombuffer(state, "<f4", ring, at)
        self._hour_of[slot] = np.frombuffer(state, "<i4", ring, at + 4 * ring)
        self._dist[slot] = np.frombuffer(state, "<f4", history, at + 8 * ring)
        self._dist_weekly[slot] = np.frombuffer(state, "<f4", history, at + 8 * ring + 4 * history)
        self._spread[slot] = np.frombuffer(state, "<f4", history, at + 8 * ring + 8 * history)
        at += 8 * ring + 12 * history
        self._moves[slot] = np.frombuffer(state, "<f8", MOVES, at).tolist()
        self._move_hours[slot] = np.frombuffer(state, "<i8", MOVES, at + 8 * MOVES).tolist()
        if head == _HEAD.size:
            self._dist_hour[slot] = np.frombuffer(state, "<i4", history, at + 16 * MOVES)
            self._far[slot] = np.frombuffer(state, "<u1", ring, at + 16 * MOVES + 4 * history).astype(bool)
        self._lag[slot] = lag
        self._ratio[slot], self._kept[slot], self._line[slot], self._line_at[slot] = ratio, kept, line, line_at
        self._by_week[slot] = bool(by_week)
        return True

    def forget(self, device_id: str) -> None:
        slot = self._slots.pop(device_id, None)
        if slot is not None:
            self._due.pop(slot, None)
            self._free.append(slot)

    def _close(self, slot: int) -> None:
        """The accumulated hour is over: judge it against the same hour before, then keep its median."""
        sample, hour = self._sample[slot], self._hour[slot]
        self._sample[slot], self._stride[slot], self._skip[slot] = [], 1, 0
        n = len(sample)
        if not n:
            self._ratio[slot] = 0.0
            return
        median = statistics.median(sample)
        base = self._weekly_base(slot, hour)  # the same hour of past weeks
        distances = self._distances(slot, hour, median, base)
        ratio = 0.0
        if distances is not None:
            daily, weekly = distances
            config = self.config
            kept = self._kept[slot]
            if kept >= max(1, config.min_history_h) and (
                kept - self._line_at[slot] >= config.relearn_h if self._line[slot] else self._first_line(slot, hour)
            ):
                if self._budget > 0:
                    self._due.pop(slot, None)
                    if self._learn(slot, hour):
                        daily = (self._distances(slot, hour, median, base) or distances)[0]  # (under the new lag)
                else:  # (this hour is judged by the line it has)
                    self._due[slot] = None
            line = self._line[slot]
            distance = weekly if self._by_week[slot] else daily
            # (no line yet, a sensor that never moved, or no week back for the weekly reference: no verdict)
            ratio = distance / line if line > 0 and not math.isnan(distance) else 0.0
            if ratio <= 1.0:  # an hour over its line does not teach the line
                kept = self._kept[slot]  # (a new lag may have dropped some)
                at = kept % config.history_h
                self._dist[slot, at], self._dist_weekly[slot, at] = daily, weekly
                self._dist_hour[slot, at] = hour
                # (one reading an hour has no scatter: its hours' distances already hold the noise)
                self._spread[slot, at] = _sd(sample) if n > 1 else math.nan
                self._kept[slot] = kept + 1
        self._ratio[slot] = ratio
        at = hour % self._ring
        self._medians[slot, at], self._hour_of[slot, at] = median, hour
        self._far[slot, at] = ratio > 1.0
        if base is not None:  # (the median as the ring keeps it, float32)
            self._moves[slot][hour % MOVES] = float(self._medians[slot, at]) - base
            self._move_hours[slot][hour % MOVES] = hour

    def _learn(self, slot: int, hour: int) -> bool:
        """(Re)learn the device's line from its hours before ``hour`` (fitting its week first when it is time);
        True if its week moved."""
        self._budget -= 1
        first = not self._line[slot]
        moved = self._fits_week(slot) and self._fit_week(slot, hour)
        if first:
            self._drop_far(slot)
        self._relearn(slot)
        if first:
            self._flag_far(slot, hour)
        return moved

    def _first_line(self, slot: int, hour: int) -> bool:
        """Whether the device has ``first_line_h`` hours of history: a first line learnt from fewer days than a
        week can miss a day that is always far from its reference (a weekend on other UTC days than
        Saturday and Sunday, a site far from UTC), which it would then call anomalous every week (an hour
        over the line does not teach it)."""
        hours = self._hour_of[slot]
        return hour - int(hours[hours >= 0].min()) >= self.config.first_line_h

    def _drop_far(self, slot: int) -> None:
        """Before a device's first line its distances were never judged, so an odd day of its first week (a
        holiday, a fault) is among them and would set the line for two weeks: those over ``first_trim`` x
        their median are dropped (their hours are flagged far by ``_flag_far``, over the line)."""
        order = self._kept_order(slot)
        days = self._dist[slot, order]
        limit = self.config.first_trim * float(np.median(days))
        keep = [at for at, d in zip(order, days.tolist()) if not d > limit]
        if limit <= 0 or len(keep) == len(order) or len(keep) < max(1, self.config.min_history_h):
            return
        self._keep_only(slot, keep, self._dist[slot, keep])

    def _kept_order(self, slot: int) -> list[int]:
        """The positions of the device's kept distances, oldest first."""
        kept, history = self._kept[slot], self.config.history_h
        return [(kept - k) % history for k in range(min(kept, history), 0, -1)]

    def _keep_only(self, slot: int, keep: list[int], daily: np.ndarray | list[float]) -> None:
        """Keep only the distances at positions ``keep`` (oldest first; they move to the front), the daily ones
        as ``daily``."""
        for table in (self._dist_weekly, self._spread, self._dist_hour):
            table[slot, : len(keep)] = table[slot, keep]
        self._dist[slot, : len(keep)] = daily
        self._kept[slot] = len(keep)

    def _flag_far(self, slot: int, hour: int) -> None:
        """At a device's first line, flag the hours before it that are over it (by the daily reference, as they
        would have been judged): one odd day must not be the base of the same day next week."""
        line, ring, lag = self._line[slot], self._ring, self._lag[slot]
        hour_of, medians, far = self._hour_of[slot], self._medians[slot], self._far[slot]
        for h in range(hour - ring + 1, hour):
            if hour_of[h % ring] == h:
                reference = self._reference(slot, h, self._daily[_weekday(h - lag)])
                far[h % ring] = reference is not None and abs(float(medians[h % ring]) - reference) > line

    def _weekly_base(self, slot: int, hour: int) -> float | None:
        """The median of the same hour one to ``weeks`` weeks back, of those kept and not over the line (None
        if none is): with fewer than three weeks kept, one odd week would set it."""
        hour_of, medians, far, ring = self._hour_of[slot], self._medians[slot], self._far[slot], self._ring
        found = [float(medians[(hour - b) % ring]) for b in self._weekly if hour_of[(hour - b) % ring] == hour - b and not far[(hour - b) % ring]]
        return statistics.median(found) if found else None

    def _fits_week(self, slot: int) -> bool:
        """Whether this relearning fits the device's week: each one in its first two weeks of distances, then
        one in 7, on a day of its own (a fleet's hours close together; a fit costs ~0.3 ms a device)."""
        config = self.config
        kept = self._kept[slot]
        return config.own_week and config.day_types and (kept < config.history_h or (kept // config.relearn_h + slot) % 7 == 0)

    def _fit_week(self, slot: int, hour: int) -> bool:
        """Move the device's week to the lag (0-167 hours after the UTC week) whose days' types its last two
        weeks' hours fit best (the lowest mean distance to their daily references), if that is under
        ``own_week_gain`` x the current lag's; then its kept daily distances are recomputed under it. True if
        it moved. A stream without a weekly shape fits every lag alike and keeps its own."""
        config, ring = self.config, self._ring
        hour_of, medians = self._hour_of[slot], self._medians[slot]
        hours = np.arange(hour - config.history_h, hour)
        hours = hours[hour_of[hours % ring] == hours]
        if not len(hours):
            return False
        # Each hour's distance to its daily reference as a day of each weekday (7 x hours), then read per lag.
        back = hours[None, :, None] - self._daily_table[:, None, :]  # (weekdays, hours, days)
        refs = np.where(hour_of[back % ring] == back, medians[back % ring], np.nan).astype(np.float64)
        judged = ~np.isnan(refs[..., 0])  # (as ``_reference``: the nearest day of its type kept)
        refs.sort(axis=2)  # (NaN last)
        count = (~np.isnan(refs)).sum(axis=2, keepdims=True)
        low = np.take_along_axis(refs, np.maximum(count - 1, 0) // 2, 2)[..., 0]
        high = np.take_along_axis(refs, count // 2 - (count == 0), 2)[..., 0]
        distances = np.where(judged, np.abs(medians[hours % ring] - (low + high) / 2), 0.0)
        # Summed by (weekday, hour of the UTC week), then per lag over the weekday each hour of the week has.
        at = (np.arange(7)[:, None] * 168 + (hours + 72) % 168).ravel()  # (1970-01-01 00:00 was 72 h after a Monday's)
        total = _LAG_WEEKDAYS @ np.bincount(at, distances.ravel(), 7 * 168)
        n = _LAG_WEEKDAYS @ np.bincount(at, judged.ravel(), 7 * 168)
        # (a lag whose types leave many hours unjudged, early on, is not compared on the others alone)
        mean = np.where(n >= max(1.0, n.max() // 2), total / np.maximum(n, 1.0), np.inf)
        lag, best = self._lag[slot], int(np.argmin(mean))
        if not mean[best] < config.own_week_gain * mean[lag]:
            return False
        # The kept distances again under the new lag, oldest first; those whose hour has no reference under
        # it (its nearest day of its type is not kept) are dropped: under the old lag they were far. (A state
        # saved by an earlier version does not know its distances' hours: those stay.)
        keep: list[int] = []
        again: list[float] = []
        for at in self._kept_order(slot):
            h = int(self._dist_hour[slot, at])
            if h < 0:
                keep.append(at)
                again.append(float(self._dist[slot, at]))
            elif hour_of[h % ring] == h and (reference := self._reference(slot, h, self._daily[_weekday(h - best)])) is not None:
                keep.append(at)
                again.append(abs(float(medians[h % ring]) - reference))
        if len(keep) < max(1, config.min_history_h):  # (too few left to learn a line from: not yet)
            return False
        self._lag[slot] = best
        self._keep_only(slot, keep, again)
        return True

    def _relearn(self, slot: int) -> None:
        """The device's reference and line from its kept hours: the reference whose distances' quantile is the
        lower, ``margin`` x that quantile, at least ``spread`` x their median scatter."""
        config = self.config
        kept = min(self._kept[slot], config.history_h)
        days, weeks = self._dist[slot, :kept], self._dist_weekly[slot, :kept]
        quantile = float(np.quantile(days, config.quantile))
        both = ~np.isnan(weeks)
        self._by_week[slot] = False
        if both.sum() >= max(1, config.min_history_h):  # (the two compared on the same hours)
            weekly = float(np.quantile(weeks[both], config.quantile))
            self._by_week[slot] = weekly < float(np.quantile(days[both], config.quantile))
            if self._by_week[slot]:
                quantile = weekly
        line = config.margin * quantile
        spreads = self._spread[slot, :kept]
        spreads = spreads[~np.isnan(spreads)]
        if len(spreads):
            line = max(line, config.spread * float(np.median(spreads)))
        self._line[slot], self._line_at[slot] = line, self._kept[slot]

    def _distances(self, slot: int, hour: int, median: float, base: float | None) -> tuple[float, float] | None:
        """The hour's distances to the daily and to the weekly reference (NaN without ``base``, the same hour
        of past weeks); None without the daily one."""
        daily = self._reference(slot, hour, self._daily[_weekday(hour - self._lag[slot])])
        if daily is None:
            return None
        if base is None:
            return abs(median - daily), math.nan
        # The weekly reference: the base moved by the median of the last 24 hours' moves from their own bases.
        hours = self._move_hours[slot]
        moves = [m for k, m in enumerate(self._moves[slot]) if hour - MOVES <= hours[k] < hour]
        return abs(median - daily), abs(median - (base + statistics.median(moves) if moves else base))

    def _reference(self, slot: int, hour: int, back: list[int]) -> float | None:
        """The median of those of the hours ``back`` from ``hour`` that are kept (None unless the first is)."""
        hour_of, medians, ring = self._hour_of[slot], self._medians[slot], self._ring
        if hour_of[(hour - back[0]) % ring] != hour - back[0]:
            return None
        found = [float(medians[(hour - b) % ring]) for b in back if hour_of[(hour - b) % ring] == hour - b]
        return statistics.median(found)

    def _add(self, device_id: str, hour: int) -> int:
        if self._free:
            slot = self._free.pop()
        else:
            slot = len(self._hour)
            if slot == len(self._medians):
                grow = max(16, len(self._medians) // 2)  # by half: a fleet's worth of slack, not twice it
                self._medians = np.concatenate([self._medians, np.zeros((grow, self._ring), np.float32)])
                self._hour_of = np.concatenate([self._hour_of, np.full((grow, self._ring), -1, np.int32)])
                self._dist = np.concatenate([self._dist, np.zeros((grow, self.config.history_h), np.float32)])
                self._dist_weekly = np.concatenate([self._dist_weekly, np.zeros((grow, self.config.history_h), np.float32)])
                self._spread = np.concatenate([self._spread, np.zeros((grow, self.config.history_h), np.float32)])
                self._dist_hour = np.concatenate([self._dist_hour, np.zeros((grow, self.config.history_h), np.int32)])
                self._far = np.concatenate([self._far, np.zeros((grow, self._ring), bool)])
            self._hour.append(0)
            self._sample.append([])
            self._moves.append([])
            self._move_hours.append([])
            self._stride.append(1)
            self._skip.append(0)
            self._ratio.append(0.0)
            self._kept.append(0)
            self._line.append(0.0)
            self._line_at.append(0)
            self._by_week.append(False)
            self._lag.append(0)
        self._slots[device_id] = slot
        self._due.pop(slot, None)
        self._hour_of[slot] = -1
        self._dist_hour[slot] = -1
        self._far[slot] = False
        self._hour[slot], self._sample[slot], self._stride[slot], self._skip[slot] = hour, [], 1, 0
        self._ratio[slot], self._kept[slot] = 0.0, 0
        self._line[slot], self._line_at[slot], self._by_week[slot], self._lag[slot] = 0.0, 0, False, 0
        self._moves[slot], self._move_hours[slot] = [0.0] * MOVES, [-1] * MOVES
        return slot


_UNBOUNDED = 1 << 62  # (lines a batch may learn when no batch is being read)


def _lag_weekdays() -> np.ndarray:
    """(168 lags, 7 weekdays x 168 hours of the UTC week): 1.0 where, moved by the lag, that hour of the week
    falls on that weekday."""
    lag, hour = np.arange(168)[:, None], np.arange(168)[None, :]
    weekday = (hour - lag) % 168 // 24
    return np.concatenate([(weekday == w).astype(np.float64) for w in range(7)], axis=1)


_LAG_WEEKDAYS = _lag_weekdays()  # (a constant)


def _weekday(hour: T) -> T:
    """The UTC weekday (0 = Monday) of an hour since the epoch (1970-01-01 was a Thursday), or of an array of them."""
    return (hour // 24 + 3) % 7


def _daily_back(weekday: int, days: int, day_types: bool) -> list[int]:
    """Hours back to the same hour of the ``days`` days before a day of ``weekday`` (0 = Monday) that are of its
    type (weekday or weekend) with ``day_types``, else of the days just before it."""
    weekend = weekday >= 5
    back = [k for k in range(1, 7 * days + 1) if not day_types or ((weekday - k) % 7 >= 5) == weekend]
    return [24 * k for k in back[:days]]


def _sd(values: list[float]) -> float:
    """The (population) standard deviation of a few values: plain floats, faster than numpy for 32 and than
    ``statistics.pstdev``, which works in exact fractions."""
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
