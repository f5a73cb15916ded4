"""``floorwatch worker --log-format json`` on the embedded services, one process and ``--processes 2``: every
line of its output (ours, Faust's and mode's at info level, the supervisor's) is one JSON object with ts,
level, logger and message, and the ready line carries the model versions as a field."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import pytest

from stream_app.config.settings import Settings
from stream_app.lab.embedded import EmbeddedServices
from stream_app.lab.harness import WorkerProcess, pointed_at
from stream_app.worker.processes import READY_MARK
from stream_app.worker.topics import ensure_topics
from tests.support.services import probe_until_scored

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("processes", [1, 2])
def test_every_line_is_json_and_the_ready_line_has_the_models(
    services: EmbeddedServices, tiny_model_dir: Path, tmp_path: Path, processes: int
) -> None:
    state = services.state()
    assert state is not None
    name = f"json-logs-{processes}-{time.time_ns()}"
    settings = pointed_at(
        Settings(model_dir=tiny_model_dir, app_id=name, readings_partitions=4, batch_max_wait_s=0.02, log_level="info",
                 readings_topic=f"{name}-readings", redis_prefix=name, adapt_warmup_windows=0),
        state,
    )  # fmt: skip
    ensure_topics(settings)
    log = tmp_path / "worker.log"
    with WorkerProcess(settings, log, processes=processes, args=("--log-format", "json")) as worker:
        probe_until_scored(settings, worker, timeout_s=240)
        deadline = time.monotonic() + 60
        while worker.log_text().count(READY_MARK) < processes:
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.2)
    # After a SIGTERM, so the shutdown's lines (Faust's, "worker stopped") are in it too.
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # every line parses, or this fails naming it
    assert len(lines) > 10, text
    for data in lines:
        assert isinstance(data, dict) and {"ts", "level", "logger", "message"} <= set(data), data
        assert data["ts"].endswith("Z") and datetime.fromisoformat(data["ts"].replace("Z", "+00:00"))
        assert data["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), data
        # A worker's own output was all JSON: nothing had to be wrapped by the supervisor.
        assert data["logger"] != "stream_app.worker.processes.output", data
    assert any(d["logger"].startswith(("faust", "mode")) for d in lines), "no line of Faust's or mode's own"
    stopped = [d for d in lines if d["message"].startswith("worker stopped: ")]
    assert len(stopped) == processes and all(d["totals"]["floorwatch_readings_total"] >= 0 for d in stopped), stopped
    ready = [d for d in lines if d["message"].startswith(READY_MARK)]
    assert len(ready) == processes, ready
    for data in ready:
        assert data["models"] == {"default": "v0001"} and data["consumer_group"] == name, data
        assert data["readings_topic"] == f"{name}-readings" and data["metrics_url"].endswith("/metrics")
    if processes > 1:  # the supervisor's lines and each child's, told apart by a field
        assert sorted(d["worker"] for d in ready) == [0, 1]
        assert any(d["logger"] == "stream_app.worker.processes" and "starting 2 processes" in d["message"] for d in lines)
    assert "\x1b" not in text and "Traceback" not in text
