"""Turn a stream of per-window verdicts into alert episodes, so one failure is one alert.

Each window arrives as one ratio: how far it is from normal, where 1.0 is the alerting line.
An episode opens after ``open_after`` consecutive windows above 1.0 (more when they are barely above:
``marginal_ratio``) and closes once the device has
been quiet (below ``close_ratio``: hysteresis, a window hovering at the line does not flap) for
``close_after`` windows or ``close_after_s`` seconds, whichever comes first; the time limit is
counted in the device's own observed window interval, so an hourly stream closes in hours, not
in 30 hours. Three more rules keep an episode honest:

- **a new fault is never hidden**: once an open episode has been quiet for half its closing
  stretch, a fresh run of ``open_after`` anomalous windows closes it and opens a new one; so does a
  run of ``open_after`` windows ``escalate_factor`` times further from normal than the episode's
  settled peak, or a failed check in an episode the model opened (a large fault, or a sensor that
  stops, inside an episode a small one opened);
- **severity escalates while open**: crossing into ``major`` or ``critical`` emits an ``update``;
- **an episode has a maximum length** (``max_duration_s``): past it the episode closes and the
  behaviour is taken as the device's new normal (the caller relearns its line; see detector.py).

Episode ids derive from the data (device and the time of the first anomalous window), so
reprocessing the same readings yields the same ids.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from stream_app.pipeline.thresholds import severity


@dataclass(frozen=True, slots=True)
class EpisodeRule:
    open_after: int = 3
    close_after: int = 30
    close_ratio: float = 0.8
    # Quiet this long also closes (at least ``min(open_after, close_after)`` windows): on a slow stream
    # 30 windows can be days. 0 disables the time limit.
    close_after_s: float = 900.0
    # An episode open this long closes: a condition that lasts is the new normal, not an incident. 0: no limit.
    max_duration_s: float = 6 * 3600.0
    # A new fault inside an open episode, quiet stretch or not: a run this many times the peak the
    # episode had ``escalate_lag`` to twice that many windows earlier (so never within its first
    # 2 x lag windows: a fault takes a window's length to show in full, and its own growth is an
    # update, not a new fault), or a failed check (a stop) in an episode the model opened. 0: never.
    escalate_factor: float = 2.0
    escalate_lag: int = 16
    # A run that barely crosses the line is mostly noise on the line's edge (on streams nobody tuned for, most
    # false openings were under 1.2 x the line, most true ones far over): it opens once its windows add up to
    # ``open_after`` windows at this ratio (their log-ratios summed), or after ``marginal_windows`` x
    # ``open_after`` windows over the line whatever their size. 1.0: every run opens after ``open_after``.
    marginal_ratio: float = 1.2
    marginal_windows: int = 4

    def quiet_windows(self, interval_ms: float) -> int:
        """Quiet windows that close an episode, for a device whose windows come every ``interval_ms``."""
        if self.close_after_s <= 0 or interval_ms <= 0:
            return self.close_after
        by_time = math.ceil(self.close_after_s * 1000 / interval_ms)
        return max(min(self.open_after, self.close_after), min(self.close_after, by_time))


TransitionKind = Literal["open", "update", "closed"]


@dataclass(frozen=True, slots=True)
class Transition:
    """An episode opened, escalated or closed at the window ending ``at_ms``."""

    kind: TransitionKind
    episode_id: str
    started_ms: int
    ended_ms: int | None
    peak_score: float
    windows: int
    # Why a closed episode closed: "quiet", "new episode" (a new fault follows a quiet stretch),
    # "superseded" (a far larger fault, or a stopped sensor, follows at once), "max duration".
    reason: str = ""


@dataclass(frozen=True, slots=True)
class OpenEpisode:
    """An episode another worker had open for a device (from its last alert), to carry on with."""

    episode_id: str
    started_ms: int
    peak: float
    windows: int


@dataclass(slots=True)
class _DeviceState:
    # Set by ``resume``: adopted at the first window that ends at or after its start.
    resumed: OpenEpisode | None = None
    run_above: int = 0
    run_start_ms: int = 0
    run_peak: float = 0.0
    run_evidence: float = 0.0  # the run's log-ratios summed (``marginal_ratio``)
    run_quiet: int = 0
    run_escalated: bool = False  # the run counted in an open episode is far above its earlier peak
    base_peak: float = 0.0  # the open episode's peak lag to 2 x lag windows ago (0: not that old yet)
    next_base: float = 0.0  # its peak at the last checkpoint (every lag windows)
    episode_id: str | None = None
    started_ms: int = 0
    last_anomalous_ms: int = 0
    peak: float = 0.0
    windows: int = 0
    reported: str = "warning"  # the severity last reported for the open episode
    last_at_ms: int = -1
    interval_ms: float = 0.0  # EWMA of the time between this device's windows

    def tick(self, at_ms: int) -> None:
        """A window ending at ``at_ms``: the device's window clock and its typical interval."""
        if self.last_at_ms >= 0 and at_ms > self.last_at_ms:
            step = at_ms - self.last_at_ms
            self.interval_ms = step if self.interval_ms == 0 else 0.9 * self.interval_ms + 0.1 * step
        self.last_at_ms = at_ms


class EpisodeTracker:
    def __init__(self, rule: EpisodeRule) -> None:
        self.rule = rule
        self._devices: dict[str, _DeviceState] = {}

    def is_open(self, device_id: str) -> bool:
        state = self._devices.get(device_id)
        return state is not None and state.episode_id is not None

    def open_episodes(self) -> dict[str, str]:
        return {d: s.episode_id for d, s in self._devices.items() if s.episode_id is not None}

    def open_episodes_of(self, device_id: str) -> str | None:
        """The id of the device's open episode, if any."""
        state = self._devices.get(device_id)
        return None if state is None else state.episode_id

    def holding(self, device_id: str) -> bool:
        """Whether the device's run over the line is long enough to open but held back as marginal
        (``marginal_ratio``): its windows are what an episode's would have been."""
        state = self._devices.get(device_id)
        return state is not None and state.episode_id is None and state.run_above >= self.rule.open_after

    def knows(self, device_id: str) -> bool:
        return device_id in self._devices

    def forget(self, device_id: str) -> None:
        self._devices.pop(device_id, None)

    def interval_ms(self, device_id: str) -> float:
        """The device's typical time between windows (0 until two windows were seen)."""
        state = self._devices.get(device_id)
        return state.interval_ms if state is not None else 0.0

    def resume(self, device_id: str, episode: OpenEpisode) -> None:
        """Carry on with an episode that was open when the device's previous worker stopped.

        The new worker re-reads the readings since the last commit with empty windows, so it may
        not see the episode's opening again (its first windows come T-1 readings late). Its first
        window that ends at or after the episode's start joins the episode, with its id, instead of
        opening another one; if it opens the same episode by itself before that, nothing changes.
        """
        if self.knows(device_id):
            return  # this worker has its own state for the device: it is authoritative
        self._devices[device_id] = _DeviceState(resumed=episode)

    def update(self, device_id: str, at_ms: int, ratio: float) -> list[Transition]:
        """Feed one window's ratio (1.0 = the alerting line); return the transitions it causes (usually none)."""
        state = self._devices.get(device_id)
        if state is None:
            state = self._devices[device_id] = _DeviceState()
        state.tick(at_ms)
        if state.episode_id is None and state.resumed is not None and at_ms >= state.resumed.started_ms:
            ep, state.resumed = state.resumed, None
            state.episode_id, state.started_ms, state.peak, state.windows = ep.episode_id, ep.started_ms, ep.peak, ep.windows
            state.reported = severity(ep.peak)
            state.base_peak = state.next_base = 0.0
            state.last_anomalous_ms, state.run_above, state.run_quiet = at_ms, 0, 0
        if state.episode_id is None:
            opened = self._run(device_id, state, at_ms, ratio)
            return [opened] if opened is not None else []
        return self._while_open(device_id, state, at_ms, ratio)

    def update_quiet(self, device_ids: Sequence[str], at_ms: Sequence[int]) -> list[bool]:
        """``update`` with a quiet ratio (<= 1.0) for each device that has no episode open, resumed or
        pending (no run over the line): there it changes nothing but the device's window clock, and
        returns True. Others are left as they are (False): their window goes through ``update``.
        Each device at most once."""
        devices, handled = self._devices, []
        for device_id, at in zip(device_ids, at_ms):
            state = devices.get(device_id)
            if state is None:
                state = devices[device_id] = _DeviceState()
            elif state.episode_id is not None or state.resumed is not None or state.run_above:
                handled.append(False)
                continue
            state.tick(at)
            handled.append(True)
        return handled

    def _run(self, device_id: str, state: _DeviceState, at_ms: int, ratio: float) -> Transition | None:
        """Count a run of anomalous windows; open an episode when it is long enough."""
        if ratio <= 1.0:
            state.run_above = 0
            return None
        if state.run_above == 0:
            state.run_start_ms = at_ms
            state.run_peak = ratio
            state.run_evidence = 0.0
        state.run_above += 1
        state.run_peak = max(state.run_peak, ratio)
        state.run_evidence += math.log(min(ratio, _RATIO_CAP))
        rule = self.rule
        if state.run_above < rule.open_after:
            return None
        if state.run_evidence < rule.open_after * math.log(rule.marginal_ratio) and state.run_above < rule.marginal_windows * rule.open_after:
            return None  # (barely over the line so far: more windows first)
        state.resumed = None  # it opened here: whatever was resumed is this episode or one before it
        return self._open(device_id, state, at_ms)

    @staticmethod
    def _open(device_id: str, state: _DeviceState, at_ms: int) -> Transition:
        """The run counted so far becomes an open episode."""
        state.episode_id = f"{device_id}@{state.run_start_ms}"
        state.started_ms = state.run_start_ms
        state.last_anomalous_ms = at_ms
        state.windows = state.run_above
        state.peak = state.run_peak
        state.base_peak = state.next_base = 0.0
        state.reported = severity(state.peak)
        state.run_above = state.run_quiet = 0
        return Transition("open", state.episode_id, state.started_ms, None, state.peak, state.windows)

    def _while_open(self, device_id: str, state: _DeviceState, at_ms: int, ratio: float) -> list[Transition]:
        quiet_needed = self.rule.quiet_windows(state.interval_ms)
        after_quiet = ratio > 1.0 and state.run_quiet >= max(self.rule.open_after, quiet_needed // 2)
        if state.windows % max(1, self.rule.escalate_lag) == 0:
            state.base_peak, state.next_base = state.next_base, state.peak
        escalated = self.rule.escalate_factor > 0 and (
            (state.base_peak > 0 and ratio > self.rule.escalate_factor * max(state.base_peak, 1.0))
            or (ratio == math.inf and state.peak < math.inf)
        )
        if after_quiet or escalated:
            # A new anomalous run after a quiet stretch, or far above anything this episode showed: it
            # may be a new fault. Count it apart (the episode's peak stays what it was), and if it grows
            # long enough, it gets its own episode rather than hiding in the old one.
            if state.run_above == 0:
                state.run_start_ms, state.run_peak, state.run_escalated = at_ms, ratio, escalated
            state.run_above += 1
            state.run_peak = max(state.run_peak, ratio)
            if state.run_above >= self.rule.open_after:
                closed = self._close(state, "superseded" if state.run_escalated else "new episode")
                return [closed, self._open(device_id, state, at_ms)]
            state.windows += 1
            return []
        state.run_above = 0
        state.windows += 1
        out: list[Transition] = []
        if ratio >= self.rule.close_ratio:
            state.run_quiet = 0
            if ratio > 1.0:
                state.last_anomalous_ms = at_ms
                state.peak = max(state.peak, ratio)
                level = severity(state.peak)
                if _RANK[level] > _RANK[state.reported]:
                    state.reported = level
                    out.append(Transition("update", state.episode_id or "", state.started_ms, None, state.peak, state.windows))
        else:
            state.run_quiet += 1
            if state.run_quiet >= quiet_needed:
                return [self._close(state, "quiet")]
        limit = self.rule.max_duration_s * 1000
        if limit > 0 and at_ms - state.started_ms >= limit:
            out.append(self._close(state, "max duration", ended_ms=at_ms))
        return out

    def _close(self, state: _DeviceState, reason: str, *, ended_ms: int | None = None) -> Transition:
        closed = Transition(
            "closed", state.episode_id or "", state.started_ms, ended_ms or state.last_anomalous_ms, state.peak,
            state.windows, reason,
        )  # fmt: skip
        state.episode_id = None
        state.run_quiet = state.run_above = 0
        return closed


_RANK = {"warning": 0, "major": 1, "critical": 2}
_RATIO_CAP = 1e6  # (a failed check's ratio is infinite: counted as this)
