"""The model lifecycle in a running worker, on the real embedded broker and Redis: a promote under
traffic loses no reading and leaves none unscored, a broken version is refused.

The worker here has its own topics, Redis prefix and model store (a copy), so promoting does not
disturb the session's other tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
import redis

from producers.publish import ReadingPublisher, reading_json
from stream_app.lab.embedded import free_port
from stream_app.models.store import ModelStore
from stream_app.config.settings import Settings
from stream_app.worker.sinks import RedisKeys
from stream_app.worker.topics import ensure_topics

from stream_app.lab.harness import WorkerProcess
from tests.support.services import NORMAL, redis_alerts, topic_alerts, topic_messages, scoring_worker, wait_log, wait_scored

pytestmark = pytest.mark.integration

WINDOW = 8  # the session's tiny model


def copy_version(store: ModelStore, source: str) -> str:
    """A new version with the same weights (what matters here is which version scores)."""
    version = f"v{int(store.versions()[-1][1:]) + 1:04d}"
    shutil.copytree(store.root / source, store.root / version)
    card = orjson.loads((store.root / version / "card.json").read_bytes())
    (store.root / version / "card.json").write_bytes(orjson.dumps({**card, "version": version}))
    return version


@pytest.fixture(scope="module")
def lc_settings(settings: Settings, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # Both brokers' runs share the session's Redis: each has its own prefix, or the second run would start
    # on the first's device hashes (its worker's probe passing before it scored), episodes, feedback and
    # shadow counters.
    models = tmp_path_factory.mktemp("lifecycle") / "models"
    shutil.copytree(tiny_model_dir, models)
    s = settings.model_copy(update={
        "model_dir": models, "app_id": "floorwatch-lifecycle", "redis_prefix": f"fwlc-{settings.kafka_profile}",
        "readings_topic": "lc-readings", "alerts_topic": "lc-alerts", "dlq_topic": "lc-dlq",
        "health_topic": "lc-model-health", "feedback_topic": "lc-alert-feedback", "labels_topic": "lc-labels",
        "metrics_port": free_port(), "drift_sample_every": 1, "drift_min_samples": 100,
        # Frozen lines, no refits: these tests judge the lifecycle's mechanics (a deliberately jumpy shadow
        # candidate must alert, not have its devices' lines learn that jumpiness as their normal).
        "adapt_lines": False, "refit": False,
    })  # fmt: skip
    ensure_topics(s)
    return s


@pytest.fixture(scope="module")
def lc_worker(lc_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    log = tmp_path_factory.mktemp("lc-worker") / "worker.log"
    with scoring_worker(lc_settings, log, "lcprobe-0") as worker:
        yield worker


def _noisy(rng: np.random.Generator) -> dict[str, float]:
    return {k: v + float(rng.normal(0, 0.0005)) for k, v in NORMAL.items()}


def test_drift_in_one_feature_gives_a_model_health_event(lc_settings: Settings, lc_worker: WorkerProcess) -> None:
    from producers.scenarios import Scenario
    from producers.simulator import FleetSimulator
    from stream_app.contracts import to_epoch_ms

    start = (int(time.time() * 1000) - 900_000) // 60_000 * 60_000
    sim = FleetSimulator(Scenario(devices=10, duration_s=840, seed=21, device_prefix="drift"), start)
    series = sim.series()
    shift_at = 480
    series[shift_at:, :, 0] += 3 * 0.0015  # temperature reads 3 training SDs higher from here on
    publisher = ReadingPublisher(lc_settings)
    for tick, values in enumerate(series):
        for d, device in enumerate(sim.device_ids):
            publisher.send(device, reading_json(device, start + tick * 1000, dict(zip(NORMAL, map(float, values[d])))))
    publisher.flush()
    wait_scored(lc_settings, {d: start + (len(series) - 1) * 1000 for d in sim.device_ids})

    deadline = time.monotonic() + 30
    while True:
        events = [json.loads(v) for v in topic_messages(lc_settings, lc_settings.health_topic)]
        drift = [e for e in events if e["kind"] == "drift" and e["feature"] == "temperature"]
        if drift or time.monotonic() > deadline:
            break
    assert drift, events
    first = drift[0]
    assert first["group"] == "default" and first["figure"] in ("psi", "ks") and first["limit"] > 0
    assert to_epoch_ms(first["at"]) - (start + shift_at * 1000) <= 5 * 60_000
    health = _cli(lc_settings, "models", "health", "--json")
    assert health.returncode == 0, health.stderr
    figures = json.loads(health.stdout)["figures"]["default"]
    assert "psi:temperature" in figures and figures["psi:temperature"]["value"] > figures["psi:temperature"]["limit"]
    assert lc_worker.metrics().get("floorwatch_model_drift", 0.0) > 0


def test_promote_under_traffic_loses_no_reading_and_leaves_none_unscored(lc_settings: Settings, lc_worker: WorkerProcess) -> None:
    store = ModelStore(lc_settings.model_dir)
    old = store.current()
    new = copy_version(store, old)
    publisher = ReadingPublisher(lc_settings)
    rng = np.random.default_rng(3)
    devices = [f"swap-{i}" for i in range(10)]
    start = int(time.time() * 1000) - 1_800_000
    windows_before = lc_worker.counter("windows_scored")

    sent, promoted_at, swapped_at = 0, None, None
    tick = 0
    while swapped_at is None or tick < swapped_at + 40:
        for d in devices:
            publisher.send(d, reading_json(d, start + tick * 1000, _noisy(rng)))
        publisher.poll()
        sent += len(devices)
        tick += 1
        if tick == 30:
            store.promote(new)
            promoted_at = tick
        if promoted_at is not None and swapped_at is None and "model swapped for group default" in lc_worker.log_text():
            swapped_at = tick
        assert tick < 1500, f"no swap in the worker's log:\n{lc_worker.tail()}"
        time.sleep(0.05)
    # A device stuck after the swap: its alert names the new version.
    for t in range(tick, tick + 30):
        publisher.send(devices[0], reading_json(devices[0], start + t * 1000, NORMAL))
        for d in devices[1:]:
            publisher.send(d, reading_json(d, start + t * 1000, _noisy(rng)))
        sent += len(devices)
    publisher.flush()
    last = start + (tick + 29) * 1000
    wait_scored(lc_settings, {d: last for d in devices})

    assert f"{old} -> {new} (windows and episodes carried over)" in lc_worker.log_text()
    # No reading lost or unscored: every reading after a device's first T - 1 completed a window.
    scored = lc_worker.counter("windows_scored") - windows_before
    assert scored == sent - len(devices) * (WINDOW - 1)
    client = redis.Redis.from_url(lc_settings.redis_url_value())
    keys = RedisKeys(lc_settings.redis_prefix)
    assert {client.hget(keys.device(d), "model_version").decode() for d in devices} == {new}
    alerts = redis_alerts(lc_settings, "swap-")
    assert alerts and {a.model_version for a in alerts} == {new} and {a.device_id for a in alerts} == {devices[0]}
    assert {a.model_version for a in topic_alerts(lc_settings, "swap-")} == {new}


def test_a_broken_version_is_refused_and_the_worker_keeps_scoring(lc_settings: Settings, lc_worker: WorkerProcess) -> None:
    store = ModelStore(lc_settings.model_dir)
    serving = store.current()
    broken = copy_version(store, serving)
    (store.root / broken / "model.keras").write_bytes(b"PK\x03\x04 truncated")
    store.promote(broken)
    wait_log(lc_worker, f"promoted model {broken} for group default refused, still serving {serving}")
    events = [json.loads(v) for v in topic_messages(lc_settings, lc_settings.health_topic)]
    refused = [e for e in events if e["kind"] == "load-refused"]
    assert refused and broken in refused[-1]["message"] and refused[-1]["model_version"] == serving
    client = redis.Redis.from_url(lc_settings.redis_url_value())
    assert client.xlen(f"{lc_settings.redis_prefix}:model-health") >= 1

    # Still scoring, with the version it had.
    publisher = ReadingPublisher(lc_settings)
    rng = np.random.default_rng(5)
    start = int(time.time() * 1000) - 600_000
    for t in range(20):
        publisher.send("keep-0", reading_json("keep-0", start + t * 1000, _noisy(rng)))
    publisher.flush()
    wait_scored(lc_settings, {"keep-0": start + 19_000})
    assert client.hget(RedisKeys(lc_settings.redis_prefix).device("keep-0"), "model_version").decode() == serving
    store.rollback()  # leave the store serving a working version for the tests after this one


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings.as_env()}
    return subprocess.run([sys.executable, "-m", "stream_app", *args], env=env, capture_output=True, text=True, timeout=120)


def _stuck_alert(settings: Settings, device: str) -> list:
    """Readings of a device whose sensors repeat one value: one alert episode (the stuck check)."""
    publisher = ReadingPublisher(settings)
    start = int(time.time() * 1000) - 300_000
    for t in range(30):
        publisher.send(device, reading_json(device, start + t * 1000, NORMAL))
    publisher.flush()
    wait_scored(settings, {device: start + 29_000})
    alerts = redis_alerts(settings, device)
    assert alerts, "a stuck device raises an alert"
    return alerts


def test_operator_feedback_by_cli_and_topic(lc_settings: Settings, lc_worker: WorkerProcess) -> None:
    import asyncio

    import redis.asyncio as aioredis

    from stream_app.worker.feedback import FeedbackStore

    first = _stuck_alert(lc_settings, "fb-0")[0]
    done = _cli(lc_settings, "alerts", "label", first.alert_id, "--confirmed", "--note", "bearing replaced")
    assert done.returncode == 0, done.stderr
    assert "labelled confirmed" in done.stdout

    unknown = _cli(lc_settings, "alerts", "label", "no-such-alert", "--false-alarm")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "error: unknown alert id 'no-such-alert': no such alert in Redis (or it expired)"

    recent = _cli(lc_settings, "alerts", "recent", "--device", "fb-0", "--json")
    shown = [json.loads(line) for line in recent.stdout.splitlines()]
    assert shown and shown[-1]["feedback"]["verdict"] == "confirmed" and shown[-1]["feedback"]["note"] == "bearing replaced"

    # The topic path: another tool judges another device's alert as a false alarm; an unknown id
    # and a malformed message are dead-lettered with the reason.
    second = _stuck_alert(lc_settings, "fb-1")[0]
    publisher = ReadingPublisher(lc_settings)
    topic = lc_settings.feedback_topic
    publisher.send(second.alert_id, orjson.dumps({"alert_id": second.alert_id, "verdict": "false_alarm", "by": "cmms"}), topic=topic)
    publisher.send("x", orjson.dumps({"alert_id": "nope-123", "verdict": "confirmed"}), topic=topic)
    publisher.send("x", b'{"alert_id": "a", "verdict": "maybe"}', topic=topic)
    publisher.flush()

    async def judged() -> dict:
        client = aioredis.from_url(lc_settings.redis_url_value())
        try:
            store = FeedbackStore(client, lc_settings.redis_prefix)
            return {"feedback": await store.for_alerts([second]), "precision": await store.precision()}
        finally:
            await client.aclose()

    deadline = time.monotonic() + 60
    while not (state := asyncio.run(judged()))["feedback"]:
        assert time.monotonic() < deadline, lc_worker.tail()
        time.sleep(0.5)
    assert state["feedback"][second.alert_id]["verdict"] == "false_alarm"
    version = first.model_version
    assert second.model_version == version
    precision = state["precision"][version]
    assert (precision.confirmed, precision.false_alarms, precision.precision) == (1, 1, 0.5)

    wait_log(lc_worker, "alert feedback refused: not a feedback message: verdict")
    letters = [json.loads(v) for v in topic_messages(lc_settings, lc_settings.dlq_topic)]
    reasons = [l["reason"] for l in letters if l["source_topic"] == topic]
    assert any(r.startswith("unknown alert id 'nope-123'") for r in reasons), reasons
    assert any(r.startswith("not a feedback message: verdict") for r in reasons), reasons


def test_train_from_topic_leaves_out_confirmed_faults_and_keeps_false_alarms(lc_settings: Settings, lc_worker: WorkerProcess) -> None:
    from producers.scenarios import FEATURES
    from stream_app.ops.retrain import collect

    # After the feedback test: fb-0's episode is a confirmed fault, fb-1's a false alarm.
    since_ms = int(time.time() * 1000) - 3_600_000
    normal, counts, recent = collect(lc_settings, since_ms, FEATURES, "default", window=WINDOW)
    assert {"fb-0", "fb-1"} <= set(recent.ts), "read back from the topic by time"
    assert counts["confirmed faults"] >= 1 and counts["false alarms kept"] >= 1
    assert "fb-0" not in normal.kept_by_device, "a confirmed fault is never learned as normal"
    assert normal.kept_by_device.get("fb-1") == len(recent.ts["fb-1"]), "a false alarm's readings are normal data"

    # Some plain normal traffic to train on.
    from producers.fleet import run_simulation
    from producers.scenarios import Scenario

    stats, _ = run_simulation(lc_settings, Scenario(devices=4, device_prefix="retrain", duration_s=300, seed=5),
                              start_ms=int(time.time() * 1000) - 400_000, speed=0)  # fmt: skip
    wait_scored(lc_settings, stats.last_ts_ms or {})
    store = ModelStore(lc_settings.model_dir)
    before = store.current()
    done = _cli(lc_settings, "train", "--from-topic", "--since", "1h", "--window", str(WINDOW), "--units", "4", "--epochs", "1")
    assert done.returncode == 0, done.stderr
    assert "not promoted" in done.stdout and f"current {before}" in done.stdout
    assert store.current() == before
    card = store.load(store.versions()[-1]).card
    assert card.notes["compared_with"]["version"] == before
    assert card.notes["left_out"]["confirmed faults"] >= 1
    assert card.drift_reference is not None


def test_shadow_alerts_never_reach_alert_consumers_and_compare_reports_both(lc_settings: Settings, lc_worker: WorkerProcess) -> None:
    from producers.fleet import run_simulation
    from producers.scenarios import Scenario

    store = ModelStore(lc_settings.model_dir)
    champion = store.current()
    candidate = copy_version(store, champion)
    thresholds = orjson.loads((store.root / candidate / "thresholds.json").read_bytes())
    thresholds["threshold"] = 0.05  # a jumpy candidate: every window over its line
    (store.root / candidate / "thresholds.json").write_bytes(orjson.dumps(thresholds))
    done = _cli(lc_settings, "models", "shadow", candidate)
    assert done.returncode == 0, done.stderr
    wait_log(lc_worker, f"shadow scoring for group default: {candidate} beside {champion}")

    scenario = Scenario(devices=3, device_prefix="shadowed", duration_s=120, seed=9)
    start_ms = int(time.time() * 1000) - 200_000
    stats, sim = run_simulation(lc_settings, scenario, start_ms=start_ms, speed=0)
    wait_scored(lc_settings, stats.last_ts_ms or {})
    client = redis.Redis.from_url(lc_settings.redis_url_value())
    deadline = time.monotonic() + 20
    while True:
        shadow = [orjson.loads(f[b"alert"]) for _, f in client.xrange(f"{lc_settings.redis_prefix}:shadow:alerts")]
        ours = [a for a in shadow if a["device_id"].startswith("shadowed")]
        if len(ours) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {a["model_version"] for a in ours} == {candidate} and len({a["device_id"] for a in ours}) == 3
    # Never on the alerts topic nor in the alerts stream: nothing downstream acts on a candidate.
    assert all(a.model_version != candidate for a in redis_alerts(lc_settings, ""))
    assert all(a.model_version != candidate for a in topic_alerts(lc_settings, ""))

    compare = _cli(lc_settings, "models", "compare", "--json")
    assert compare.returncode == 0, compare.stderr
    row = next(r for r in json.loads(compare.stdout) if r["challenger"] == candidate)
    assert row["champion"] == champion and row["windows"]["challenger"] > 0 and row["windows"]["champion"] > 0
    assert row["alerts_opened"]["challenger"] >= 3 and row["alerts_opened"]["champion"] == 0
    assert row["agreement"] is not None and row["agreement"] < 0.5
    assert row["ms_per_1k_windows"]["challenger"] > 0
    # The same figures as an offline run of both versions over the same readings.
    offline = _offline(lc_settings, [champion, candidate], scenario, start_ms)
    assert row["windows"] == {"champion": offline[champion]["windows"], "challenger": offline[candidate]["windows"]}
    assert row["alerts_opened"] == {"champion": offline[champion]["opened"], "challenger": offline[candidate]["opened"]}
    assert row["over_line_share"]["challenger"] == offline[candidate]["over_line"] / offline[candidate]["windows"]
    table = _cli(lc_settings, "models", "compare")
    assert "challenger" in table.stdout and candidate in table.stdout

    assert _cli(lc_settings, "models", "shadow", "--off").returncode == 0
    wait_log(lc_worker, f"shadow scoring for group default ended ({candidate})")
    history = _cli(lc_settings, "models", "history", "--json")
    actions = [json.loads(line)["action"] for line in history.stdout.splitlines()]
    assert actions[-2:] == ["shadow", "shadow-off"]


def _offline(settings: Settings, versions: list[str], scenario, start_ms: int) -> dict[str, dict[str, int]]:  # type: ignore[no-untyped-def]
    """Each version's detector over the scenario's readings, in this process (what `evaluate` runs)."""
    from producers.scenarios import FEATURES
    from producers.simulator import FleetSimulator
    from stream_app.contracts import Reading
    from stream_app.worker.start import build_detector

    readings = [
        Reading(device_id=device, ts=ts, values=dict(zip(FEATURES, map(float, values[d]))))
        for ts, values in FleetSimulator(scenario, start_ms).ticks()
        for d, device in enumerate(FleetSimulator(scenario, start_ms).device_ids)
    ]
    store = ModelStore(settings.model_dir)
    out = {}
    for version in versions:
        detector = build_detector(settings.model_copy(update={"batch_max_size": 64}), store.load(version))
        found = [detector.process(readings[i : i + 64]) for i in range(0, len(readings), 64)]
        out[version] = {
            "windows": sum(d.scored for d in found),
            "over_line": sum(int((d.window_ratio > 1.0).sum()) for d in found),
            "opened": sum(1 for d in found for a in d.alerts if a.episode.state == "open"),
        }
    return out
