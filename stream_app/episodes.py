"""Step 5: turn a stream of per-window verdicts into alert episodes, so one failure is one alert.

Each window arrives as one ratio: how far it is from normal, where 1.0 is the alerting line
(the largest of score / threshold and the level checks). An episode opens after ``open_after``
consecutive windows above 1.0 and closes after ``close_after`` consecutive quiet windows, quiet
meaning below ``close_ratio`` (hysteresis: a window hovering at the line does not flap).
Episode ids derive from the data (device and the time of the first anomalous window), so
reprocessing the same readings yields the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class EpisodeRule:
    open_after: int = 3
    close_after: int = 30
    close_ratio: float = 0.8


@dataclass(frozen=True, slots=True)
class Transition:
    """An episode opened or closed at the window ending ``at_ms``."""

    kind: Literal["open", "closed"]
    episode_id: str
    started_ms: int
    ended_ms: int | None
    peak_score: float
    windows: int


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
    run_quiet: int = 0
    episode_id: str | None = None
    started_ms: int = 0
    last_anomalous_ms: int = 0
    peak: float = 0.0
    windows: int = 0


class EpisodeTracker:
    def __init__(self, rule: EpisodeRule) -> None:
        self.rule = rule
        self._devices: dict[str, _DeviceState] = {}

    def is_open(self, device_id: str) -> bool:
        state = self._devices.get(device_id)
        return state is not None and state.episode_id is not None

    def open_episodes(self) -> dict[str, str]:
        return {d: s.episode_id for d, s in self._devices.items() if s.episode_id is not None}

    def knows(self, device_id: str) -> bool:
        return device_id in self._devices

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

    def update(self, device_id: str, at_ms: int, ratio: float) -> Transition | None:
        """Feed one window's ratio (1.0 = the alerting line); return the transition it causes, if any."""
        state = self._devices.get(device_id)
        if state is None:
            state = self._devices[device_id] = _DeviceState()
        if state.episode_id is None and state.resumed is not None and at_ms >= state.resumed.started_ms:
            ep, state.resumed = state.resumed, None
            state.episode_id, state.started_ms, state.peak, state.windows = ep.episode_id, ep.started_ms, ep.peak, ep.windows
            state.last_anomalous_ms, state.run_above, state.run_quiet = at_ms, 0, 0
        if state.episode_id is None:
            return self._while_normal(device_id, state, at_ms, ratio)
        return self._while_open(state, at_ms, ratio)

    def _while_normal(self, device_id: str, state: _DeviceState, at_ms: int, score: float) -> Transition | None:
        if score <= 1.0:
            state.run_above = 0
            return None
        if state.run_above == 0:
            state.run_start_ms = at_ms
            state.peak = score
        state.run_above += 1
        state.peak = max(state.peak, score)
        if state.run_above < self.rule.open_after:
            return None
        state.episode_id = f"{device_id}@{state.run_start_ms}"
        state.resumed = None  # it opened here: whatever was resumed is this episode or one before it
        state.started_ms = state.run_start_ms
        state.last_anomalous_ms = at_ms
        state.windows = state.run_above
        state.run_above = state.run_quiet = 0
        return Transition("open", state.episode_id, state.started_ms, None, state.peak, state.windows)

    def _while_open(self, state: _DeviceState, at_ms: int, score: float) -> Transition | None:
        state.windows += 1
        state.peak = max(state.peak, score)
        if score >= self.rule.close_ratio:
            state.run_quiet = 0
            if score > 1.0:
                state.last_anomalous_ms = at_ms
            return None
        state.run_quiet += 1
        if state.run_quiet < self.rule.close_after:
            return None
        closed = Transition(
            "closed", state.episode_id or "", state.started_ms, state.last_anomalous_ms, state.peak, state.windows
        )
        state.episode_id = None
        state.run_quiet = state.run_above = 0
        return closed
