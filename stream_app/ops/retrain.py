"""``floorwatch train --from-topic``: a candidate model from the fleet's recent readings.

1. Read ``sensor-readings`` from ``since`` on: each partition is positioned with
   ``offsets_for_times`` (message time), read until it has been idle for ``idle_s`` (the embedded
   broker's high watermark can lag, so it is not the stop signal), and readings older than
   ``since`` by their own ``ts`` are dropped too. Only the asset group's devices are kept.
2. Leave out what is not normal: every alert episode in Redis (the alerts stream), and every
   episode an operator confirmed as a fault (feedback, kept even after the stream is trimmed);
   episodes an operator marked as false alarms stay in, they are normal data the model got wrong.
   Each span is widened by one window on both sides, an open episode runs to the end of the data.
3. Cut each device's readings into runs without gaps over ``max_gap_s`` or left-out spans; runs
   shorter than two windows are dropped.
4. Train and calibrate as ``floorwatch train`` does, not promoted; the card's notes compare the
   candidate with the current version on the same validation windows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any
from dataclasses import dataclass, field

import numpy as np
import redis.asyncio as aioredis

from stream_app.config.redis_client import async_redis
from stream_app.contracts import Alert, to_epoch_ms
from stream_app.pipeline.decode import decode
from stream_app.worker.feedback import FeedbackStore
from stream_app.worker.topics import assigned_reader
from stream_app.pipeline.routing import DEFAULT_GROUP, GroupRouter
from stream_app.config.settings import Settings
from stream_app.worker.sinks import RedisKeys

if TYPE_CHECKING:
    from stream_app.models.store import ModelBundle
    from stream_app.training.fit import TrainingConfig

log = logging.getLogger(__name__)

Span = tuple[int, int, str]  # start ms, end ms, why


@dataclass
class RecentReadings:
    """Each device's recent readings, in time order: timestamps (n,) and values (n, F)."""

    features: list[str]
    ts: dict[str, np.ndarray]
    values: dict[str, np.ndarray]
    messages: int = 0
    missing_features: int = 0


def read_recent(settings: Settings, since_ms: int, features: list[str], group: str = DEFAULT_GROUP,
                *, idle_s: float = 3.0, timeout_s: float = 600.0) -> RecentReadings:  # fmt: skip
    router = GroupRouter(settings.asset_group_list())
    rows: dict[str, list[tuple[int, tuple[float, ...]]]] = defaultdict(list)
    out = RecentReadings(features, {}, {})
    with assigned_reader(settings, settings.readings_topic, start=since_ms, name="retrain", **{"fetch.wait.max.ms": 500}) as consumer:
        started = time.monotonic()
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < idle_s and time.monotonic() - started < timeout_s:
            batch = consumer.consume(1000, 0.5)
            batch = [m for m in batch if m.error() is None]
            if not batch:
                continue
            idle_since = time.monotonic()
            for message in batch:
                out.messages += 1
                for reading in decode(message.value()).readings:
                    if reading.ts < since_ms or router.group_of(reading.device_id) != group:
                        continue
                    try:
                        rows[reading.device_id].append((reading.ts, tuple(reading.values[f] for f in features)))
                    except KeyError:
                        out.missing_features += 1
    for device, found in rows.items():
        found.sort()
        ts = np.array([t for t, _ in found], np.int64)
        keep = np.concatenate([[True], np.diff(ts) > 0]) if len(ts) else np.zeros(0, bool)  # redeliveries once
        out.ts[device] = ts[keep]
        out.values[device] = np.array([v for _, v in found], np.float32).reshape(len(found), len(features))[keep]
    return out


async def left_out_spans(client: aioredis.Redis, prefix: str, devices: set[str]) -> tuple[dict[str, list[Span]], dict[str, int]]:
    """Per device, the spans to leave out (alert episodes; confirmed faults), and counts by reason."""
    episodes: dict[str, dict] = {}
    for _, fields in await client.xrange(RedisKeys(prefix).alerts):
        alert = Alert.model_validate_json(fields[b"alert"])
        if alert.device_id not in devices:
            continue
        ep = episodes.setdefault(alert.episode.episode_id, {"device": alert.device_id, "start": to_epoch_ms(alert.episode.started_at), "end": None})
        if alert.episode.ended_at is not None:
            ep["end"] = to_epoch_ms(alert.episode.ended_at)
    labelled = {e["episode_id"]: e for e in await FeedbackStore(client, prefix).labelled_episodes()}
    spans: dict[str, list[Span]] = defaultdict(list)
    counts = {"alert episodes": 0, "confirmed faults": 0, "false alarms kept": 0}
    for episode_id, ep in episodes.items():
        verdict = labelled.get(episode_id, {}).get("verdict")
        if verdict == "false_alarm":
            counts["false alarms kept"] += 1
            continue
        end = ep["end"] if ep["end"] is not None else np.iinfo(np.int64).max
        spans[ep["device"]].append((ep["start"], end, "confirmed fault" if verdict == "confirmed" else "alert episode"))
        counts["confirmed faults" if verdict == "confirmed" else "alert episodes"] += 1
    for episode_id, label in labelled.items():
        if label["verdict"] != "confirmed" or episode_id in episodes or label["device_id"] not in devices:
            continue  # confirmed faults whose alerts the capped stream no longer holds
        end = label["end_ms"] if label.get("end_ms") is not None else np.iinfo(np.int64).max
        spans[label["device_id"]].append((label["start_ms"], end, "confirmed fault"))
        counts["confirmed faults"] += 1
    return dict(spans), counts


@dataclass
class NormalSeries:
    series: list[np.ndarray] = field(default_factory=list)
    readings_kept: int = 0
    readings_left_out: int = 0
    devices: int = 0
    kept_by_device: dict[str, int] = field(default_factory=dict)


def normal_series(recent: RecentReadings, spans: dict[str, list[Span]], *, window: int, max_gap_ms: int) -> NormalSeries:
    """Runs of each device's readings outside every left-out span (widened by a window), split at gaps."""
    out = NormalSeries()
    for device, ts in recent.ts.items():
        if len(ts) == 0:
            continue
        out.devices += 1
        step = int(np.median(np.diff(ts))) if len(ts) > 1 else 1000
        pad = window * step
        keep = np.ones(len(ts), bool)
        for start, end, _ in spans.get(device, ()):
            keep &= ~((ts >= start - pad) & (ts <= (end + pad if end < np.iinfo(np.int64).max - pad else end)))
        out.readings_left_out += int((~keep).sum())
        # Run boundaries: a left-out reading, or a gap over max_gap_ms.
        breaks = np.flatnonzero(~keep | np.concatenate([[False], np.diff(ts) > max_gap_ms]))
        edges = [0, *breaks.tolist(), len(ts)]
        for a, b in zip(edges[:-1], edges[1:]):
            a = a if keep[a] else a + 1
            if b - a >= 2 * window:
                out.series.append(recent.values[device][a:b])
                out.readings_kept += b - a
                out.kept_by_device[device] = out.kept_by_device.get(device, 0) + b - a
    return out


def parse_since(text: str) -> int:
    """``24h``, ``90m``, ``2d``, ``3600s`` -> milliseconds."""
    units = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    try:
        value, unit = float(text[:-1]), units[text[-1]]
    except (ValueError, KeyError, IndexError):
        raise ValueError(f"--since {text!r}: expected a number and a unit, e.g. 24h, 90m, 2d") from None
    if value <= 0:
        raise ValueError(f"--since {text!r}: must be positive")
    return int(value * unit)


def collect(settings: Settings, since_ms: int, features: list[str], group: str, *, window: int) -> tuple[NormalSeries, dict[str, int], RecentReadings]:
    recent = read_recent(settings, since_ms, features, group)

    async def spans() -> tuple[dict[str, list[Span]], dict[str, int]]:
        client = async_redis(settings)
        try:
            return await left_out_spans(client, settings.redis_prefix, set(recent.ts))
        finally:
            await client.aclose()

    left_out, counts = asyncio.run(spans())
    return normal_series(recent, left_out, window=window, max_gap_ms=int(settings.max_gap_s * 1000)), counts, recent


def compare_on(current_bundle: ModelBundle, candidate_notes: dict[str, Any], series: list[np.ndarray], config: TrainingConfig) -> dict[str, Any]:
    """The current model's figures on the candidate's validation windows (same split as training)."""
    from stream_app.pipeline.scorer import Scorer
    from stream_app.training.fit import TrainingData

    data = TrainingData.prepare(series, config)
    scorer = Scorer.from_bundle(current_bundle, max_batch=1024)
    relative = scorer.raw_errors(data.x_val) / np.asarray(current_bundle.thresholds.feature_reference)
    scores = relative.max(axis=1)
    return {
        "version": current_bundle.version,
        "validation_windows": len(data.x_val),
        "validation_score_p50": float(np.median(scores)),
        "validation_score_p99": float(np.quantile(scores, 0.99)),
        "validation_windows_over_threshold": float((scores > current_bundle.thresholds.threshold).mean()),
        "threshold": current_bundle.thresholds.threshold,
    }


def train_from_topic(settings: Settings, since: str, group: str | None, config: TrainingConfig, *,
                     features: list[str] | None = None) -> tuple[ModelBundle, dict[str, Any]]:  # fmt: skip
    """Read, leave out, train, compare; the candidate is saved, not promoted. Returns (bundle, summary)."""
    from stream_app.models.store import ModelStore, ModelStoreError
    from stream_app.training.fit import train

    group = group or DEFAULT_GROUP
    store = ModelStore.for_group(settings.model_dir, group)
    current = store.load() if store.current() is not None else None
    names = features or (current.card.features if current is not None else None)
    if not names:
        raise ModelStoreError(f"no current model for group {group!r} to take the features from: pass --features")
    since_ms = int(time.time() * 1000) - parse_since(since)
    normal, counts, recent = collect(settings, since_ms, names, group, window=config.window)
    if not normal.series:
        raise ValueError(
            f"no normal runs of at least {2 * config.window} readings in {settings.readings_topic} since {since} "
            f"for group {group!r} ({recent.messages} messages read, {normal.readings_left_out} readings left out)"
        )
    comparison = compare_on(current, {}, normal.series, config) if current is not None else None
    source = (f"topic {settings.readings_topic} since {since}: {normal.devices} devices, {normal.readings_kept} readings kept, "
              f"{normal.readings_left_out} left out")  # fmt: skip
    bundle = train(normal.series, names, store, config, source=source, promote=False)
    notes = dict(bundle.card.notes)
    notes["left_out"] = counts | {"readings": normal.readings_left_out}
    if comparison is not None:
        notes["compared_with"] = comparison
    # The card is the version's own record: rewritten once, before anything serves this version.
    card = bundle.card.model_copy(update={"notes": notes})
    (bundle.path / "card.json").write_text(card.model_dump_json(indent=2))
    summary = {"normal": normal, "counts": counts, "comparison": comparison, "card": card}
    return store.load(bundle.card.version), summary
