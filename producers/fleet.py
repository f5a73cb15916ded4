"""``floorwatch simulate``: publish a simulated fleet's readings and its failure labels."""

from __future__ import annotations

import time

from stream_app.settings import Settings

from .publish import PublishStats, ReadingPublisher, batch_json, paced, reading_json
from .scenarios import FEATURES, Scenario
from .simulator import FleetSimulator


def run_simulation(
    settings: Settings, scenario: Scenario, *, start_ms: int, speed: float = 0.0, batch: int = 1
) -> tuple[PublishStats, FleetSimulator]:
    """Publish every tick of ``scenario``; ``batch`` > 1 uses the batched message form."""
    sim = FleetSimulator(scenario, start_ms)
    publisher = ReadingPublisher(settings)
    publisher.publish_labels(sim.labels())
    stats = PublishStats(last_ts_ms={})
    pending: dict[str, list[tuple[int, dict[str, float]]]] = {d: [] for d in sim.device_ids}
    started = time.perf_counter()
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
    for device_id, left in pending.items():
        if left:
            publisher.send(device_id, batch_json(device_id, left))
            stats.messages += 1
    publisher.flush()
    stats.seconds = time.perf_counter() - started
    stats.last_ts_ms = {d: sim.start_ms + int(round((scenario.ticks - 1) * sim.period_ms)) for d in sim.device_ids}
    return stats, sim
