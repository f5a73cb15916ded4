"""A Kafka client that is not ours (kafkajs, from npm) publishes readings and reads the alerts back."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from stream_app.config.settings import Settings

from tests.support.services import redis_alerts

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent / "kafkajs"


@pytest.fixture(scope="module")
def kafkajs() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the kafkajs check")
    if not (HERE / "node_modules" / "kafkajs").is_dir():
        result = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=HERE, capture_output=True, text=True, timeout=180
        )
        if result.returncode != 0:
            pytest.skip(f"npm install kafkajs failed: {result.stderr.strip()[-300:]}")
    return HERE


def test_kafkajs_gateway_gets_alerts_in_topic_and_redis(settings: Settings, worker, kafkajs: Path) -> None:
    result = subprocess.run(
        ["node", "gateway.js", settings.kafka_bootstrap_servers, "js"],
        cwd=kafkajs, capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    alert = json.loads(result.stdout.strip().splitlines()[0])  # the first alert seen: the opening one
    assert alert["device_id"] == "js-0"
    assert alert["episode"]["state"] == "open"
    assert alert["top_feature"] == "motor_amps"

    in_redis = redis_alerts(settings, "js-")
    assert alert["alert_id"] in {a.alert_id for a in in_redis}
    assert {a.device_id for a in in_redis} == {"js-0"}
