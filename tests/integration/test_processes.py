"""``floorwatch worker --processes 2`` on the embedded broker: two processes in one consumer group share
the readings partitions and drain a backlog together; each names its own metrics port; a SIGTERM to the
parent stops both cleanly."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from pydantic import SecretStr

from producers.publish import ReadingPublisher, reading_json
from stream_app.config.settings import Settings
from stream_app.lab.embedded import EmbeddedServices, free_port
from stream_app.worker.topics import ensure_topics
from tests.support.services import wait_scored

pytestmark = pytest.mark.integration

NORMAL = {"temperature": (0.06, 0.002), "vibration": (0.075, 0.002), "motor_rpm": (0.045, 0.001), "motor_amps": (0.084, 0.002)}
DEVICES = [f"proc-{i:02d}" for i in range(24)]


def _two_free_ports() -> int:
    for _ in range(50):
        base = free_port()
        try:
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", base + 1))
            return base
        except OSError:
            continue
    raise AssertionError("no two adjacent free ports")


def _publish(settings: Settings, start_ts: int, rounds: int, rng: random.Random) -> dict[str, int]:
    publisher = ReadingPublisher(settings)
    ts = start_ts
    for _ in range(rounds):
        ts += 1000
        for device in DEVICES:
            values = {k: rng.gauss(m, sd) for k, (m, sd) in NORMAL.items()}
            publisher.send(device, reading_json(device, ts, values))
    publisher.flush()
    return dict.fromkeys(DEVICES, ts)


def _metric(port: int, name: str) -> dict[str, float]:
    """Samples of one metric family from a child's endpoint, keyed by their label text."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {m.group(1) or "": float(m.group(2)) for m in re.finditer(rf"^{name}(\{{[^}}]*\}})? (\S+)$", text, re.M)}


def _ready_line(text: str, index: int, *, last: bool = False) -> str:
    lines = [l for l in text.splitlines() if l.startswith(f"[worker {index}] ") and "floorwatch worker ready:" in l]
    return lines[-1 if last else 0]


def _wait(condition, what: str, log: Path, timeout_s: float = 240) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}:\n{log.read_text()[-4000:]}"
        time.sleep(0.5)


def test_two_processes_share_the_partitions_and_drain_a_backlog(
    services: EmbeddedServices, tiny_model_dir: Path, tmp_path: Path
) -> None:
    state = services.state()
    assert state is not None
    base = _two_free_ports()
    settings = Settings(
        kafka_bootstrap_servers=state.bootstrap_servers, kafka_profile="embedded", redis_url=SecretStr(state.redis_url),
        model_dir=tiny_model_dir, app_id="floorwatch-processes-test", metrics_port=base, readings_partitions=4,
        batch_max_wait_s=0.02, redis_prefix=f"procs-{time.time_ns()}", readings_topic="procs-readings",
        alerts_topic="procs-alerts", dlq_topic="procs-dlq", adapt_warmup_windows=0,
    )  # fmt: skip
    ensure_topics(settings)
    rng = random.Random(5)
    start_ts = int(time.time() * 1000) - 3_600_000
    _publish(settings, start_ts, 40, rng)  # a backlog before anything runs

    log = tmp_path / "worker.log"
    env = {**os.environ, **settings.as_env()}
    with open(log, "wb") as out:
        parent = subprocess.Popen([sys.executable, "-m", "stream_app", "worker", "--processes", "2"], env=env,
                                  stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        ready = lambda: log.read_text().count("floorwatch worker ready:") == 2  # noqa: E731
        _wait(lambda: parent.poll() is None and ready() or parent.poll() is not None, "both processes ready", log)
        assert parent.poll() is None, log.read_text()
        text = log.read_text()
        # Each ready line names its own metrics port: base + i.
        for i in (0, 1):
            line = _ready_line(text, i)
            assert f"http://127.0.0.1:{base + i}/metrics" in line, line

        def partitions(port: int) -> set[str]:
            try:
                return set(_metric(port, "floorwatch_readings_lag"))
            except (urllib.error.URLError, OSError):
                return set()

        # Both hold partitions of the group (sampled every few seconds), together all four, none twice.
        _wait(lambda: all(partitions(base + i) for i in (0, 1))
              and len(partitions(base) | partitions(base + 1)) == 4, "both processes assigned", log)  # fmt: skip
        assert not partitions(base) & partitions(base + 1)

        last = _publish(settings, start_ts + 40_000, 40, rng)  # more backlog while both run
        wait_scored(settings, last, timeout_s=180)
        for i in (0, 1):
            readings = _metric(base + i, "floorwatch_readings_total")[""]
            assert readings > 0, f"process {i} read nothing"
        # The group's committed lag (sampled every few seconds) comes down to 0 on every partition.
        lags = lambda: [_metric(base + i, "floorwatch_consumer_lag") for i in (0, 1)]  # noqa: E731
        _wait(lambda: sum(len(l) for l in lags()) == 4 and not any(v for l in lags() for v in l.values()),
              "committed lag 0 on all four partitions", log, timeout_s=60)  # fmt: skip
        info = _metric(base, "floorwatch_model_info")
        assert list(info) == ['{group="default",version="v0001"}'], info

        # A child killed after it was ready is reported in one line and restarted on its port.
        children = Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()
        assert len(children) == 2, children
        victim = next(pid for pid in map(int, children) if f"[{pid}]" in _ready_line(log.read_text(), 1))
        os.kill(victim, signal.SIGKILL)
        _wait(lambda: f"process 1 (pid {victim}) was killed by SIGKILL; restarted as pid" in log.read_text(), "restart reported", log, 60)
        _wait(lambda: log.read_text().count("floorwatch worker ready:") == 3, "the restarted process ready", log)
        assert f"http://127.0.0.1:{base + 1}/metrics" in _ready_line(log.read_text(), 1, last=True)
    finally:
        if parent.poll() is None:
            parent.send_signal(signal.SIGTERM)
        code = parent.wait(timeout=90)
    text = log.read_text()
    assert code == 0, text[-4000:]
    assert "Traceback" not in text, text[-4000:]
    assert "\x1b" not in text, "terminal escape codes in a log file"
    assert "absl::InitializeLog" not in text and "oneDNN" not in text, "TensorFlow's banners"
    for i in (0, 1):  # both children gone: their endpoints no longer answer
        with pytest.raises((urllib.error.URLError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{base + i}/healthz", timeout=2)
