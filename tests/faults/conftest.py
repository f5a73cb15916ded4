"""Fault drills against the real embedded broker and Redis, with worker subprocesses we can kill.

Each test gets its own topics, consumer group and Redis prefix (a ``Drill``), so drills never see
each other's readings or alerts. Figures are printed and, if ``FLOORWATCH_FAULTS_RESULTS`` names a
file, appended to it as one JSON line per scenario.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import pytest
from pydantic import SecretStr

from producers.publish import ReadingPublisher, reading_json
from stream_app.lab.bench_stats import prometheus_values, rss_mb
from stream_app.lab.embedded import EmbeddedServices, free_port
from stream_app.config.settings import Settings
from stream_app.worker.topics import ensure_topics

NORMAL = {"temperature": 0.06, "vibration": 0.075, "motor_rpm": 0.045, "motor_amps": 0.084}


@pytest.fixture(scope="session")
def fault_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServices]:
    embedded = EmbeddedServices(tmp_path_factory.mktemp("fault-services"), kafka_port=free_port(), redis_port=free_port())
    embedded.start()
    yield embedded
    embedded.stop()


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    metrics_port: int
    log: Path

    def metrics(self) -> dict[str, float]:
        """The worker's Prometheus samples (name -> value, labelled ones summed)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as response:
            return prometheus_values(response.read().decode())

    def counter(self, name: str) -> float:
        return self.metrics().get(f"floorwatch_{name}_total", 0.0)

    def rss_mb(self) -> float:
        return rss_mb(self.process.pid)

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> dict[str, float]:
        """SIGTERM; once the process has exited, its final counters from the line it logs on the way out.

        Faust finishes its current batch and commits after SIGTERM, so counters read before the
        signal would miss readings it still consumed, and the metrics endpoint may close first.
        """
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        lines = [line for line in self.log.read_text(errors="replace").splitlines() if "worker stopped: " in line]
        return json.loads(lines[-1].split("worker stopped: ", 1)[1]) if lines else {}  # none after kill -9

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


@dataclass
class Drill:
    """One fault scenario's own topics, group and Redis prefix, and its worker processes."""

    name: str
    settings: Settings
    workdir: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    def env(self, metrics_port: int) -> dict[str, str]:
        own = {"state_dir": self.workdir / "state", "metrics_port": metrics_port, "log_level": "info"}
        return {**os.environ, **self.settings.model_copy(update=own).as_env()}

    def start_worker(self) -> WorkerProcess:
        port = free_port()
        log = self.workdir / f"worker-{len(self.workers)}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "stream_app", "worker"], env=self.env(port), stdout=out, stderr=subprocess.STDOUT
            )
        worker = WorkerProcess(process, port, log)
        self.workers.append(worker)
        return worker

    def wait_metrics(self, worker: WorkerProcess, timeout_s: float = 120) -> None:
        """Until the worker's model is compiled and its metrics endpoint answers."""
        deadline = time.monotonic() + timeout_s
        while True:
            assert worker.process.poll() is None, f"worker exited:\n{worker.tail()}"
            try:
                worker.metrics()
                return
            except OSError:
                assert time.monotonic() < deadline, f"worker not up:\n{worker.tail()}"
                time.sleep(0.5)

    def wait_consuming(self, workers: list[WorkerProcess], timeout_s: float = 120) -> None:
        """Send noisy probe readings to every partition until each worker has consumed some lately."""
        for w in workers:
            self.wait_metrics(w, timeout_s)
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


@pytest.fixture
def drill_factory(
    request: pytest.FixtureRequest, fault_services: EmbeddedServices, tiny_model_dir: Path, tmp_path: Path
) -> Iterator[Callable[..., Drill]]:
    drills: list[Drill] = []

    def make(
        name: str, services: EmbeddedServices | None = None, broker: str = "embedded", cluster: object = None,
        **overrides: object,
    ) -> Drill:
        """A drill on the embedded broker, or on Apache Kafka (``broker="kafka"``: the session's one-node
        cluster, or ``cluster``); Redis is the embedded services' either way."""
        state = (services or fault_services).state()
        assert state is not None
        bootstrap, profile = state.bootstrap_servers, "embedded"
        if broker == "kafka":
            kafka = cluster if cluster is not None else request.getfixturevalue("kafka_cluster")
            bootstrap, profile = kafka.state().bootstrap_servers, "kafka"  # type: ignore[attr-defined]
        unique = f"{name}-{time.time_ns() % 10**9}"
        settings = Settings(
            kafka_bootstrap_servers=bootstrap,
            redis_url=SecretStr(state.redis_url),
            kafka_profile=profile,
            model_dir=tiny_model_dir,
            app_id=f"fw-{unique}",
            readings_topic=f"{unique}-readings",
            alerts_topic=f"{unique}-alerts",
            dlq_topic=f"{unique}-dlq",
            labels_topic=f"{unique}-labels",
            redis_prefix=f"fw-{unique}",
            metrics_port=0,
            readings_partitions=4,
            batch_max_wait_s=0.02,
            **overrides,
        )
        ensure_topics(settings)
        drill = Drill(name, settings, tmp_path / name)
        drill.workdir.mkdir(parents=True, exist_ok=True)
        drills.append(drill)
        return drill

    yield make
    for drill in drills:
        drill.stop_all()
        for i, w in enumerate(drill.workers):
            print(f"--- {drill.name} worker {i} log tail ---\n{w.tail(1500)}")


@pytest.fixture
def record() -> Callable[..., dict[str, object]]:
    """Print one scenario's figures and append them to $FLOORWATCH_FAULTS_RESULTS as a JSON line."""

    def write(scenario: str, **figures: object) -> dict[str, object]:
        row = {"scenario": scenario, **figures}
        line = orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY).decode()
        print(f"FAULT RESULT {line}")
        target = os.environ.get("FLOORWATCH_FAULTS_RESULTS")
        if target:
            with open(target, "a") as out:
                out.write(line + "\n")
        return row

    return write
