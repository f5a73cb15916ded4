"""Each device's recent scores in Redis, bounded and downsampled, and its offline mark: what the
console draws.

* ``<prefix>:history:<device>``  list, newest first, at most ``points`` entries, expiring with the
  device hash. One entry per ``step_s`` of reading time: ``"ts_s,score,line,ratio,state,v1,v2,..."``,
  the point of that step farthest from normal (a short spike is kept, not averaged away), with the
  raw values of its reading in the order of the device hash's ``features`` field.
* ``<prefix>:device:<device>`` fields ``state = offline`` and ``offline_since``: the device has been
  silent (worker's clock) for longer than ``max(offline_factor x its observed interval, offline_min_s)``.
  Its open episode is suspended, not closed: the next reading puts its state back, and the detector
  carries the episode on (or closes it as usual once the device reads quiet).

The points are added to the sink's own status pipeline (``add``), so they cost no extra round trip
and sit behind the sink's circuit breaker. Bound: ``points`` entries a device (measured with scripts/history_memory.py: 76 B a point, 137 MB per 10,000 devices at the
default 180 points; memory scales with ``points``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from stream_app.contracts import iso_ms
from stream_app.pipeline.detector import DeviceStatus

log = logging.getLogger(__name__)

# A ratio of inf (a broken rule, a stuck sensor) is drawn at the top of the chart.
_RATIO_CAP = 99.0


@dataclass(slots=True)
class _Track:
    bucket: int = -1
    best: float = -1.0
    features: tuple[str, ...] = ()
    last_ts_ms: int = 0
    interval_ms: float = 0.0  # moving average of the gaps between the statuses seen
    seen_at: float = 0.0  # time.time() when a status last came
    offline: bool = False


class ScoreHistory:
    def __init__(self, prefix: str, *, step_s: float = 60.0, points: int = 180, ttl_s: int = 7 * 24 * 3600,
                 offline_factor: float = 10.0, offline_min_s: float = 30.0) -> None:  # fmt: skip
        self.prefix = prefix
        self.step_ms = max(1, int(step_s * 1000))
        self.points = points
        self.ttl_s = ttl_s
        self.offline_factor = offline_factor
        self.offline_min_s = offline_min_s
        self._tracks: dict[str, _Track] = {}

    def key(self, device_id: str) -> str:
        return f"{self.prefix}:history:{device_id}"

    def add(self, pipe: Pipeline, status: DeviceStatus, model_version: str) -> None:
        """Queue the status's point on ``pipe`` when it starts a step or beats the step's point so far."""
        track = self._tracks.get(status.device_id)
        if track is None:
            track = self._tracks[status.device_id] = _Track()
        if track.last_ts_ms and status.last_reading_ms > track.last_ts_ms:
            gap = status.last_reading_ms - track.last_ts_ms
            track.interval_ms = gap if not track.interval_ms else 0.8 * track.interval_ms + 0.2 * gap
        track.last_ts_ms = max(track.last_ts_ms, status.last_reading_ms)
        track.seen_at, track.offline = time.time(), False
        if not self.points or status.last_score is None:
            return
        ratio = min(status.ratio if status.ratio is not None else 0.0, _RATIO_CAP)
        bucket = status.last_reading_ms // self.step_ms
        key = self.key(status.device_id)
        if bucket == track.bucket:
            if ratio <= track.best:
                return
            pipe.lpop(key)  # replace the step's point (LPOP, not LSET: no error if the key is gone)
        elif bucket < track.bucket:
            return  # an older step (a redelivered batch): already drawn
        values = status.values or {}
        features = tuple(sorted(values))
        line = f"{status.line:.5g}" if status.line is not None else ""
        if features != track.features or track.bucket != bucket:
            # The hash's value order, and its line once a step (the console's fleet table shows it).
            pipe.hset(f"{self.prefix}:device:{status.device_id}", mapping={"features": ",".join(features), "line": line})
            track.features = features
        track.bucket, track.best = bucket, ratio
        fields = [str(status.last_reading_ms // 1000), f"{status.last_score:.5g}", line, f"{ratio:.4g}",
                  "a" if status.state == "anomalous" else "n", *(f"{values[f]:.5g}" for f in features)]  # fmt: skip
        pipe.lpush(key, ",".join(fields))
        pipe.ltrim(key, 0, self.points - 1)
        pipe.expire(key, self.ttl_s)

    def silent(self, now: float | None = None) -> list[str]:
        """Devices past their silence limit and not yet marked offline; tracks idle past the TTL are dropped."""
        now = time.time() if now is None else now
        found, stale = [], []
        for device, track in self._tracks.items():
            age = now - track.seen_at
            if age > self.ttl_s:
                stale.append(device)
            elif not track.offline and self.offline_factor > 0 and age > self.limit_s(track):
                found.append(device)
        for device in stale:
            del self._tracks[device]
        return found

    def limit_s(self, track: _Track) -> float:
        return max(self.offline_factor * track.interval_ms / 1000, self.offline_min_s)

    async def mark_offline(
        self, client: object, available: bool, timeout_s: float, on_failure: Callable[[], None] | None = None
    ) -> list[str]:
        """Mark newly silent devices offline in their hashes. Skipped while the sink's breaker is open;
        bounded by ``timeout_s``; a failure opens the breaker (``on_failure``) and leaves them to the next call."""
        devices = self.silent()
        if not devices or not available:
            return []
        pipe = client.pipeline(transaction=False)  # type: ignore[attr-defined]
        since = iso_ms(int(time.time() * 1000))
        for device in devices:
            # Only an existing hash: HSETEX-like guard, so a device whose hash expired is not re-created.
            pipe.eval(_MARK_OFFLINE, 1, f"{self.prefix}:device:{device}", since)
        try:
            await asyncio.wait_for(pipe.execute(), timeout_s)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            log.warning("offline marks not written (%s)", type(exc).__name__)
            if on_failure is not None:
                on_failure()
            return []
        for device in devices:
            track = self._tracks.get(device)
            if track is not None:
                track.offline = True
        log.info("%d device(s) silent past their limit: marked offline", len(devices))
        return devices


_MARK_OFFLINE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'state', 'offline', 'offline_since', ARGV[1])
  return 1
end
return 0
"""


def parse_point(entry: bytes | str, features: list[str]) -> dict[str, object]:
    """One history entry as a dict (for the console)."""
    text = entry.decode() if isinstance(entry, bytes) else entry
    parts = text.split(",")
    ts, score, line, ratio, state, *values = parts

    def num(x: str) -> float | None:
        try:
            v = float(x)
        except ValueError:
            return None
        return v if math.isfinite(v) else None

    return {
        "ts": int(ts), "score": num(score), "line": num(line), "ratio": num(ratio), "anomalous": state == "a",
        "values": {f: num(v) for f, v in zip(features, values)},
    }  # fmt: skip
