"""Every CLI command given bad arguments, files or unreachable services: one `error:` line, non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stream_app.lab.embedded import free_port


def _cli(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        **os.environ,
        "FLOORWATCH_STATE_DIR": str(tmp_path / "state"),
        "FLOORWATCH_MODEL_DIR": str(tmp_path / "models"),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    return subprocess.run(
        [sys.executable, "-m", "stream_app", *args], env={**base, **env}, capture_output=True, text=True, timeout=90
    )


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _files(tmp_path: Path) -> dict[str, Path]:
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("time,temperature\n2026-01-01T00:00:00,not-a-number\n")
    empty_csv = tmp_path / "empty.csv"
    empty_csv.write_text("")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("devices: [unclosed\n")
    wrong_yaml = tmp_path / "wrong.yaml"
    wrong_yaml.write_text("devices: 2\nfailures:\n  - {device: 5, kind: overheating, start_s: 1, duration_s: 2}\n")
    return {"bad_csv": bad_csv, "empty_csv": empty_csv, "bad_yaml": bad_yaml, "wrong_yaml": wrong_yaml}


# Each case fails before any Kafka or Redis connection is needed.
CASES = {
    "unknown command": (["frobnicate"], "No such command"),
    "bad option value": (["simulate", "--devices", "many"], "devices"),
    "unknown failure kind": (["simulate", "--kind", "melting", "--duration", "1"], "melting"),
    "missing scenario file": (["simulate", "--scenario", "{tmp}/nope.yaml"], "cannot read scenario"),
    "bad scenario YAML": (["simulate", "--scenario", "{bad_yaml}"], "not valid YAML"),
    "scenario failure on a missing device": (["simulate", "--scenario", "{wrong_yaml}"], "fleet has 2 devices"),
    "replay missing file": (["replay", "{tmp}/nope.csv", "--device", "d1"], "cannot read"),
    "replay empty CSV": (["replay", "{empty_csv}", "--device", "d1"], "no header"),
    "replay unknown column": (["replay", "{bad_csv}", "--device", "d1", "--columns", "pressure"], "pressure"),
    "train missing CSV": (["train", "--csv", "{tmp}/nope.csv"], "cannot read"),
    "train bad CSV": (["train", "--csv", "{bad_csv}"], "line 2"),
    "promote unknown version": (["models", "promote", "v9999"], "unknown model version"),
    "worker without a model": (["worker"], "no model"),
    "worker with unknown version": (["worker", "--model-version", "v9999"], "unknown model version"),
    "bad setting": (["config"], "invalid configuration"),
    "bad asset groups": (["config"], "asset_groups"),
    "bad group name": (["train", "--group", "Pumps"], "lowercase"),
    "list a group's models with a bad name": (["models", "list", "--group", "../x"], "lowercase"),
    "promote in a group without models": (["models", "promote", "v0001", "--group", "pumps"], "unknown model version"),
    "worker with a group without a model": (["worker"], "floorwatch train --group pumps"),
    "evaluate a missing SMD folder": (["evaluate", "--smd", "{tmp}/nope"], "SMD folder"),
    "evaluate two sources": (["evaluate", "--smd", "{tmp}", "--skab", "{tmp}"], "choose one source"),
    "evaluate a bad CSV without labels": (["evaluate", "--csv", "{bad_csv}"], "temperature hold no numbers"),
    "train with an unknown threshold method": (["train", "--threshold-method", "median"], "known: quantile, per-feature"),
    "evaluate with an unknown threshold method": (["evaluate", "--simulate", "--threshold-method", "x"], "--threshold-method"),
}
# Environment for the cases that need one.
CASE_ENV = {
    "bad setting": {"FLOORWATCH_STRIDE": "zero"},
    "bad asset groups": {"FLOORWATCH_ASSET_GROUPS": "pumps=pump-*; pumps=valve-*"},
    "worker with a group without a model": {"FLOORWATCH_ASSET_GROUPS": "pumps=pump-*"},
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_one_error_line(case: str, tmp_path: Path) -> None:
    args, expected = CASES[case]
    files = {k: str(v) for k, v in _files(tmp_path).items()}
    args = [a.format(tmp=tmp_path, **files) for a in args]
    line = _one_error_line(_cli(args, tmp_path, **CASE_ENV.get(case, {})))
    assert expected.lower() in line.lower(), line


def test_unreachable_redis(tmp_path: Path) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    line = _one_error_line(_cli(["alerts", "recent"], tmp_path, REDIS_URL=url))
    assert "ConnectionError" in line and "hunter2" not in line


def test_unreachable_kafka(tmp_path: Path) -> None:
    # librdkafka's own connection-failure lines must not reach stderr beside the error line.
    result = _cli(["alerts", "tail", "--idle-timeout", "1"], tmp_path, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}")
    assert "KafkaException" in _one_error_line(result)


def test_version(tmp_path: Path) -> None:
    result = _cli(["--version"], tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("floorwatch "), result


def test_console_elsewhere_than_loopback_needs_a_token(tmp_path: Path) -> None:
    assert "give a token" in _one_error_line(_cli(["console", "--host", "0.0.0.0"], tmp_path, FLOORWATCH_CONSOLE_TOKEN=""))


def test_dlq_with_kafka_unreachable(tmp_path: Path) -> None:
    _one_error_line(_cli(["dlq", "recent"], tmp_path, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}"))


@pytest.mark.parametrize("processes", ["1", "2"])
def test_worker_with_kafka_down_is_one_line(processes: str, tmp_path: Path, tiny_model_dir: Path) -> None:
    # Checked before any model is loaded or process started: one line, whatever --processes says.
    result = _cli(["worker", "--processes", processes], tmp_path, FLOORWATCH_MODEL_DIR=str(tiny_model_dir),
                  FLOORWATCH_METRICS_PORT="0", KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}")  # fmt: skip
    assert "did not answer" in _one_error_line(result)


def test_a_folder_run_leaves_an_unreadable_file_out_and_says_so(tmp_path: Path) -> None:
    from stream_app.config.settings import Settings
    from stream_app.lab.evaluate import EvaluateRequest, run_evaluation

    (tmp_path / "bad.csv").write_text("time,x\nsoon,1\nlater,2\n")
    rows = "\n".join(f"{1767225600 + 60 * i},{i % 7}" for i in range(300))
    (tmp_path / "good.csv").write_text("time,x\n" + rows + "\n")
    request = EvaluateRequest(source="csv", csv=[tmp_path], train_rows=0.5, epochs=1)
    report, traces = run_evaluation(Settings(), request)
    assert [t.device_id for t in traces] == ["good"]
    assert report.warnings[0] == "left out: bad.csv: time 'soon' is neither a number nor a date-time"
