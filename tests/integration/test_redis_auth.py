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

from stream_app.embedded import _redis_command, free_port, port_open
from stream_app.sinks import RedisSink
from tests.unit.test_evaluation import alert

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
