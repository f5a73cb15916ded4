"""Broker faults on a three-node Apache Kafka cluster under load: kill -9 of the readings' partition
leader, a broker restart, a rolling restart of all three.

Topics are replicated three times, producers use ``acks=all`` (idempotent) and writes need two
in-sync replicas; the worker runs the ``kafka`` profile (a transaction per batch). Each drill counts
readings lost (published vs. on the topic after the run), readings skipped by the worker, alerts lost,
duplicate alert records on the topic and in Redis, and the longest time scoring stood still after the
fault (the worker's readings counter sampled every 0.2 s while readings kept coming).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import AdminClient

from producers.scenarios import Failure, FailureKind, Scenario
from stream_app.lab.kafka_local import KafkaCluster
from stream_app.config.settings import Settings
from tests.support.services import require_kafka
from tests.support.services import topic_messages, wait_scored

from stream_app.lab.harness import WorkerProcess

from .drills import Drill
from .drills import BackgroundRun, tally

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SPEED = 20.0  # simulated seconds per wall second
FAULT_AT = 200.0  # simulated seconds into the run
INTERNAL = ("__consumer_offsets", "__transaction_state")


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    require_kafka()
    cluster = KafkaCluster(tmp_path_factory.mktemp("kafka3"), nodes=3)
    cluster.start(timeout_s=180)
    yield cluster
    cluster.stop()


class Progress(threading.Thread):
    """The worker's readings counter, sampled every ``period_s``."""

    def __init__(self, worker: WorkerProcess, period_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.worker, self.period_s = worker, period_s
        self.samples: list[tuple[float, float]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.samples.append((time.monotonic(), self.worker.counter("readings")))
            except OSError:
                pass
            self._stop_event.wait(self.period_s)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)

    def longest_stall(self, since: float, until: float) -> float:
        """Longest time in [since, until] during which the counter did not move."""
        moves = [t for (t, v), (_, before) in zip(self.samples[1:], self.samples) if v > before and since <= t <= until]
        edges = [since, *moves, until]
        return max(b - a for a, b in zip(edges, edges[1:]))


def _admin(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})


def readings_leaders(settings: Settings) -> Counter[int]:
    """Node id -> how many readings partitions it leads."""
    topic = _admin(settings).list_topics(settings.readings_topic, timeout=10).topics[settings.readings_topic]
    return Counter(p.leader for p in topic.partitions.values())


def wait_fully_replicated(settings: Settings, timeout_s: float = 120) -> float:
    """Until every partition of our topics and the internal ones has all its replicas in sync; seconds waited."""
    started = time.monotonic()
    topics = (settings.readings_topic, settings.alerts_topic, settings.dlq_topic, *INTERNAL)
    while True:
        meta = _admin(settings).list_topics(timeout=10).topics
        partitions = [p for name in topics if name in meta for p in meta[name].partitions.values()]
        if partitions and all(len(p.isrs) == len(p.replicas) for p in partitions):
            return time.monotonic() - started
        assert time.monotonic() - started < timeout_s, "replicas did not catch up"
        time.sleep(0.5)


def readings_on_topic(settings: Settings, prefix: str) -> int:
    values = topic_messages(settings, settings.readings_topic, idle_s=3.0)
    return sum(1 for v in values if orjson.loads(v).get("device_id", "").startswith(prefix))


def _leader_kill(cluster: KafkaCluster, drill: Drill) -> str:
    leader, led = readings_leaders(drill.settings).most_common(1)[0]
    cluster.stop_node(leader, kill=True)
    return f"kill -9 of node {leader} (leader of {led} of {drill.settings.readings_partitions} readings partitions); stays down"


def _broker_restart(cluster: KafkaCluster, drill: Drill) -> str:
    leader, led = readings_leaders(drill.settings).most_common(1)[0]
    cluster.stop_node(leader)
    cluster.start_node(leader)
    return f"node {leader} (leader of {led} readings partitions) stopped (SIGTERM) and started again"


def _rolling_restart(cluster: KafkaCluster, drill: Drill) -> str:
    for node in (1, 2, 3):
        cluster.stop_node(node)
        cluster.start_node(node)
        wait_fully_replicated(drill.settings)  # as an operator would: the next one only once replicas caught up
    return "nodes 1, 2, 3 in turn: SIGTERM, start, wait until every replica is in sync"


FAULTS: dict[str, Callable[[KafkaCluster, Drill], str]] = {
    "leader kill -9": _leader_kill,
    "broker restart": _broker_restart,
    "rolling restart": _rolling_restart,
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_three_node_cluster_fault(cluster3: KafkaCluster, drill_factory, record, fault: str, tmp_path: Path) -> None:
    drill = drill_factory(fault.split()[0], broker="kafka", cluster=cluster3)
    settings = drill.settings
    prefix = {"leader kill -9": "lk", "broker restart": "bk", "rolling restart": "rr"}[fault]
    worker = drill.start_worker()
    drill.wait_consuming([worker])
    probes = worker.counter("readings")
    scenario = Scenario(
        devices=12,
        device_prefix=prefix,
        duration_s=1800,
        seed=17,
        failures=[
            Failure(device=1, kind=FailureKind.power_surge, start_s=60, duration_s=80, magnitude=0.01),
            # Open across the fault.
            Failure(device=4, kind=FailureKind.overheating, start_s=180, duration_s=120, magnitude=0.01),
            Failure(device=7, kind=FailureKind.power_surge, start_s=600, duration_s=100, magnitude=0.01),
            Failure(device=10, kind=FailureKind.overheating, start_s=1300, duration_s=100, magnitude=0.01),
        ],
    )
    progress = Progress(worker)
    progress.start()
    run = BackgroundRun(settings, scenario, speed=SPEED)
    run.start()
    try:
        run.wait_sim(FAULT_AT)
        fault_at = time.monotonic()
        what = FAULTS[fault](cluster3, drill)
        fault_s = time.monotonic() - fault_at
        stats, sim = run.finish()
        published_until = time.monotonic()
        wait_scored(settings, stats.last_ts_ms or {}, timeout_s=180)
        all_scored = time.monotonic()
    finally:
        progress.stop()
        if cluster3.state() is None:  # a node left down by the drill: back for the next one
            for node in (1, 2, 3):
                cluster3.start_node(node)
            wait_fully_replicated(settings)
    consumed = worker.counter("readings") - probes
    on_topic = readings_on_topic(settings, prefix + "-")
    t = tally(settings, sim, prefix)
    record(
        f"Apache Kafka, 3 nodes: {fault}",
        load=f"12 devices, {stats.readings} readings at {SPEED:.0f}x real time, {settings.readings_partitions} partitions x 3 replicas, acks=all, "
        "min.insync.replicas=2, 1 worker (transactions on)",
        faults=what,
        fault_action_s=round(fault_s, 1),
        readings_published=stats.readings,
        readings_on_topic=on_topic,
        readings_lost=stats.readings - on_topic,
        readings_consumed=consumed,
        longest_scoring_stall_s=round(progress.longest_stall(fault_at, published_until), 1),
        last_published_to_all_scored_s=round(all_scored - published_until, 1),
        **t.figures(),
    )
    assert on_topic == stats.readings, "readings lost"
    assert consumed >= stats.readings, "readings skipped by the worker"
    assert t.delivered == t.expected and t.missing_in_redis == 0
    assert t.topic_duplicates == 0 and t.redis_duplicates == 0
    assert all(n == 1 for n in t.episodes_per_failure.values()), t.episodes_per_failure
    assert t.false_episodes == 0
