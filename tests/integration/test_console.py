"""``floorwatch console`` in a real browser (headless Chromium through Playwright) against a live
worker on the embedded broker and Redis: the page loads and shows the fleet, and an injected failure
appears in the live feed and on its device page within seconds, without a reload.

Skipped, with the reason, where no Chromium can be found (``make browser`` installs Debian's).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from producers.publish import ReadingPublisher, reading_json
from stream_app.config.settings import Settings
from stream_app.lab.embedded import EmbeddedServices, free_port
from stream_app.lab.harness import ConsoleProcess
from stream_app.worker.sinks import RedisKeys
from stream_app.worker.topics import ensure_topics
from tests.support.services import chromium_path

pytestmark = pytest.mark.integration

DEVICES = [f"cons-{i:02d}" for i in range(12)]
FAILING = "cons-07"
NORMAL = {"temperature": (0.06, 0.002), "vibration": (0.075, 0.002), "motor_rpm": (0.045, 0.001), "motor_amps": (0.084, 0.002)}


@pytest.fixture(scope="module")
def browser_path() -> str:
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium found: `make browser` installs Debian's chromium (apt-get)")
    return path


@pytest.fixture(scope="module")
def console_settings(services: EmbeddedServices, tiny_model_dir: Path) -> Settings:
    state = services.state()
    assert state is not None
    s = Settings(
        kafka_bootstrap_servers=state.bootstrap_servers, kafka_profile="embedded", redis_url=SecretStr(state.redis_url),
        model_dir=tiny_model_dir, app_id="floorwatch-console-test", metrics_port=0, readings_partitions=2,
        batch_max_wait_s=0.02, redis_prefix=f"console-{time.time_ns()}", readings_topic="console-readings",
        alerts_topic="console-alerts", dlq_topic="console-dlq", adapt_warmup_windows=0, history_step_s=1.0,
        offline_min_s=3600,
    )  # fmt: skip
    ensure_topics(s)
    return s


def _send(publisher: ReadingPublisher, device: str, ts: int, rng: random.Random, *, hot: bool = False) -> None:
    values = {k: rng.gauss(m, sd) for k, (m, sd) in NORMAL.items()}
    if hot:
        values["temperature"] = 0.2  # far outside the normal envelope
    publisher.send(device, reading_json(device, ts, values))


@pytest.fixture(scope="module")
def live(console_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A worker (default log level, metrics on a free port) fed a healthy fleet and one message it
    refuses, and the console on a free port."""
    metrics_port = free_port()
    env = {**os.environ, **console_settings.model_copy(update={"metrics_port": metrics_port}).as_env()}
    logs = tmp_path_factory.mktemp("console")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with open(logs / "worker.log", "wb") as out:
            procs.append(subprocess.Popen([sys.executable, "-m", "stream_app", "worker", "--processes", "1"], env=env, stdout=out, stderr=subprocess.STDOUT))
        publisher, rng = ReadingPublisher(console_settings), random.Random(3)
        client = redis.Redis.from_url(console_settings.redis_url_value())
        keys = RedisKeys(console_settings.redis_prefix)
        ts = int(time.time() * 1000) - 600_000
        deadline = time.monotonic() + 180
        # Healthy readings until every device's hash is written (the worker is up and scoring), and
        # at least 16 rounds of them: a score history worth drawing.
        rounds = 0
        while rounds < 16 or not all(client.exists(keys.device(d)) for d in DEVICES):
            rounds += 1
            assert procs[0].poll() is None, (logs / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "worker not ready:\n" + (logs / "worker.log").read_text()[-3000:]
            for _ in range(5):
                ts += 1000
                for device in DEVICES:
                    _send(publisher, device, ts, rng)
            publisher.flush()
            time.sleep(0.5)
        publisher.send(DEVICES[0], b'{"device_id": "cons-00", "ts": "yesterday"}')  # for the dead-letter topic
        publisher.flush()
        with ConsoleProcess(console_settings, logs / "console.log") as console:
            yield {"url": console.url, "ts": ts, "metrics_port": metrics_port, "logs": logs, "env": env}
        del publisher
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_the_console_shows_the_fleet_and_an_injected_failure_live(
    live: dict, console_settings: Settings, browser_path: str
) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, ts = live["url"], live["ts"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            started = time.monotonic()
            page.goto(url)
            # The fleet: every device in the table (server-side paging, 50 a page).
            expect(page.locator("#fleet tbody tr")).to_have_count(len(DEVICES), timeout=10_000)
            print(f"fleet rendered in {time.monotonic() - started:.2f} s")
            expect(page.locator("#live")).to_have_text("live", timeout=10_000)

            # The failure, published while the page stays open: readings far outside normal.
            publisher, rng = ReadingPublisher(console_settings), random.Random(4)
            for _ in range(12):
                ts += 1000
                for device in DEVICES:
                    _send(publisher, device, ts, rng, hot=device == FAILING)
            publisher.flush()
            sent = time.monotonic()
            item = page.locator(f"#feed li.fresh[data-device='{FAILING}']").first
            expect(item).to_be_visible(timeout=20_000)
            print(f"alert in the feed {time.monotonic() - sent:.2f} s after the failure was published")
            expect(page.locator(f"#fleet tr[data-device='{FAILING}']")).to_contain_text("anomalous", timeout=10_000)

            # Its device page: anomalous, the episode listed, the score chart and one chart per sensor drawn.
            item.locator("a").click()
            expect(page.locator("#device-state")).to_contain_text("anomalous", timeout=10_000)
            expect(page.locator("#episodes li")).to_contain_text("open", timeout=10_000)
            expect(page.locator("#score canvas")).to_have_count(1, timeout=10_000)
            expect(page.locator("#sensors .chart")).to_have_count(len(NORMAL), timeout=10_000)
            shot = os.environ.get("FLOORWATCH_CONSOLE_SCREENSHOT")  # the README's picture
            if shot:
                page.screenshot(path=shot)

            # The models and dead-letters pages load.
            page.goto(url + "#/models")
            expect(page.locator("#view")).to_contain_text("current", timeout=10_000)
            page.goto(url + "#/dead-letters")
            expect(page.locator("#view h2")).to_have_text("Recent dead letters", timeout=15_000)
        finally:
            browser.close()


def test_the_worker_says_it_is_ready_and_answers_health_checks(live: dict) -> None:
    import urllib.request

    log = (live["logs"] / "worker.log").read_text()
    ready = [line for line in log.splitlines() if "floorwatch worker ready: " in line]
    assert len(ready) == 1 and "models default=v0001" in ready[0] and "console-readings" in ready[0], log[-3000:]
    base = f"http://127.0.0.1:{live['metrics_port']}"
    assert urllib.request.urlopen(f"{base}/healthz").read() == b"ok\n"
    assert urllib.request.urlopen(f"{base}/readyz").read() == b"ready\n"
    assert b"floorwatch_readings_total" in urllib.request.urlopen(f"{base}/metrics").read()


def test_dlq_recent_shows_the_refused_message_and_its_reason(live: dict) -> None:
    import json

    deadline = time.monotonic() + 30
    while True:
        result = subprocess.run([sys.executable, "-m", "stream_app", "dlq", "recent", "--json"], env=live["env"],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert result.returncode == 0, result.stderr
        letters = [json.loads(line) for line in result.stdout.splitlines()]
        if letters or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert [letter["key"] for letter in letters] == ["cons-00"]
    assert "yesterday" in letters[0]["reason"] and letters[0]["size"] > 0
