"""The console's goals (issue 15) measured in headless Chromium on fresh embedded services.

    PYTHONPATH=. nice -n 5 python scripts/console_timing.py [--devices 1000] [--big 10000]
    PYTHONPATH=. python scripts/console_timing.py --screenshot docs/console.png

1. A live fleet: a worker (the tests' tiny model) fed ``--devices`` simulated devices (``producers``'
   simulator: ``--warmup-s`` of readings as fast as possible up to the wall clock, then in real time) and
   ``floorwatch console``. Times, off the page's own clock: first paint of the fleet table (a
   performance mark console.js sets) and the pager counting every device, for a console just started
   (its first snapshot read) and for one already running. Then one device fails (a power surge the
   simulator injects) and, from its alert's entry in the Redis stream (the entry id is Redis's clock;
   the same host's as the browser's), the time until the feed shows it and until its device page,
   open in a second tab, shows it anomalous with the episode shaded.
2. ``--big`` devices written into Redis by the worker's own writer (RedisSink with ScoreHistory, full
   history: ``history_points`` steps per device) and no worker: first paint and a search in the
   browser; the history's Redis memory (MEMORY USAGE over a sample, and INFO's used_memory).

``--screenshot PATH`` instead draws a device page with a long history (a replay of a few hours of a
small fleet, one overheating) for the README.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

from producers.fleet import start_ms_for
from producers.publish import ReadingPublisher, paced, reading_json
from producers.scenarios import FEATURES, Failure, FailureKind, Scenario
from producers.simulator import FleetSimulator
from stream_app.config.settings import Settings
from stream_app.console.fleet import Fleet
from stream_app.lab.harness import ConsoleProcess, WorkerProcess, fresh_services
from stream_app.pipeline.detector import DeviceStatus
from stream_app.worker.history import ScoreHistory
from stream_app.worker.sinks import RedisKeys
from stream_app.worker.sinks.redis import RedisSink
from stream_app.worker.topics import ensure_topics
from tests.support.builders import train_tiny_model
from tests.support.services import chromium_path, wait_scored

# Before the page loads: note when the pager first counts the whole fleet (performance.now(), ms since
# navigation) and, once armed, when the feed first shows a fresh alert of the watched device and when
# the device page shows it anomalous with an episode drawn (Date.now(), the host's clock, as Redis's).
OBSERVER = """
([device, devices]) => {
  window.__seen = {};
  const check = () => {
    if (!window.__seen.counted && (document.querySelector("#pageinfo")?.textContent || "").startsWith(devices + " devices"))
      window.__seen.counted = performance.now();
    if (!window.__armed) return;
    if (!window.__seen.feed && document.querySelector(`#feed li.fresh[data-device="${device}"]`)) window.__seen.feed = Date.now();
    const state = document.querySelector("#device-state"), score = document.querySelector("#score");
    if (!window.__seen.device && state && state.textContent.includes("anomalous") && score && Number(score.dataset.episodes) > 0)
      window.__seen.device = Date.now();
  };
  document.addEventListener("DOMContentLoaded", () => new MutationObserver(check).observe(document.body,
    { childList: true, subtree: true, characterData: true, attributes: true, attributeFilter: ["data-episodes"] }));
}
"""


def _observed(browser: Any, url: str, device: str, devices: int) -> Any:
    """A fresh tab at ``url`` with the observer installed."""
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.add_init_script(f"({OBSERVER})({[device, devices]!r})")
    page.goto(url)
    return page


class Feeder:
    """The simulated fleet published from a thread: as fast as possible while its clock is behind the
    wall clock, then in real time; or at ``speed`` times its clock. It holds at ``hold_tick`` (the
    failure's first) until ``go`` is set."""

    def __init__(self, settings: Settings, scenario: Scenario, start_ms: int, hold_tick: int | None = None,
                 speed: float | None = None) -> None:  # fmt: skip
        self.settings = settings
        self.sim = FleetSimulator(scenario, start_ms)
        self.hold_tick = hold_tick
        self.speed = speed
        self.go = threading.Event()
        self.stop = threading.Event()
        self.released_at = 0.0  # time.time() when the failure's first readings were sent
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        publisher = ReadingPublisher(self.settings)
        try:
            ticks = self.sim.ticks() if self.speed is None else paced(self.sim.ticks(), self.speed)
            for tick, (ts, values) in enumerate(ticks):
                if tick == self.hold_tick:
                    while not self.go.wait(0.2):
                        if self.stop.is_set():
                            return
                    self.released_at = time.time()
                if self.stop.is_set():
                    return
                ahead = ts / 1000 - time.time()
                if ahead > 0:
                    publisher.flush()
                    time.sleep(ahead)
                for device, row in zip(self.sim.device_ids, values.tolist()):
                    publisher.send(device, reading_json(device, ts, dict(zip(FEATURES, row))))
                publisher.poll()
            publisher.flush()
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    @contextmanager
    def running(self) -> Iterator[Feeder]:
        self.thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            self.thread.join(timeout=30)


def _say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)


def _browser() -> Any:
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise SystemExit("no Chromium found: `make browser` installs Debian's chromium")
    return sync_playwright(), path


def _first_paints(browser: Any, url: str, devices: int, out: dict[str, float], loads: int = 5) -> None:
    """The first load right after the console started, then ``loads`` more a second apart (some find
    the snapshot due for a refresh): the median and the slowest."""
    out["first paint, console just started (ms)"], out["all devices counted, just started (ms)"] = _first_paint(browser, url, devices)
    paints, counts = [], []
    for _ in range(loads):
        time.sleep(1.0)
        paint, counted = _first_paint(browser, url, devices)
        paints.append(paint)
        counts.append(counted)
    out[f"first paint, median of {loads} (ms)"] = statistics.median(paints)
    out[f"first paint, slowest of {loads} (ms)"] = max(paints)
    out[f"all devices counted, slowest of {loads} (ms)"] = max(counts)


def _first_paint(browser: Any, url: str, devices: int) -> tuple[float, float]:
    """A fresh tab on the fleet: ms from navigation to the table's first rows, and to the pager's full count."""
    page = _observed(browser, url, "", devices)
    page.wait_for_function("window.__seen.counted", timeout=60_000)
    page.wait_for_function("performance.getEntriesByName('fleet-rendered').length > 0", timeout=60_000)
    paint = page.evaluate("performance.getEntriesByName('fleet-rendered')[0].startTime")
    counted = page.evaluate("window.__seen.counted")
    page.close()
    return float(paint), float(counted)


def live_fleet(settings: Settings, work: Path, devices: int, warmup_s: int) -> dict[str, float]:
    settings = settings.model_copy(update={"redis_prefix": "live", "app_id": "console-timing-live"})
    ensure_topics(settings)
    failing_index = devices // 2
    hold = warmup_s + 20  # 20 s of real-time readings before the failure, if the page is ready by then
    scenario = Scenario(
        devices=devices, rate_hz=1, duration_s=hold + 300, seed=11,
        failures=[Failure(device=failing_index, kind=FailureKind.power_surge, start_s=hold, duration_s=300, magnitude=0.03)],
    )  # fmt: skip
    client = redis.Redis.from_url(settings.redis_url_value())
    keys = RedisKeys(settings.redis_prefix)
    out: dict[str, float] = {}
    with WorkerProcess(settings, work / "worker.log") as worker:
        worker.wait_ready(300)
        _say(f"worker ready; feeding {devices} devices, {warmup_s} s of readings then real time")
        feeder = Feeder(settings, scenario, int(time.time() * 1000) - warmup_s * 1000, hold_tick=hold)
        failing = feeder.sim.device_ids[failing_index]
        with feeder.running():
            started = time.monotonic()
            warm_last = feeder.sim.start_ms + (warmup_s - 1) * 1000
            wait_scored(settings, dict.fromkeys(feeder.sim.device_ids, warm_last), timeout_s=600)
            out["warm-up scored (s)"] = time.monotonic() - started
            _say("warm-up scored; opening the console")
            playwright, path = _browser()
            with playwright as p, ConsoleProcess(settings, work / "console-live.log") as console:
                browser = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
                try:
                    _first_paints(browser, console.url, devices, out)
                    fleet = _observed(browser, console.url, failing, devices)
                    device = _observed(browser, f"{console.url}#/device/{failing}", failing, devices)
                    for page in (fleet, device):
                        page.wait_for_selector("#live:text('live')", timeout=30_000)
                    device.wait_for_selector("#device-state", timeout=30_000)
                    before = client.xrevrange(keys.alerts, count=1)
                    last_id = before[0][0].decode() if before else "0-0"
                    for page in (fleet, device):
                        page.evaluate("window.__armed = true")
                    feeder.go.set()
                    _say("failure released")
                    entry_ms = _alert_entry_ms(client, keys, failing, last_id, worker, timeout_s=120)
                    fleet.wait_for_function("window.__seen.feed", timeout=60_000)
                    device.wait_for_function("window.__seen.device", timeout=60_000)
                    out["failure sent -> alert in Redis (s)"] = entry_ms / 1000 - feeder.released_at
                    out["alert -> in the feed (ms)"] = float(fleet.evaluate("window.__seen.feed") - entry_ms)
                    out["alert -> device page anomalous, shaded (ms)"] = float(device.evaluate("window.__seen.device") - entry_ms)
                finally:
                    browser.close()
        if feeder.error is not None:
            raise feeder.error
    return out


def _alert_entry_ms(client: redis.Redis, keys: RedisKeys, device: str, after: str, worker: WorkerProcess, timeout_s: float) -> int:
    """The stream entry time (Redis's clock, ms) of ``device``'s first alert after entry ``after``."""
    from stream_app.contracts import Alert

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        worker.check()
        for entry_id, fields in client.xrange(keys.alerts, min=f"({after}"):
            if Alert.model_validate_json(fields[b"alert"]).device_id == device:
                return int(entry_id.decode().split("-")[0])
        time.sleep(0.05)
    raise SystemExit(f"no alert for {device} within {timeout_s:.0f} s; see {worker.log}")


def _statuses(ids: list[str], ts: int, rng: random.Random) -> list[DeviceStatus]:
    """One status a device, as the detector reports it: every 97th anomalous (3 x the usual score)."""
    out = []
    for device in ids:
        hot = int(device.rsplit("-", 1)[1]) % 97 == 0
        score = rng.lognormvariate(-4.5, 0.3) * (3 if hot else 1)
        values = {f: rng.gauss(m, 0.002) for f, m in zip(FEATURES, (0.06, 0.075, 0.045, 0.084))}
        out.append(DeviceStatus(device, ts, "anomalous" if hot else "normal", score, 0.02, score / 0.02, values))
    return out


async def _write_big(settings: Settings, devices: int, written: int = 500) -> dict[str, float]:
    """``devices`` hashes and full histories through the worker's writer (RedisSink + ScoreHistory);
    their memory. All but the last point of ``written`` devices' histories are written by the writer and
    COPYed server-side to the others (writing 1.8 M points from Python took ~15 min on this shared
    machine); the last step is written for every device, hashes included."""
    client = aioredis.from_url(settings.redis_url_value())
    keys = RedisKeys(settings.redis_prefix)
    history = ScoreHistory(settings.redis_prefix, step_s=settings.history_step_s, points=settings.history_points)
    sink = RedisSink(client, settings.redis_prefix, status_interval_s=0, history=history)
    before = (await client.info("memory"))["used_memory"]
    rng = random.Random(5)
    ids = [f"press-{d:05d}" for d in range(devices)]
    step_ms = int(settings.history_step_s * 1000)
    now_ms = int(time.time() * 1000)
    started = time.monotonic()
    for step in range(settings.history_points - 1):
        ts = now_ms - (settings.history_points - 1 - step) * step_ms
        if not await sink.write((), {"v0001": _statuses(ids[:written], ts, rng)}):
            raise SystemExit("Redis refused the writes")
    pipe = client.pipeline(transaction=False)
    for i, device in enumerate(ids[written:]):
        pipe.copy(history.key(ids[i % written]), history.key(device))
    await pipe.execute()
    if not await sink.write((), {"v0001": _statuses(ids, now_ms, rng)}):
        raise SystemExit("Redis refused the writes")
    written_s = time.monotonic() - started
    _say(f"{devices} devices x {settings.history_points} points written in {written_s:.0f} s")
    after = (await client.info("memory"))["used_memory"]
    sample = ids[:: max(1, devices // 500)]
    history_bytes = [await client.memory_usage(history.key(d)) or 0 for d in sample]
    hash_bytes = [await client.memory_usage(keys.device(d)) or 0 for d in sample]
    points = await client.llen(history.key(ids[-1]))
    await client.aclose()
    per_device = statistics.fmean(history_bytes)
    return {
        "history points a device": points,
        "written (s)": written_s,
        "history MB (MEMORY USAGE x devices)": per_device * devices / 1e6,
        "history B a point": per_device / points,
        "hashes MB (MEMORY USAGE x devices)": statistics.fmean(hash_bytes) * devices / 1e6,
        "used_memory grew by (MB)": (after - before) / 1e6,
    }


async def _snapshot_ms(settings: Settings) -> float:
    """The console server's read of the fleet (SCAN + pipelined HMGETs, rows built), alone."""
    client = aioredis.from_url(settings.redis_url_value())
    started = time.perf_counter()
    await Fleet(client, settings.redis_prefix).snapshot()
    elapsed = time.perf_counter() - started
    await client.aclose()
    return elapsed * 1000


def big_fleet(settings: Settings, work: Path, devices: int) -> dict[str, float]:
    settings = settings.model_copy(update={"redis_prefix": "big"})
    out = asyncio.run(_write_big(settings, devices))
    out["server's fleet read (ms)"] = asyncio.run(_snapshot_ms(settings))
    playwright, path = _browser()
    with playwright as p, ConsoleProcess(settings, work / "console-big.log") as console:
        browser = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            _first_paints(browser, console.url, devices, out)
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(console.url)
            page.wait_for_selector("#fleet tbody tr", timeout=60_000)
            query = "-0999"
            matching = sum(query in f"press-{d:05d}" for d in range(devices))
            started = time.monotonic()
            page.fill("#q", query)
            page.wait_for_function("(n) => (document.querySelector('#pageinfo')?.textContent || '').startsWith(n + ' devices')",
                                   arg=matching, timeout=60_000)  # fmt: skip
            out[f"search typed -> {matching} found (ms, incl. 250 ms debounce)"] = (time.monotonic() - started) * 1000
        finally:
            browser.close()
    return out


def screenshot(settings: Settings, work: Path, out: Path, devices: int = 12, hours: float = 2.0, speed: float = 40.0) -> None:
    """A device page with ``hours`` of history, one overheating for the last 40 minutes: a replay at
    ``speed`` x, ending now. Not faster: the sink writes a device's status (and so a history point) once
    a second of wall time, so a replay at more than one step (60 s) a second leaves gaps in the history."""
    settings = settings.model_copy(update={"redis_prefix": "shot", "app_id": "console-timing-shot"})
    ensure_topics(settings)
    duration = int(hours * 3600)
    failing = 3
    scenario = Scenario(
        devices=devices, rate_hz=1, duration_s=duration, seed=7,
        failures=[Failure(device=failing, kind=FailureKind.overheating, start_s=duration - 40 * 60, duration_s=40 * 60, magnitude=0.02)],
    )  # fmt: skip
    with WorkerProcess(settings, work / "worker-shot.log") as worker:
        worker.wait_ready(300)
        _say(f"replaying {hours:g} h of {devices} devices at {speed:g} x")
        feeder = Feeder(settings, scenario, start_ms_for(duration, speed, int(time.time() * 1000)), speed=speed)
        with feeder.running():
            feeder.thread.join()
        if feeder.error is not None:
            raise feeder.error
        last = feeder.sim.start_ms + (scenario.ticks - 1) * 1000
        wait_scored(settings, dict.fromkeys(feeder.sim.device_ids, last), timeout_s=900)
        device = feeder.sim.device_ids[failing]
        playwright, path = _browser()
        with playwright as p, ConsoleProcess(settings, work / "console-shot.log") as console:
            browser = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(f"{console.url}#/device/{device}")
                page.wait_for_selector("#score[data-episodes='1']", timeout=60_000)
                page.wait_for_timeout(500)
                page.screenshot(path=str(out))
                points = page.locator("#view .muted").first.text_content()
            finally:
                browser.close()
    print(f"{out}: {device}, {hours:g} h of 1 Hz readings replayed at {speed:g} x, history every {settings.history_step_s:g} s: {points}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=1_000, help="live fleet (0: skip)")
    parser.add_argument("--warmup-s", type=int, default=300, help="seconds of readings before the live part")
    parser.add_argument("--big", type=int, default=10_000, help="devices written into Redis (0: skip)")
    parser.add_argument("--screenshot", type=Path, help="only draw a device page to this PNG")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="console-timing-") as tmp:
        work = Path(tmp)
        base = Settings(
            model_dir=train_tiny_model(work / "models"), metrics_port=0, readings_partitions=2, refit=False,
            history_step_s=10.0, offline_min_s=120.0, log_level="info",
        )  # fmt: skip
        _say("tiny model trained; starting the embedded services")
        with fresh_services(base, work / "services") as settings:
            if args.screenshot:
                screenshot(settings.model_copy(update={"history_step_s": 60.0}), work, args.screenshot)
                return
            results: list[tuple[str, dict[str, float]]] = []
            if args.devices:
                results.append((f"{args.devices:,} live devices", live_fleet(settings, work, args.devices, args.warmup_s)))
            if args.big:
                big = settings.model_copy(update={"history_step_s": 60.0})
                results.append((f"{args.big:,} devices in Redis", big_fleet(big, work, args.big)))
    for title, figures in results:
        print(f"\n{title}")
        for name, value in figures.items():
            print(f"  {name:<60} {value:>10.2f}" if isinstance(value, float) else f"  {name:<60} {value:>10}")


if __name__ == "__main__":
    main()
