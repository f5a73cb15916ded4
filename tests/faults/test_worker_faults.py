"""Worker faults: kill -9 of one of two workers, and a worker restart."""

from __future__ import annotations

import re
import time

import pytest

from producers.scenarios import Failure, FailureKind, Scenario
from tests.support.services import wait_scored

from .drills import BackgroundRun, assigned_partitions, kafka_partition, tally

pytestmark = pytest.mark.integration

SPEED = 20.0  # simulated seconds per wall second


def _failure(device: int, kind: FailureKind, start_s: float, duration_s: float = 100) -> Failure:
    magnitude = {FailureKind.power_surge: 0.01, FailureKind.overheating: 0.01}[kind]
    return Failure(device=device, kind=kind, start_s=start_s, duration_s=duration_s, magnitude=magnitude)


@pytest.mark.parametrize("broker", ["embedded", "kafka"])
def test_kill9_one_of_two_workers(drill_factory, record, broker: str) -> None:
    # On Apache Kafka (kafka profile) a batch's alerts and offsets commit in one transaction:
    # the killed worker's last batch is aborted, so the topic holds no duplicate record either.
    drill = drill_factory("kill9", broker=broker)
    first, second = drill.start_worker(), drill.start_worker()
    drill.wait_consuming([first, second])
    kill_at = 260.0  # simulated seconds into the run
    scenario = Scenario(
        devices=16,
        device_prefix="k9",
        duration_s=720,
        seed=21,
        # Partitions of k9-NN (murmur2, 4 partitions): 0: 00 06 08 09 11 12, 1: 10 14 15, 2: 02..05 13,
        # 3: 01 07. Each phase has failures on several partitions, so whichever worker dies owns some.
        failures=[
            # Over and closed before the kill.
            _failure(1, FailureKind.power_surge, 60),
            _failure(2, FailureKind.overheating, 70),
            _failure(12, FailureKind.power_surge, 80),
            # Open when the worker dies.
            _failure(0, FailureKind.power_surge, 200),
            _failure(10, FailureKind.overheating, 210),
            _failure(5, FailureKind.power_surge, 220),
            _failure(7, FailureKind.overheating, 230),
            # While the dead worker's partitions wait for the group to notice (6 s session timeout).
            _failure(14, FailureKind.power_surge, 300),
            _failure(9, FailureKind.overheating, 310),
            # After the takeover.
            _failure(11, FailureKind.power_surge, 480),
            _failure(13, FailureKind.overheating, 490),
            _failure(15, FailureKind.power_surge, 500),
        ],
    )
    run = BackgroundRun(drill.settings, scenario, speed=SPEED)
    run.start()
    run.wait_sim(kill_at)
    consumed_by_victim = first.counter("readings")
    victim_partitions = assigned_partitions(first.tail(200_000))
    assert victim_partitions, f"the worker to kill logged no assignment:\n{first.tail()}"
    first.kill9()
    killed_wall = time.monotonic()
    stats, sim = run.finish()
    wait_scored(drill.settings, stats.last_ts_ms or {}, timeout_s=120)
    t = tally(drill.settings, sim, "k9")
    survivor = second.counter("readings")
    spans_kill = {sim.device_ids[f.device] for f in scenario.failures if f.start_s <= kill_at <= f.start_s + f.duration_s + 20}
    record(
        f"kill -9 one of two workers ({broker})",
        load=f"16 devices, {stats.readings} readings at {SPEED:.0f}x real time, 4 partitions, 2 workers",
        faults=f"kill -9 at simulated t={kill_at:.0f}s",
        readings_published=stats.readings,
        readings_consumed_by_killed_worker=consumed_by_victim,
        readings_consumed_by_survivor=survivor,
        reprocessed_after_takeover=consumed_by_victim + survivor - stats.readings,
        kill_to_all_scored_wall_s=round(time.monotonic() - killed_wall, 1),
        killed_worker_partitions=sorted(victim_partitions),
        failures_on_killed_worker=sorted(
            d for d in t.episodes_per_failure if kafka_partition(d.encode(), drill.settings.readings_partitions) in victim_partitions
        ),
        failures_open_at_kill=sorted(spans_kill),
        **t.figures(),
    )
    # Nothing missing: every failure has an episode, on the topic and in Redis, and Redis matches the topic.
    assert t.delivered == t.expected
    assert all(n >= 1 for n in t.redis_episodes_per_failure.values())
    assert t.missing_in_redis == 0 and t.redis_duplicates == 0
    assert t.false_episodes == 0
    if broker == "kafka":
        assert t.topic_duplicates == 0, f"{t.topic_duplicates} duplicate alert records on the topic"
    # Exactly one episode per failure, those open at the kill included: the survivor carries on with
    # the episodes the killed worker left open (their last alert in Redis) instead of opening new ones.
    assert all(n == 1 for n in t.episodes_per_failure.values()), t.episodes_per_failure
    assert all(n == 1 for n in t.redis_episodes_per_failure.values()), t.redis_episodes_per_failure


@pytest.mark.parametrize("broker", ["embedded", pytest.param("kafka", marks=pytest.mark.slow)])
def test_worker_restart_refills_windows(drill_factory, record, broker: str) -> None:
    # Adaptation states saved every second, so the stopped worker's are in Redis for the new one to take up.
    drill = drill_factory("restart", broker=broker, adapt_save_s=1.0)
    old = drill.start_worker()
    drill.wait_consuming([old])
    probes = old.counter("readings")
    restart_at = 160.0
    scenario = Scenario(
        devices=12,
        device_prefix="rs",
        duration_s=480,
        seed=5,
        failures=[
            _failure(2, FailureKind.power_surge, 40),
            # Open across the restart: the new worker must carry on with it, not open a second episode.
            _failure(4, FailureKind.power_surge, 120, duration_s=120),
            _failure(7, FailureKind.overheating, 300),
        ],
    )
    run = BackgroundRun(drill.settings, scenario, speed=SPEED)
    run.start()
    run.wait_sim(restart_at)
    # SIGTERM: faust finishes its batch, commits and leaves the group; its last counters count.
    final = old.stop()
    assert "floorwatch_readings_total" in final, f"the worker logged no final counters:\n{old.tail()}"
    consumed_before = final["floorwatch_readings_total"] - probes
    stopped = time.monotonic()
    new = drill.start_worker()
    stats, sim = run.finish()
    wait_scored(drill.settings, stats.last_ts_ms or {}, timeout_s=180)
    back_after = round(time.monotonic() - stopped, 1)
    consumed_after = new.counter("readings")
    scored_after = new.counter("windows_scored")
    t = tally(drill.settings, sim, "rs")
    window = 8  # the tiny model's T
    taken_up = sum(int(n) for n in re.findall(r"took up the learnt lines of (\d+) device", new.log_text()))
    record(
        f"worker restart (SIGTERM, new process; {broker})",
        load=f"12 devices, {stats.readings} readings at {SPEED:.0f}x real time, 1 worker",
        faults=f"restart at simulated t={restart_at:.0f}s",
        readings_published=stats.readings,
        consumed_before_stop=consumed_before,
        consumed_after_restart=consumed_after,
        rewound=consumed_before + consumed_after - stats.readings,
        unscored_after_restart=consumed_after - scored_after,
        expected_unscored=scenario.devices * (window - 1),
        stop_to_all_scored_wall_s=back_after,
        devices_lines_taken_up=taken_up,
        **t.figures(),
    )
    # Windows come back only by refilling: T-1 readings per device go unscored, no more.
    assert consumed_after - scored_after == scenario.devices * (window - 1)
    assert consumed_before + consumed_after >= stats.readings  # nothing skipped
    # Each device goes on with the lines the stopped worker saved (worker/adaptation.py), not a second warm-up.
    assert taken_up == scenario.devices, new.tail()
    assert t.delivered == t.expected and t.missing_in_redis == 0 and t.redis_duplicates == 0
    assert all(n == 1 for n in t.episodes_per_failure.values()), t.episodes_per_failure
    assert all(n == 1 for n in t.redis_episodes_per_failure.values()), t.redis_episodes_per_failure
