"""What the console reads from Redis: the fleet's device hashes (one shared snapshot, refreshed at
most every ``refresh_s`` whoever asks), the alert feed, a device's history and episodes.

Reads only, and bounded: a snapshot is one SCAN and HMGETs in chunks (a Lua script a chunk), at most once per
``refresh_s`` for all viewers together, so a page left open costs the workers' Redis little. A request
never waits for a refresh but the first: it gets the snapshot in hand while the next one is read
(with 10,000 devices a read takes about a second on a busy machine).

A device hash is written once a second at most (the sink's status interval) and its alert at once, so
a state older than the device's last alert is taken from the alert: the fleet and the device page
agree with the feed as soon as it shows the alert.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from datetime import datetime

import orjson
import redis.asyncio as aioredis
from pydantic import BaseModel, ValidationError

from stream_app.contracts import Alert
from stream_app.worker.history import parse_point
from stream_app.worker.sinks import RedisKeys

_CHUNK = 1_000
_SCAN_COUNT = 5_000  # keys a SCAN call looks at: a few round trips for a big keyspace, each under a millisecond
_FIELDS = ("state", "last_score", "line", "last_reading_ts", "updated_at", "model_version")
# The chunk's fields in one reply string (unit and record separators): parsing a reply per field in
# redis-py (without hiredis) took 0.7-1.2 s for 10,000 devices, splitting one string takes milliseconds.
_HMGET_MANY = r"""
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('HMGET', key, unpack(ARGV))
  for j = 1, #ARGV do v[j] = v[j] or '' end
  out[i] = table.concat(v, '\31')
end
return table.concat(out, '\30')
"""
SORT_KEYS = ("device", "state", "score", "ratio", "age", "group", "model")
STATES = ("normal", "anomalous", "offline")


class DeviceRow(BaseModel):
    device: str
    state: str  # normal, anomalous or offline
    severity: str | None = None  # the last alert's, while anomalous
    score: float | None = None
    line: float | None = None
    ratio: float | None = None  # score / line
    last_reading: str | None = None
    age_s: float | None = None  # since the worker last wrote the device (its clock)
    group: str = "default"
    model: str = ""


class FleetPage(BaseModel):
    total: int  # devices matching the filter
    page: int
    size: int
    counts: dict[str, int]  # the whole fleet by state
    rows: list[DeviceRow]


def _age_s(updated_at: str | None, now: float) -> float | None:
    if not updated_at:
        return None
    try:
        return max(0.0, now - datetime.fromisoformat(updated_at.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def _float(raw: bytes | None) -> float | None:
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


class AlertFeed:
    """The newest alerts (a bounded deque) and each device's last one, kept by following the alerts
    stream; subscribers (the SSE connections) get each new alert."""

    def __init__(self, client: aioredis.Redis, keys: RedisKeys, keep: int = 500) -> None:
        self.client = client
        self.keys = keys
        self.recent: deque[dict] = deque(maxlen=keep)
        self.last_by_device: dict[str, dict] = {}
        self._subscribers: set[asyncio.Queue[dict]] = set()
        self._last_id = b"0-0"

    def subscribe(self) -> asyncio.Queue[dict]:
        queue: asyncio.Queue[dict] = asyncio.Queue(maxsize=1_000)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict]) -> None:
        self._subscribers.discard(queue)

    async def load(self, count: int = 2_000) -> None:
        entries = await self.client.xrevrange(self.keys.alerts, count=count)
        for entry_id, fields in reversed(entries):
            self._take(entry_id, fields, publish=False)

    async def follow(self) -> None:
        """Until cancelled: new alerts from the stream (XREAD blocking 1 s, so within a second)."""
        while True:
            try:
                found = await self.client.xread({self.keys.alerts: self._last_id}, count=500, block=1_000)
            except (OSError, aioredis.RedisError):
                await asyncio.sleep(1.0)  # Redis away: the page shows what it has, and retries
                continue
            for _, entries in found or []:
                for entry_id, fields in entries:
                    self._take(entry_id, fields, publish=True)

    def _take(self, entry_id: bytes, fields: dict, *, publish: bool) -> None:
        self._last_id = entry_id
        try:
            alert = Alert.model_validate_json(fields.get(b"alert", b""))
        except ValidationError:
            return
        view = alert_view(alert)
        self.recent.appendleft(view)
        self.last_by_device[alert.device_id] = view
        if publish:
            for queue in list(self._subscribers):
                if queue.full():  # a stalled viewer loses alerts, not the console's memory
                    continue
                queue.put_nowait(view)


def alert_view(alert: Alert) -> dict:
    e = alert.episode
    return {
        "alert_id": alert.alert_id, "device": alert.device_id, "state": e.state, "severity": alert.severity,
        "at": alert.window_end, "started_at": e.started_at, "ended_at": e.ended_at, "episode_id": e.episode_id,
        "peak_ratio": e.peak_ratio, "score": alert.score, "threshold": alert.threshold,
        "model": alert.model_version, "close_reason": e.close_reason,
        "top_feature": max(alert.feature_errors, key=lambda f: alert.feature_errors[f]) if alert.feature_errors else None,
    }  # fmt: skip


class Fleet:
    def __init__(self, client: aioredis.Redis, prefix: str, *, refresh_s: float = 2.0, offline_after_s: float = 300.0) -> None:
        self.client = client
        self.keys = RedisKeys(prefix)
        self.refresh_s = refresh_s
        self.offline_after_s = offline_after_s
        self.feed = AlertFeed(client, self.keys)
        self._rows: list[DeviceRow] | None = None
        self._taken = -float("inf")
        self._reading: asyncio.Task[list[DeviceRow]] | None = None
        self._hmget_many = client.register_script(_HMGET_MANY)

    async def snapshot(self) -> list[DeviceRow]:
        """The fleet's rows: the snapshot in hand, a fresh read started behind it once it is ``refresh_s``
        old (one read at a time for all callers); only the first call waits for its read."""
        if time.monotonic() - self._taken >= self.refresh_s and self._reading is None:
            self._reading = asyncio.create_task(self._refresh())
            # Redis away: the next request tries again; whoever waits on the first read sees the error.
            self._reading.add_done_callback(lambda t: t.cancelled() or t.exception())
        if self._rows is None and self._reading is not None:
            return await asyncio.shield(self._reading)
        return self._rows or []

    async def _refresh(self) -> list[DeviceRow]:
        try:
            rows = await self._read()
            self._rows, self._taken = rows, time.monotonic()
            return rows
        finally:
            self._reading = None

    async def _read(self) -> list[DeviceRow]:
        head = f"{self.keys.prefix}:device:"
        names = [k async for k in self.client.scan_iter(match=f"{head}*", count=_SCAN_COUNT, _type="hash")]
        rows: list[DeviceRow] = []
        now = time.time()
        for start in range(0, len(names), _CHUNK):
            chunk = names[start : start + _CHUNK]
            reply = await self._hmget_many(keys=chunk, args=_FIELDS)
            for name, record in zip(chunk, reply.split(b"\x1e")):
                fields: list[bytes | None] = [f or None for f in record.split(b"\x1f")]
                rows.append(self._row(name.decode()[len(head) :], fields, now))
        return rows

    def _row(self, device: str, fields: list[bytes | None], now: float, last_alert: dict | None = None) -> DeviceRow:
        state, score, line, last, updated, model = fields
        text = (state or b"normal").decode()
        last_alert = last_alert or self.feed.last_by_device.get(device)
        if last_alert and text != "offline" and (not last or last_alert["at"] > last.decode()):
            # The hash is behind the alert (written at most once a second): the alert's state.
            text = "anomalous" if last_alert["state"] in ("open", "update") else "normal"
        age = _age_s(updated.decode() if updated else None, now)
        if age is not None and age > self.offline_after_s:
            text = "offline"  # its worker is gone too, or the mark is yet to come
        score_f, line_f = _float(score), _float(line)
        model_s = (model or b"").decode()
        return DeviceRow(
            device=device, state=text, score=score_f, line=line_f,
            ratio=score_f / line_f if score_f is not None and line_f else None,
            severity=last_alert["severity"] if text == "anomalous" and last_alert else None,
            last_reading=last.decode() if last else None, age_s=age,
            group=model_s.split("/")[0] if "/" in model_s else "default", model=model_s,
        )  # fmt: skip

    async def page(self, *, page: int = 0, size: int = 50, sort: str = "state", descending: bool = True,
                   state: str | None = None, query: str = "") -> FleetPage:  # fmt: skip
        rows = await self.snapshot()
        counts = {s: 0 for s in STATES}
        for row in rows:
            counts[row.state] = counts.get(row.state, 0) + 1
        chosen: Iterable[DeviceRow] = rows
        if state in STATES:
            chosen = (r for r in chosen if r.state == state)
        if query:
            q = query.lower()
            chosen = (r for r in chosen if q in r.device.lower() or q in r.group.lower() or q in r.model.lower())
        matched = sorted(chosen, key=_sort_key(sort if sort in SORT_KEYS else "state"), reverse=descending)
        size = max(1, min(size, 500))
        page = max(0, page)
        return FleetPage(total=len(matched), page=page, size=size, counts=counts, rows=matched[page * size : (page + 1) * size])

    async def device(self, device: str, alerts: int = 200) -> dict:
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.device(device))
        pipe.lrange(f"{self.keys.prefix}:history:{device}", 0, -1)
        pipe.xrevrange(self.keys.device_alerts(device), count=alerts)
        fields, history, entries = await pipe.execute()
        info = {k.decode(): v.decode() for k, v in fields.items()}
        features = [f for f in info.get("features", "").split(",") if f]
        points = [parse_point(e, features) for e in reversed(history)]
        views = []
        for _, f in entries:
            try:
                views.append(alert_view(Alert.model_validate_json(f.get(b"alert", b""))))
            except ValidationError:
                continue
        row = self._row(device, [fields.get(k.encode()) for k in _FIELDS], time.time(),
                        views[0] if views else None) if fields else None  # fmt: skip
        return {
            "device": device, "found": bool(fields) or bool(history), "row": row.model_dump() if row else None,
            "features": features, "points": points, "alerts": views, "episodes": episodes(views),
        }  # fmt: skip


def episodes(views: list[dict]) -> list[dict]:
    """Each episode's span (start, end or None while open) and highest severity, oldest first."""
    order = {"warning": 0, "major": 1, "critical": 2}
    found: dict[str, dict] = {}
    for v in reversed(views):  # oldest first
        e = found.setdefault(v["episode_id"], {"episode_id": v["episode_id"], "start": v["started_at"], "end": None,
                                                "severity": v["severity"], "close_reason": None})  # fmt: skip
        if order.get(v["severity"], 0) > order.get(e["severity"], 0):
            e["severity"] = v["severity"]
        if v["state"] == "closed":
            e["end"], e["close_reason"] = v["ended_at"] or v["at"], v["close_reason"]
    return list(found.values())


def _sort_key(sort: str):  # type: ignore[no-untyped-def]
    rank = {"anomalous": 2, "offline": 1, "normal": 0}
    sev = {"critical": 3, "major": 2, "warning": 1}
    if sort == "state":
        return lambda r: (rank.get(r.state, 0), sev.get(r.severity or "", 0), r.ratio or 0.0)
    if sort in ("score", "ratio", "age"):
        field = {"score": "score", "ratio": "ratio", "age": "age_s"}[sort]
        return lambda r: (getattr(r, field) is not None, getattr(r, field) or 0.0)
    return lambda r: getattr(r, sort if sort != "device" else "device") or ""


def dumps(value: object) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
