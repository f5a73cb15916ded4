"""``floorwatch simulate``: publish a simulated fleet's readings and its failure labels."""

from __future__ import annotations

import time
from collections.abc import Callable

from stream_app.config.settings import Settings

from .checks import check_message, check_sensors
from .publish import PublishStats, ReadingPublisher, batch_json, paced, reading_json
from .scenarios import FEATURES, Scenario
from .simulator import FleetSimulator


def start_ms_for(duration_s: float, speed: float, now_ms: int) -> int:
    """The first timestamp of a run, so that no reading is stamped later than the moment it is sent.

    Played ``speed`` times faster than real time, simulated time outruns the clock by
    ``duration * (1 - 1/speed)`` over the run: start that much in the past, and the last reading is
    stamped at about the moment it is sent. As fast as possible (0), the run ends now.
    """
    if speed <= 0:
        return now_ms - int(duration_s * 1000)
    return now_ms - int(duration_s * 1000 * max(0.0, 1.0 - 1.0 / speed))


def run_simulation(
    settings: Settings, scenario: Scenario, *, start_ms: int, speed: float = 0.0, batch: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[PublishStats, FleetSimulator]:
    """Publish every tick of ``scenario``; ``batch`` > 1 uses the batched message form;
    ``on_progress(readings, total)`` after each tick."""
    sim = FleetSimulator(scenario, start_ms)
    # Checked before anything is published: device ids (all share one pattern), and every model's sensors.
    check_message(reading_json(sim.device_ids[-1], start_ms, dict.fromkeys(FEATURES, 0.0)), f"device {sim.device_ids[-1]!r}")
    check_sensors(settings, sim.device_ids, FEATURES, "the simulator")
    publisher = ReadingPublisher(settings)
    publisher.publish_labels(sim.labels())
    stats = PublishStats(last_ts_ms={})
    pending: dict[str, list[tuple[int, dict[str, float]]]] = {d: [] for d in sim.device_ids}
    started = time.perf_counter()
    total = scenario.ticks * len(sim.device_ids)
    for ts, values in paced(sim.ticks(), speed):
        rows = values.tolist()
        for device_id, row in zip(sim.device_ids, rows):
            sample = dict(zip(FEATURES, row))
            if batch <= 1:
                publisher.send(device_id, reading_json(device_id, ts, sample))
                stats.messages += 1
            else:
                pending[device_id].append((ts, sample))
                if len(pending[device_id]) >= batch:
                    publisher.send(device_id, batch_json(device_id, pending[device_id]))
                    pending[device_id] = []
                    stats.messages += 1
        stats.readings += len(rows)
        publisher.poll()
        if on_progress is not None:
            on_progress(stats.readings, total)
    for device_id, left in pending.items():
        if left:
            publisher.send(device_id, batch_json(device_id, left))
            stats.messages += 1
    publisher.flush()
    stats.seconds = time.perf_counter() - started
    stats.last_ts_ms = {d: sim.start_ms + int(round((scenario.ticks - 1) * sim.period_ms)) for d in sim.device_ids}
    return stats, sim
