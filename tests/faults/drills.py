"""Shared steps of the fault drills: a drill's own topics and workers, publishing in the background, counting alerts."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from producers.fleet import run_simulation
from producers.publish import PublishStats, ReadingPublisher, reading_json
from producers.scenarios import Scenario
from producers.simulator import FleetSimulator
from stream_app.config.settings import Settings
from stream_app.lab.harness import WorkerProcess
from tests.support.services import NORMAL, redis_alerts, topic_alerts


@dataclass
class Drill:
    """One fault scenario's own topics, group and Redis prefix, and its worker processes."""

    name: str
    settings: Settings
    workdir: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    def start_worker(self) -> WorkerProcess:
        own = self.settings.model_copy(update={"state_dir": self.workdir / "state", "log_level": "info"})
        worker = WorkerProcess(own, self.workdir / f"worker-{len(self.workers)}.log")
        self.workers.append(worker)
        return worker

    def wait_consuming(self, workers: list[WorkerProcess], timeout_s: float = 120) -> None:
        """Send noisy probe readings to every partition until each worker has consumed some lately."""
        for w in workers:
            w.wait_ready(timeout_s)
        publisher = ReadingPublisher(self.settings)
        rng = np.random.default_rng(0)
        ts = int(time.time() * 1000) - 3_600_000
        deadline = time.monotonic() + timeout_s
        streak = 0
        while streak < 2:
            assert time.monotonic() < deadline, "workers not consuming:\n" + "\n".join(w.tail() for w in workers)
            before = [w.counter("messages") for w in workers]
            ts += 1000
            for i in range(4 * self.settings.readings_partitions):
                noisy = {k: v + float(rng.normal(0, 0.0005)) for k, v in NORMAL.items()}
                publisher.send(f"probe-{i:02d}", reading_json(f"probe-{i:02d}", ts, noisy))
            publisher.flush()
            time.sleep(1.0)
            moved = all(w.counter("messages") > b for w, b in zip(workers, before))
            streak = streak + 1 if moved else 0

    def stop_all(self) -> None:
        for w in self.workers:
            w.stop()


class BackgroundRun(threading.Thread):
    """``run_simulation`` paced at ``speed`` in a thread, so the test can inject faults meanwhile."""

    def __init__(self, settings: Settings, scenario: Scenario, *, speed: float) -> None:
        super().__init__(daemon=True)
        self.settings, self.scenario, self.speed = settings, scenario, speed
        # Timestamps end about now, so none is in the future for the worker.
        self.start_ms = int(time.time() * 1000) - int(scenario.duration_s * 1000)
        self.stats: PublishStats | None = None
        self.sim: FleetSimulator | None = None
        self.error: BaseException | None = None
        self.started_at = 0.0

    def run(self) -> None:
        self.started_at = time.monotonic()
        try:
            self.stats, self.sim = run_simulation(self.settings, self.scenario, start_ms=self.start_ms, speed=self.speed)
        except BaseException as exc:  # surfaced by finish()
            self.error = exc

    def sim_s(self) -> float:
        """Simulated seconds published so far."""
        return (time.monotonic() - self.started_at) * self.speed

    def wait_sim(self, seconds: float) -> None:
        while self.sim_s() < seconds:
            time.sleep(0.05)

    def finish(self, timeout_s: float = 300) -> tuple[PublishStats, FleetSimulator]:
        self.join(timeout_s)
        assert not self.is_alive(), "publishing did not finish"
        if self.error is not None:
            raise self.error
        assert self.stats is not None and self.sim is not None
        return self.stats, self.sim


@dataclass
class Tally:
    expected: int  # injected failures
    delivered: int  # failures with at least one open episode (topic, ids de-duplicated)
    topic_alerts: int  # alert records on the topic, duplicates included
    topic_duplicates: int  # records whose alert_id was already on the topic
    redis_alerts: int
    redis_duplicates: int
    missing_in_redis: int  # alert ids on the topic but not in Redis
    episodes_per_failure: dict[str, int]  # device -> distinct open episodes (topic)
    redis_episodes_per_failure: dict[str, int]
    false_episodes: int  # open episodes on devices without a failure
    extra_episodes: int  # episodes beyond one per failure

    def figures(self) -> dict[str, object]:
        return dict(self.__dict__)


def tally(settings: Settings, sim: FleetSimulator, prefix: str) -> Tally:
    on_topic = topic_alerts(settings, prefix + "-")
    in_redis = redis_alerts(settings, prefix + "-")
    unique = {a.alert_id: a for a in on_topic}
    failed = {label.device_id for label in sim.labels()}

    def episodes(alerts, device: str) -> int:  # type: ignore[no-untyped-def]
        return len({a.episode.episode_id for a in alerts if a.device_id == device and a.episode.state == "open"})

    per_failure = {d: episodes(unique.values(), d) for d in sorted(failed)}
    redis_per_failure = {d: episodes(in_redis, d) for d in sorted(failed)}
    false = len({a.episode.episode_id for a in unique.values() if a.device_id not in failed and a.episode.state == "open"})
    return Tally(
        expected=len(failed),
        delivered=sum(1 for n in per_failure.values() if n >= 1),
        topic_alerts=len(on_topic),
        topic_duplicates=len(on_topic) - len(unique),
        redis_alerts=len(in_redis),
        redis_duplicates=len(in_redis) - len({a.alert_id for a in in_redis}),
        missing_in_redis=len(set(unique) - {a.alert_id for a in in_redis}),
        episodes_per_failure=per_failure,
        redis_episodes_per_failure=redis_per_failure,
        false_episodes=false,
        extra_episodes=sum(max(0, n - 1) for n in per_failure.values()),
    )


def kafka_partition(key: bytes, partitions: int) -> int:
    """The partition Java clients, kafkajs and our murmur2_random producers pick for ``key``."""
    m, h = 0x5BD1E995, (0x9747B28C ^ len(key)) & 0xFFFFFFFF
    for i in range(0, len(key) - len(key) % 4, 4):
        k = int.from_bytes(key[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = key[len(key) - len(key) % 4 :]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h = ((h ^ tail[0]) * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions


def assigned_partitions(log_text: str) -> set[int]:
    """The readings partitions of the last assignment a worker logged (see ``consume.py``)."""
    found = re.findall(r"readings partitions assigned: \[([\d, ]*)\]", log_text)
    return {int(p) for p in found[-1].split(",") if p.strip()} if found else set()
