"""Producer commands refuse, before publishing anything, readings the worker would refuse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from producers.checks import RefusedReadings
from producers.fleet import run_simulation, start_ms_for
from producers.replay import replay
from producers.scenarios import Scenario
from stream_app.lab.embedded import free_port
from stream_app.config.settings import Settings

ROWS = "datetime,temperature,vibration,motor_rpm,motor_amps\n" + "".join(
    f"2024-01-01 00:00:{s:02d},0.06,0.075,0.045,0.084\n" for s in range(10)
)


def _settings(model_dir: Path) -> Settings:
    # Kafka that nobody listens on: a check that let anything through would fail on publishing instead.
    return Settings(_env_file=None, model_dir=model_dir, kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")  # type: ignore[call-arg]


@pytest.mark.parametrize(("duration", "speed"), [(900, 20), (600, 1), (60, 0.5), (3600, 1000)])
def test_a_simulated_run_never_stamps_a_reading_later_than_it_is_sent(duration: float, speed: float) -> None:
    now = 1_795_000_000_000
    start = start_ms_for(duration, speed, now)
    for t_ms in range(0, int(duration * 1000) + 1, 1000):
        sent_at = now + t_ms / speed  # what producers.publish.paced waits for
        assert start + t_ms <= sent_at


def test_a_simulation_with_an_invalid_device_id_is_refused(tiny_model_dir: Path) -> None:
    with pytest.raises(RefusedReadings, match="device 'bad\\*id-01'.*device_id"):
        run_simulation(_settings(tiny_model_dir), Scenario(devices=2, device_prefix="bad*id", duration_s=5), start_ms=0)


def test_replay_of_a_bad_device_id_or_missing_sensors_publishes_nothing(tiny_model_dir: Path, tmp_path: Path) -> None:
    csv = tmp_path / "rec.csv"
    csv.write_text(ROWS)
    with pytest.raises(RefusedReadings, match="device_id"):
        replay(_settings(tiny_model_dir), csv, "bad*id", speed=0)
    with pytest.raises(RefusedReadings, match="lacks sensor\\(s\\) motor_amps that model v0001"):
        replay(_settings(tiny_model_dir), csv, "press-01", speed=0, columns=["temperature", "vibration", "motor_rpm"])
    future = tmp_path / "future.csv"
    future.write_text(ROWS.replace("2024-01-01 00:00:09", "2999-01-01 00:00:09"))
    with pytest.raises(RefusedReadings, match="future.csv line 11: timestamp is more than 300 s in the future"):
        replay(_settings(tiny_model_dir), future, "press-01", speed=0)


def test_the_cli_says_so_in_one_line_and_exits_non_zero(tiny_model_dir: Path, tmp_path: Path) -> None:
    csv = tmp_path / "rec.csv"
    csv.write_text(ROWS)
    env = {**os.environ, **_settings(tiny_model_dir).as_env(), "FLOORWATCH_STATE_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "stream_app", "replay", str(csv), "--device", "bad*id", "--speed", "0"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: device 'bad*id'"), result.stderr
