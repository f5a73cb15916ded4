"""Fresh services and a worker process: the one harness behind demo, bench and the integration and fault tests.

``fresh_services`` starts a broker (the embedded one, or a one-node Apache Kafka) and Redis on free
loopback ports, yields settings pointed at them and stops them on the way out. ``WorkerProcess``
runs ``floorwatch worker`` as a subprocess in its own process group, with its log in a file and its
metrics endpoint on a free port (``processes=N``: ``floorwatch worker --processes N``, its children's
endpoints on N consecutive free ports); ``ConsoleProcess`` runs ``floorwatch console`` likewise.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from pydantic import SecretStr

from stream_app.config.settings import Settings
from stream_app.lab.bench_stats import prometheus_values, rss_mb
from stream_app.lab.embedded import EmbeddedServices, ServicesState, free_port, free_ports

Broker = Literal["embedded", "kafka"]


class WorkerExited(Exception):
    """The worker (or console) process exited while it was still needed."""


def pointed_at(base: Settings, state: ServicesState, *, kafka: str | None = None, **overrides: Any) -> Settings:
    """``base`` on the embedded services' Redis and broker, or on the Apache Kafka at ``kafka`` (its profile)."""
    update: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka or state.bootstrap_servers,
        "kafka_profile": "kafka" if kafka else "embedded",
        "redis_url": SecretStr(state.redis_url),
    }
    return base.model_copy(update={**update, **overrides})


@contextmanager
def fresh_embedded(state_dir: Path) -> Iterator[EmbeddedServices]:
    """The embedded broker and Redis on free ports, stopped on the way out."""
    services = EmbeddedServices(state_dir, kafka_port=free_port(), redis_port=free_port())
    services.start()
    try:
        yield services
    finally:
        services.stop()


@contextmanager
def fresh_services(base: Settings, state_dir: Path, *, broker: Broker = "embedded", **overrides: Any) -> Iterator[Settings]:
    """Fresh services on free ports (the embedded broker, or a one-node Apache Kafka), and ``base`` pointed at them."""
    if broker == "embedded":
        with fresh_embedded(state_dir) as services:
            state = services.state()
            assert state is not None  # started just now
            yield pointed_at(base, state, **overrides)
        return
    from stream_app.lab.kafka_local import LocalKafkaServices

    local = LocalKafkaServices(state_dir, kafka_port=free_port(), redis_port=free_port(), kafka_home=base.kafka_home)
    cluster, redis_process = local.start()
    try:
        yield base.model_copy(
            update={
                "kafka_bootstrap_servers": cluster.bootstrap_servers,
                "redis_url": SecretStr(f"redis://{redis_process.host}:{redis_process.port}/0"),
                "kafka_profile": "kafka",
                **overrides,
            }
        )
    finally:
        local.stop()
        local.cluster.stop(wipe=True)


class WorkerProcess:
    """One ``floorwatch worker`` subprocess: its own process group, its log in a file, metrics on a free port.

    Use it as a context manager, or call ``stop``.
    """

    def __init__(self, settings: Settings, log: Path, *, processes: int = 1, args: tuple[str, ...] = ()) -> None:
        base = free_port() if processes == 1 else free_ports(processes)
        self.settings = settings.model_copy(update={"metrics_port": base})
        self.ports = [base + i for i in range(processes)]  # one endpoint per worker process
        self.log = log
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **self.settings.as_env()}
        command = [sys.executable, "-m", "stream_app", "worker", *args, "--processes", str(processes)]  # (default: one per core)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def check(self) -> None:
        """Raise ``WorkerExited`` (with the log's tail) if the process has exited."""
        if not self.alive():
            raise WorkerExited(f"the worker exited with code {self.process.returncode}; see {self.log}:\n{self.tail(1500)}")

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, chars: int = 3000) -> str:
        return self.log_text()[-chars:]

    def metrics(self) -> dict[str, float]:
        """The worker's Prometheus samples (name -> value, labelled ones summed, and summed over its
        processes); OSError while one does not answer."""
        total: dict[str, float] = {}
        for values in self.metrics_each():
            for name, value in values.items():
                total[name] = total.get(name, 0.0) + value
        return total

    def metrics_each(self) -> list[dict[str, float]]:
        """Each worker process's samples, in order; OSError while one does not answer."""
        return [self.process_metrics(i) for i in range(len(self.ports))]

    def process_metrics(self, index: int) -> dict[str, float]:
        """Worker process ``index``'s samples; OSError while it does not answer."""
        return prometheus_values(self.metrics_page(index))

    def metrics_page(self, index: int) -> str:
        """Worker process ``index``'s Prometheus text page; OSError while it does not answer."""
        url = f"http://{self.settings.metrics_host}:{self.ports[index]}/metrics"
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(response.read().decode())

    def counter(self, name: str) -> float:
        return self.metrics().get(f"floorwatch_{name}_total", 0.0)

    def rss_mb(self) -> float:
        """Resident memory of the worker: with ``--processes``, the supervisor's and its children's."""
        pids = [self.process.pid]
        if len(self.ports) > 1:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            pids += [int(p) for p in children.read_text().split()] if children.exists() else []
        total = 0.0
        for pid in pids:
            try:
                total += rss_mb(pid)
            except (OSError, ValueError):  # a child exiting just now
                pass
        return total

    def wait_ready(self, timeout_s: float = 120) -> None:
        """Until the metrics endpoint answers (every process's: the model is loaded and warmed)."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.check()
            try:
                self.metrics()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise WorkerExited(f"the worker did not start in {timeout_s:.0f}s; see {self.log}:\n{self.tail(1500)}")
                time.sleep(0.2)

    def kill9(self) -> None:
        """A crash: SIGKILL, no shutdown."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout_s: float | None = None) -> dict[str, float]:
        """SIGTERM to its group (SIGKILL after ``timeout_s``: default 20 s, 60 s for a supervisor, which
        stops its children in turn); its final counters from the line it logs on the way out.

        Faust finishes its current batch and commits after SIGTERM, so counters read before the
        signal would miss readings it still consumed, and the metrics endpoint may close first.
        """
        if timeout_s is None:
            timeout_s = 20.0 if len(self.ports) == 1 else 60.0
        if self.alive():
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            except ProcessLookupError:
                self.process.wait()  # it exited just now
        lines = [line for line in self.log_text().splitlines() if "worker stopped: " in line]
        if not lines:  # none after kill -9
            return {}
        if lines[-1].startswith("{"):  # --log-format json: the totals are a field of the line
            totals: dict[str, float] = json.loads(lines[-1]).get("totals", {})
            return totals
        return dict(json.loads(lines[-1].split("worker stopped: ", 1)[1]))

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class ConsoleProcess:
    """One ``floorwatch console`` subprocess on a free loopback port, its log in a file; ``url`` once ready.

    Use it as a context manager, or call ``stop``.
    """

    def __init__(self, settings: Settings, log: Path, timeout_s: float = 60) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = log
        env = {**os.environ, **settings.model_copy(update={"metrics_port": 0}).as_env()}
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stream_app", "console", "--port", str(self.port)], env=env, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while b"console on " not in log.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise WorkerExited(f"the console did not start; see {log}:\n{log.read_text(errors='replace')[-1500:]}")
            time.sleep(0.1)

    def stop(self, timeout_s: float = 20) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> ConsoleProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
