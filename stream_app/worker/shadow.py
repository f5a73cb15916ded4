"""Champion and challenger: a candidate version scores the live stream beside the current one.

``floorwatch models shadow VERSION [--group G]`` writes the store's ``SHADOW`` pointer; workers
notice it (reload.py) and build the candidate. Each batch, after the current model has scored it
and its alerts are sent, the candidate scores the same readings with its own windows and episodes.
Its alerts go to a shadow stream in Redis only, never to the alerts topic nor ``<prefix>:alerts``:
nothing downstream acts on them. Promoting the candidate ends the shadow (it is then the current
model); ``models shadow --off`` ends it too. A candidate with the current model's window length and
features starts from a copy of its windows; another starts empty (T - 1 readings per device unscored by it).

Redis (prefix ``floorwatch``):

* ``<prefix>:shadow:alerts``                 stream of candidate alerts (fields ``alert_id``, ``alert``), capped
* ``<prefix>:shadow:stats:<candidate>``      hash of counters for `models compare`: ``readings``,
  ``windows``, ``over_line``, ``alerts_opened``, ``seconds`` and the same with ``champion_``, plus
  ``agree`` / ``compared`` (device states after a batch that match / compared), ``champion`` (its version)
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from stream_app.contracts import Alert, Reading
from stream_app.pipeline.detector import Detection, Detector
from stream_app.pipeline.group_detector import Detections, GroupDetector
from stream_app.worker.health import HealthSink

log = logging.getLogger(__name__)

_ADD = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[3]) then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'alert_id', ARGV[4], 'alert', ARGV[1])
  return 1
end
return 0
"""


class ShadowKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    @property
    def alerts(self) -> str:
        return f"{self.prefix}:shadow:alerts"

    def alert_id(self, alert_id: str) -> str:
        return f"{self.prefix}:shadow:alert-ids:{alert_id}"

    def stats(self, version: str) -> str:
        return f"{self.prefix}:shadow:stats:{version}"


class ShadowScoring:
    """The candidates (one per asset group at most) and what they found."""

    def __init__(self, detector: GroupDetector, client: aioredis.Redis | None, prefix: str, *,
                 health: HealthSink | None = None, maxlen: int = 10_000, id_ttl_s: int = 7 * 24 * 3600) -> None:  # fmt: skip
        self.detector = detector
        self.client = client
        self.keys = ShadowKeys(prefix)
        self.health = health
        self.maxlen = maxlen
        self.id_ttl_s = id_ttl_s
        self.candidates: dict[str, Detector] = {}
        self._add = client.register_script(_ADD) if client is not None else None

    def set(self, group: str, candidate: Detector | None) -> None:
        """Start (or replace, or with None end) the group's candidate; called by the reloader."""
        old = self.candidates.pop(group, None)
        if candidate is not None:
            champion = self.detector.detectors[group]
            if champion.features == candidate.features and champion.windows.length == candidate.windows.length:
                # A copy of the champion's windows: the candidate scores from the next reading on,
                # with its own episodes (a copy, so the two never share state).
                candidate.windows = copy.deepcopy(champion.windows)
            # Each device's line too (in units of either model's calibrated line): a candidate that
            # started with empty lines would sit out every device's warm-up, and compare unfairly.
            candidate.model_lines = copy.deepcopy(champion.model_lines)
            candidate.level_lines = copy.deepcopy(champion.level_lines)
            self.candidates[group] = candidate
            log.warning("shadow scoring for group %s: %s beside %s", group, candidate.model_version,
                        self.detector.detectors[group].model_version)  # fmt: skip
        elif old is not None:
            log.warning("shadow scoring for group %s ended (%s)", group, old.model_version)

    def version_of(self, group: str) -> str | None:
        """The store-local version (``v0004``) the group shadows, as the SHADOW pointer names it."""
        candidate = self.candidates.get(group)
        return candidate.bundle.card.version if candidate is not None else None

    def score(self, readings: Sequence[Reading], detections: Detections) -> list[tuple[Detector, Detection, dict[str, float]]]:
        """Score the batch with each candidate; returns (candidate, its detection, counters)."""
        if not self.candidates or not readings:
            return []
        results = []
        single = not self.detector.router.groups
        group_of = self.detector.router.group_of
        for group, candidate in self.candidates.items():
            share = readings if single else [r for r in readings if group_of(r.device_id) == group]
            if not share:
                continue
            started = time.perf_counter()
            found = candidate.process(share)
            seconds = time.perf_counter() - started
            champion_version = self.detector.detectors[group].model_version
            champion = detections.by_model.get(champion_version, Detection())
            agree = sum(
                1 for device, status in found.statuses.items()
                if (mine := champion.statuses.get(device)) is not None and mine.state == status.state
            )  # fmt: skip
            counters = {
                "readings": len(share), "windows": found.scored, "over_line": int((found.window_ratio > 1.0).sum()),
                "alerts_opened": sum(1 for a in found.alerts if a.episode.state == "open"), "seconds": seconds,
                "champion_windows": champion.scored, "champion_over_line": int((champion.window_ratio > 1.0).sum()),
                "champion_alerts_opened": sum(1 for a in champion.alerts if a.episode.state == "open"),
                "champion_seconds": detections.seconds.get(champion_version, 0.0),
                "agree": agree, "compared": len(found.statuses),
            }  # fmt: skip
            results.append((candidate, found, counters))
        return results

    async def write(self, candidate: Detector, found: Detection, counters: dict[str, float]) -> None:
        """Candidate alerts to the shadow stream, counters to its stats hash; best-effort."""
        if self.client is None or self._add is None:
            return
        pipe = self.client.pipeline(transaction=False)
        for alert in found.alerts:
            await self._add(
                keys=[self.keys.alert_id(alert.alert_id), self.keys.alerts],
                args=[alert.model_dump_json(), self.maxlen, self.id_ttl_s, alert.alert_id], client=pipe,
            )  # fmt: skip
        key = self.keys.stats(candidate.model_version)
        group = candidate.bundle.group
        pipe.hset(key, mapping={"champion": self.detector.detectors[group].model_version, "group": group})
        for name, value in counters.items():
            if isinstance(value, float):
                pipe.hincrbyfloat(key, name, value)
            else:
                pipe.hincrby(key, name, int(value))
        try:
            await asyncio.wait_for(pipe.execute(), 2.0)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            log.debug("shadow results not written (%s)", type(exc).__name__)


async def shadow_alerts(client: aioredis.Redis, prefix: str, count: int = 10_000) -> list[Alert]:
    entries = await client.xrevrange(ShadowKeys(prefix).alerts, count=count)
    return [Alert.model_validate_json(fields[b"alert"]) for _, fields in entries]


async def shadow_stats(client: aioredis.Redis, prefix: str) -> dict[str, dict[str, str]]:
    """Counters per candidate version."""
    keys = ShadowKeys(prefix)
    base = keys.stats("")
    out = {}
    async for key in client.scan_iter(match=base + "*", count=500):
        raw = await client.hgetall(key)
        out[key.decode()[len(base):]] = {k.decode(): v.decode() for k, v in raw.items()}
    return dict(sorted(out.items()))
