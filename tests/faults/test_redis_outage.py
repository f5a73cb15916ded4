"""Redis stopped for 30 s under traffic: alerts keep flowing to the topic, Redis catches up."""

from __future__ import annotations

import time

import pytest

from producers.scenarios import Failure, FailureKind, Scenario
from stream_app.contracts import Alert
from tests.support.services import topic_alerts, wait_scored

from .drills import BackgroundRun, tally

pytestmark = pytest.mark.integration

SPEED = 20.0
OUTAGE_S = 30.0


# Apache Kafka's run is in `make faults` (slow): `make test` keeps one drill per broker short.
@pytest.mark.parametrize("broker", ["embedded", pytest.param("kafka", marks=pytest.mark.slow)])
def test_redis_down_30s(drill_factory, fault_services, record, broker: str) -> None:
    drill = drill_factory("redis", broker=broker)
    worker = drill.start_worker()
    drill.wait_consuming([worker])
    down_at = 160.0
    scenario = Scenario(
        devices=12,
        device_prefix="rd",
        duration_s=1100,
        seed=9,
        failures=[
            Failure(device=1, kind=FailureKind.power_surge, start_s=40, duration_s=80, magnitude=0.01),
            # Opens and closes while Redis is down.
            Failure(device=4, kind=FailureKind.overheating, start_s=300, duration_s=100, magnitude=0.01),
            Failure(device=6, kind=FailureKind.power_surge, start_s=500, duration_s=100, magnitude=0.01),
            # After Redis is back.
            Failure(device=9, kind=FailureKind.power_surge, start_s=900, duration_s=80, magnitude=0.01),
        ],
    )
    run = BackgroundRun(drill.settings, scenario, speed=SPEED)
    run.start()
    run.wait_sim(down_at)
    # SHUTDOWN SAVE and restart on the same port: an operator's restart, data kept (the embedded
    # Redis has no AOF; a crash would lose what was written before it). The new server has an
    # empty script cache, so the sink must load its Lua script again.
    fault_services.stop_service("redis", save=True)
    down_ms = int(time.time() * 1000)
    time.sleep(OUTAGE_S)
    peak_pending = worker.metrics().get("floorwatch_redis_pending_alerts", 0.0)
    up_ms = int(time.time() * 1000)
    fault_services.restart_service("redis")
    stats, sim = run.finish()
    wait_scored(drill.settings, stats.last_ts_ms or {}, timeout_s=120)
    deadline = time.monotonic() + 10
    while worker.metrics().get("floorwatch_redis_pending_alerts", 0.0) and time.monotonic() < deadline:
        time.sleep(0.5)
    pending_after = worker.metrics().get("floorwatch_redis_pending_alerts", 0.0)
    t = tally(drill.settings, sim, "rd")
    during = [a for a in topic_alerts(drill.settings, "rd-") if down_ms <= _detected_ms(a) < up_ms]
    record(
        f"Redis down 30 s ({broker})",
        load=f"12 devices, {stats.readings} readings at {SPEED:.0f}x real time, 1 worker",
        faults=f"redis-server SHUTDOWN SAVE for {OUTAGE_S:.0f}s, restarted on its port",
        alerts_to_topic_while_down=len(during),
        buffered_at_restart=peak_pending,
        pending_after=pending_after,
        **t.figures(),
    )
    assert during, "alerts stopped flowing to the topic while Redis was down"
    assert peak_pending >= 1
    assert pending_after == 0
    assert t.delivered == t.expected and t.extra_episodes == 0 and t.false_episodes == 0
    assert t.missing_in_redis == 0 and t.redis_duplicates == 0


def _detected_ms(alert: Alert) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(alert.detected_at.replace("Z", "+00:00")).timestamp() * 1000)
