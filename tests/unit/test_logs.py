"""JSON log lines (``--log-format json``): the formatter, its logging configuration as Faust's Worker
applies it, and the supervisor's lines."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from stream_app.worker.logs import JsonLogFormatter, iso_utc
from stream_app.worker.processes import READY_MARK, Supervisor


def _record(message: str, *args: object, level: int = logging.WARNING, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("stream_app.worker.start", level, __file__, 1, message, args, exc_info)
    record.__dict__.update(extra)
    return record


def test_a_line_is_one_json_object_with_ts_level_logger_message_and_extras() -> None:
    line = JsonLogFormatter().format(_record("ready: %s\nsecond line", "v0003", models={"default": "v0003"}))
    assert "\n" not in line
    data = json.loads(line)
    assert list(data)[:4] == ["ts", "level", "logger", "message"]
    assert data["level"] == "WARNING" and data["logger"] == "stream_app.worker.start"
    assert data["message"] == "ready: v0003\nsecond line"
    assert data["models"] == {"default": "v0003"}
    assert "exc" not in data
    ts = datetime.fromisoformat(data["ts"].replace("Z", "+00:00"))
    assert data["ts"].endswith("Z") and ts.utcoffset() is not None and ts.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_a_traceback_is_the_exc_field() -> None:
    data = json.loads(JsonLogFormatter().format(_record("failed", level=logging.ERROR, exc=True)))
    assert data["level"] == "ERROR" and data["message"] == "failed"
    assert data["exc"].startswith("Traceback") and "RuntimeError: boom" in data["exc"]


def test_a_field_that_is_not_json_is_written_as_text() -> None:
    data = json.loads(JsonLogFormatter().format(_record("x", when=datetime(2026, 1, 2), thing=object())))
    assert data["when"].startswith("2026-01-02") and "object" in data["thing"]


def test_secrets_are_masked_raw_and_as_json_escapes_them() -> None:
    secret = 'pa"ss\\word'
    formatter = JsonLogFormatter([secret, "", "hunter2"])
    line = formatter.format(_record("redis://:%s@redis:6379 and %s", secret, "hunter2", url=f"redis://:{secret}@h"))
    assert secret not in line and json.dumps(secret)[1:-1] not in line and "hunter2" not in line
    data = json.loads(line)
    assert data["message"] == "redis://:***@redis:6379 and ***" and data["url"] == "redis://:***@h"


def test_iso_utc() -> None:
    assert iso_utc(0.5) == "1970-01-01T00:00:00.500Z"


def _python(code: str) -> subprocess.CompletedProcess[str]:
    # In a process of its own: dictConfig closes every handler there is, pytest's own included.
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_faust_workers_logging_setup_takes_the_json_config() -> None:
    # The seam: mode's Worker calls setup_logging(logging_config=...) when it starts.
    done = _python(
        "import logging\n"
        "from mode.utils.logging import setup_logging\n"
        "from stream_app.worker.logs import json_logging_config, json_logs_active\n"
        "setup_logging(loglevel='WARNING', logging_config=json_logging_config('warning', ['s3cret']))\n"
        "assert json_logs_active()\n"
        "logging.getLogger('faust.worker').warning('hello %s', 's3cret')\n"
        "logging.getLogger('faust.worker').info('not at warning')\n"
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, lines
    data = json.loads(lines[0])
    assert data["logger"] == "faust.worker" and data["message"] == "hello ***"


def test_use_json_logs_and_json_logs_active() -> None:
    done = _python(
        "import logging\n"
        "from stream_app.worker.logs import json_logs_active, use_json_logs\n"
        "assert not json_logs_active()\n"
        "use_json_logs('info')\n"
        "assert json_logs_active()\n"
        "logging.getLogger('stream_app.worker.start').info('models: default=v0001')\n"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stderr)["message"] == "models: default=v0001"


def _child(body: str) -> list[str]:
    return [sys.executable, "-c", f"import os, sys, time, json\n{body}"]


def test_supervisor_lines_are_json_with_the_worker_index() -> None:
    body = (
        "print(json.dumps({'ts': 't', 'level': 'WARNING', 'logger': 'x', 'message': 'secret s3cret'}), flush=True)\n"
        "print('raw text from a C library', flush=True)\n"
        f"print(json.dumps({{'ts': 't', 'level': 'WARNING', 'logger': 'x', 'message': '{READY_MARK} models'}}), flush=True)\n"
        "time.sleep(0.5)\nsys.exit(3)\n"
    )
    out = io.StringIO()
    code = Supervisor(1, _child(body), out=out, max_restarts=0, grace_s=5, formatter=JsonLogFormatter(["s3cret"])).run()
    assert code == 1
    lines = [json.loads(line) for line in out.getvalue().splitlines()]  # every line parses
    assert all({"ts", "level", "logger", "message"} <= set(d) for d in lines), lines
    children = [d for d in lines if "worker" in d]
    assert [d["message"] for d in children] == ["secret ***", "raw text from a C library", f"{READY_MARK} models"]
    assert all(d["worker"] == 0 for d in children)
    assert children[1]["logger"] == "stream_app.worker.processes.output"
    own = [d for d in lines if "worker" not in d]
    assert own[0]["message"].startswith("floorwatch worker: starting 1 processes") and own[0]["level"] == "INFO"
    assert own[-1]["level"] == "ERROR" and "exited with code 3" in own[-1]["message"]


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_start_up_error_is_one_json_line(tmp_path: Path, processes: str) -> None:
    # No model in the store: the first check, before Kafka is tried, one process or a supervisor.
    env = {**os.environ, "FLOORWATCH_MODEL_DIR": str(tmp_path), "REDIS_URL": "redis://:s3cret@127.0.0.1:1/0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "stream_app", "worker", "--log-format", "json", "--processes", processes],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and done.stdout == "", done.stderr
    data = json.loads(lines[0])
    assert data["level"] == "ERROR" and data["logger"] == "stream_app.cli" and data["message"].startswith("error: "), data
    assert "s3cret" not in done.stderr


def test_an_unknown_log_format_is_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "stream_app", "worker", "--log-format", "xml"],
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1 and done.stderr == "error: --log-format must be text or json, not 'xml'\n", done.stderr
