"""Brief excursions a device keeps making: a stream's own spikes are how it is, not a fault each time.

A busy system stream spikes now and then for no fault (a burst of requests, a CPU spike to 90% that
is gone in a reading or two, a slow request). Each spike is brief, so a device's line never learns it:
it opens an episode, and windows in an episode are not part of the line's history. ``TransientMemory``
keeps, per device, the last few *brief* excursions over the line (how high, how long) and calls a new
crossing *known* while it is no higher (within ``margin``) than ``min_seen`` of the recent ones, on each
measure that is over its line, and has lasted no longer than the longest of those (plus ``slack``
windows). Heights are the window's verdicts in units of the calibrated line (the model's, the level
check's), not ratios to the device's line, so a line that moves between two spikes does not make the
same spike look different. A known crossing opens no episode; one that outgrows what the device has
shown (higher, or longer: a spike that stays is a pegged CPU, an outage, a shift) opens it as any
other, a few windows late. Crossings of a device that never spiked, or did so fewer than ``min_seen``
times within ``horizon`` windows, are never known: the first spikes open episodes as before, and teach
the memory. Only lone spikes count: an excursion that starts within two window lengths of the previous
one's end (spikes in a burst: an intermittent fault) is neither learnt nor known.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

# An exported excursion: first and last window's end (ms), peak verdicts (model, level check), windows over the
# line, the sensor furthest out at its peak.
_RECORD = struct.Struct("<qqddqq")


@dataclass(frozen=True, slots=True)
class TransientConfig:
    enabled: bool = True
    min_seen: int = 2  # recent brief excursions at least as high that make a crossing known
    horizon: int = 1024  # windows: older excursions are forgotten (in the device's own window interval)
    # Readings an excursion may span and count as brief: it is over the line for at most a window's length
    # plus this many, less one, windows (one reading off stays in ``window`` windows).
    brief_readings: int = 8
    slack: int = 4  # windows a known crossing may outlast the longest of the excursions it matched
    quiet_windows: int = 2  # window lengths of quiet before an excursion for it to count as a lone spike
    keep: int = 16  # brief excursions remembered per device
    margin: float = 1.25  # a crossing up to this many times higher than an excursion still matches it (as the lines' margin)


@dataclass(slots=True)
class _Excursion:
    first_ms: int
    last_ms: int
    model: float  # the highest verdicts of its windows, in units of the calibrated lines
    level: float
    windows: int
    feature: int = 0  # the sensor furthest out at its highest window
    isolated: bool = True  # it began long after the device's previous excursion ended


class TransientMemory:
    """Per device: its brief excursions over the line, and whether a crossing matches them."""

    def __init__(self, config: TransientConfig = TransientConfig(), *, window: int = 1) -> None:
        self.config = config
        self.brief = window + config.brief_readings - 1  # windows over the line
        # Quiet windows before an excursion for it to be a lone spike: spikes that come one after another are a
        # burst (an intermittent fault), never learnt nor known, however brief each is.
        self.quiet = config.quiet_windows * window
        self._current: dict[str, _Excursion] = {}
        self._past: dict[str, deque[_Excursion]] = {}

    def crossing(
        self, device_id: str, at_ms: int, model: float, level: float, interval_ms: float, *,
        model_over: bool = True, level_over: bool = False, feature: int = 0, match: bool = True,
    ) -> bool:  # fmt: skip
        """Note a window over the line at ``at_ms`` (its ``model`` and ``level`` verdicts, 1.0 = calibrated
        line; which of them is over the device's line; ``feature``: the sensor furthest out); True if it
        matches the device's brief excursions: on the same sensor, and on each measure over its line no
        higher than they went. ``match=False`` only notes it (a window of an open episode: nothing to open)."""
        config = self.config
        if not config.enabled:
            return False
        gap = 3 * interval_ms if interval_ms > 0 else 0
        now = self._current.get(device_id)
        if now is not None and at_ms - now.last_ms <= gap:
            now.last_ms, now.windows = at_ms, now.windows + 1
            if max(model, level) > max(now.model, now.level):
                now.feature = feature
            now.model, now.level = max(now.model, model), max(now.level, level)
        else:
            isolated = True
            if now is not None:
                self._finish(device_id, now)
                isolated = at_ms - now.last_ms > self.quiet * interval_ms
            now = self._current[device_id] = _Excursion(at_ms, at_ms, model, level, 1, feature, isolated)
        past = self._past.get(device_id)
        if not match or not past or interval_ms <= 0 or not now.isolated:
            return False
        oldest, margin = at_ms - config.horizon * interval_ms, config.margin
        matched = [
            e for e in past
            if e.last_ms >= oldest and e.feature == now.feature
            and (e.model * margin >= now.model or not model_over) and (e.level * margin >= now.level or not level_over)
        ]  # fmt: skip
        return len(matched) >= config.min_seen and now.windows <= max(e.windows for e in matched) + config.slack

    def _finish(self, device_id: str, excursion: _Excursion) -> None:
        if excursion.windows <= self.brief and excursion.isolated:
            past = self._past.get(device_id)
            if past is None:
                past = self._past[device_id] = deque(maxlen=self.config.keep)
            past.append(excursion)

    def export(self, device_id: str) -> bytes | None:
        """The device's remembered brief excursions as bytes (None when it has none), for ``restore``."""
        past = self._past.get(device_id)
        if not past:
            return None
        return b"".join(_RECORD.pack(e.first_ms, e.last_ms, e.model, e.level, e.windows, e.feature) for e in past)

    def restore(self, device_id: str, state: bytes) -> bool:
        """Take up an ``export``ed memory for a device this instance has not met (False, unchanged, for one
        it has). Raises ValueError for bytes that are not one."""
        if device_id in self._past or device_id in self._current or not self.config.enabled:
            return False
        if not state or len(state) % _RECORD.size:
            raise ValueError(f"not a transients state ({len(state)} bytes)")
        past = [_Excursion(*_RECORD.unpack_from(state, at)) for at in range(0, len(state), _RECORD.size)]
        if any(e.windows < 1 or e.feature < 0 or e.last_ms < e.first_ms or not (e.model >= 0 and e.level >= 0) for e in past):
            raise ValueError("not a transients state (inconsistent fields)")
        self._past[device_id] = deque(past, maxlen=self.config.keep)
        return True

    def forget_all(self) -> None:
        """Forget every device's excursions (a model trained afresh measures in other units)."""
        self._current.clear()
        self._past.clear()

    def forget(self, device_id: str) -> None:
        self._current.pop(device_id, None)
        self._past.pop(device_id, None)
