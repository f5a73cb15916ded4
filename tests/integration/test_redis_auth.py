"""Redis AUTH against a real redis-server started with ``--requirepass``: the sink writes through a
password URL, and a wrong password is one clear error line that does not echo any password."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from stream_app.lab.embedded import _redis_command, free_port, port_open
from stream_app.worker.sinks import RedisSink
from tests.support.builders import alert

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-Pa55"


@pytest.fixture(scope="module")
def auth_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis-auth")
    process = subprocess.Popen(
        [*_redis_command("127.0.0.1", port, workdir), "--requirepass", PASSWORD],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not port_open("127.0.0.1", port):
        assert time.monotonic() < deadline and process.poll() is None, "redis-server did not start"
        time.sleep(0.05)
    yield port
    process.terminate()
    process.wait(timeout=10)


async def test_sink_writes_through_a_password_url_once_per_alert(auth_redis: int) -> None:
    client = aioredis.from_url(f"redis://:{PASSWORD}@127.0.0.1:{auth_redis}/0")
    sink = RedisSink(client, "auth-test")
    one = alert("press-01", 1_795_000_000_000)
    assert await sink.write([one], {})
    assert await sink.write([one], {})  # redelivered: changes nothing
    assert await client.xlen("auth-test:alerts") == 1
    await client.aclose()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=auth_redis).ping()  # and the server really does demand the password


def test_wrong_password_is_one_line_without_the_password(auth_redis: int, tmp_path: Path) -> None:
    wrong = "not-the-Pa55word"
    result = subprocess.run(
        [sys.executable, "-m", "stream_app", "alerts", "recent"],
        env={
            **os.environ,
            "REDIS_URL": f"redis://:{wrong}@127.0.0.1:{auth_redis}/0",
            "FLOORWATCH_STATE_DIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    assert wrong not in result.stderr + result.stdout and PASSWORD not in result.stderr + result.stdout


ODD_PASSWORD = "Wr#0ng/pa?ss@w%rd"


@pytest.fixture(scope="module")
def odd_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A redis-server whose password holds every character that breaks a URL."""
    port = free_port()
    process = subprocess.Popen(
        [*_redis_command("127.0.0.1", port, tmp_path_factory.mktemp("redis-odd")), "--requirepass", ODD_PASSWORD],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not port_open("127.0.0.1", port):
        assert time.monotonic() < deadline and process.poll() is None, "redis-server did not start"
        time.sleep(0.05)
    yield port
    process.terminate()
    process.wait(timeout=10)


def _floorwatch(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_app", *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout
    )


def _pieces(secret: str, n: int = 4) -> set[str]:
    return {secret[i : i + n] for i in range(len(secret) - n + 1)}


def test_a_raw_password_with_url_syntax_works_and_is_never_printed(odd_redis: int, tmp_path: Path) -> None:
    env = {"REDIS_URL": f"redis://:{ODD_PASSWORD}@127.0.0.1:{odd_redis}/0", "FLOORWATCH_STATE_DIR": str(tmp_path)}
    recent = _floorwatch("alerts", "recent", env=env)
    assert recent.returncode == 0 and "no alerts" in recent.stdout, recent.stderr
    config = _floorwatch("config", env=env)
    assert config.returncode == 0 and f"redis://***@127.0.0.1:{odd_redis}/0" in config.stdout
    wrong = _floorwatch("alerts", "recent", env={**env, "REDIS_URL": f"redis://:{ODD_PASSWORD[::-1]}@127.0.0.1:{odd_redis}/0"})
    assert wrong.returncode != 0 and len(wrong.stderr.strip().splitlines()) == 1
    for result in (recent, config, wrong):
        shown = result.stdout + result.stderr
        assert not any(p in shown for p in _pieces(ODD_PASSWORD) | _pieces(ODD_PASSWORD[::-1])), shown


def test_a_worker_with_a_wrong_redis_password_stops_at_start_in_one_line(odd_redis: int, settings, tmp_path: Path) -> None:
    env = {
        **settings.model_copy(update={"metrics_port": 0}).as_env(),
        "REDIS_URL": f"redis://:not-{ODD_PASSWORD}@127.0.0.1:{odd_redis}/0",
        "FLOORWATCH_STATE_DIR": str(tmp_path),
    }
    result = _floorwatch("worker", env=env)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(lines) == 1 and "refused the credentials" in lines[0], result.stderr[-2000:]
    assert not any(p in result.stderr + result.stdout for p in _pieces(ODD_PASSWORD)), result.stderr


def test_a_worker_with_kafka_down_at_start_says_so_in_one_line(tiny_model_dir: Path, tmp_path: Path) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "FLOORWATCH_MODEL_DIR": str(tiny_model_dir),
        "FLOORWATCH_STATE_DIR": str(tmp_path),
        "FLOORWATCH_METRICS_PORT": "0",
    }
    result = _floorwatch("worker", env=env)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert lines[-1].startswith("error: Kafka at 127.0.0.1:") and "did not answer" in lines[-1], result.stderr[-2000:]
