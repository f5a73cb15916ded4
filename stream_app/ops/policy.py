"""The automatic policy (off by default): drift event -> retrain -> shadow -> promote if better.

``floorwatch models autopilot [--group G]`` runs it; it does nothing unless
``FLOORWATCH_POLICY_ENABLED=true``. For the group it waits for a ``drift`` model-health event (Redis),
trains a candidate from the stream (retrain.py), shadows it for ``policy_shadow_s`` seconds, then
promotes it if it meets every criterion below, else ends the shadow. Each step is a ``policy`` line
in the audit log (``floorwatch models history``) saying what was done and why.

Criteria (on the same readings, from `models compare`'s counters):

* the candidate scored at least ``policy_min_windows`` windows;
* its share of windows over the line is at most the current model's, and at most
  ``policy_max_over_line_share``;
* it opened no more alert episodes than the current model;
* where both have operator feedback, its precision is not lower.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from stream_app.config.redis_client import async_redis
from stream_app.worker.health import HealthEvent, HealthKeys
from stream_app.models.store import ModelStore
from stream_app.models.audit import AuditEntry
from stream_app.pipeline.routing import DEFAULT_GROUP
from stream_app.config.settings import Settings
from stream_app.worker.shadow import shadow_stats

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Criteria:
    min_windows: int = 10_000
    max_over_line_share: float = 0.01


@dataclass(frozen=True, slots=True)
class Verdict:
    promote: bool
    reason: str


def decide(stats: dict[str, str], criteria: Criteria, *, precision: tuple[float | None, float | None] = (None, None)) -> Verdict:
    """Whether a shadowed candidate should replace the current model, from its shadow counters."""
    num = lambda k: float(stats.get(k, 0) or 0)  # noqa: E731
    windows, champion_windows = num("windows"), num("champion_windows")
    if windows < criteria.min_windows:
        return Verdict(False, f"only {windows:.0f} windows scored in shadow (< {criteria.min_windows})")
    share = num("over_line") / windows
    champion_share = num("champion_over_line") / champion_windows if champion_windows else 0.0
    if share > champion_share:
        return Verdict(False, f"{share:.3%} of its windows over the line, the current model {champion_share:.3%}")
    if share > criteria.max_over_line_share:
        return Verdict(False, f"{share:.3%} of its windows over the line (> {criteria.max_over_line_share:.3%})")
    if num("alerts_opened") > num("champion_alerts_opened"):
        return Verdict(False, f"opened {num('alerts_opened'):.0f} episodes, the current model {num('champion_alerts_opened'):.0f}")
    mine, theirs = precision
    if mine is not None and theirs is not None and mine < theirs:
        return Verdict(False, f"precision on feedback {mine:.2f} < the current model's {theirs:.2f}")
    return Verdict(True, f"{share:.3%} over the line (current {champion_share:.3%}), "
                         f"{num('alerts_opened'):.0f} episodes (current {num('champion_alerts_opened'):.0f})")  # fmt: skip


def _note(store: ModelStore, group: str, note: str, version: str | None = None) -> None:
    log.warning("policy (group %s): %s", group, note)
    store.audit.append(AuditEntry(action="policy", group=group, version=version, note=note))


async def next_drift_event(client: aioredis.Redis, prefix: str, group: str, last_id: str = "$") -> tuple[str, HealthEvent]:
    """Block until the next drift event of ``group``; returns (stream id, event)."""
    key = HealthKeys(prefix).events
    while True:
        found = await client.xread({key: last_id}, block=5_000, count=100)
        for _, entries in found or ():
            for entry_id, fields in entries:
                last_id = entry_id.decode()
                event = HealthEvent.model_validate_json(fields[b"event"])
                if event.kind == "drift" and event.group == group:
                    return last_id, event


def run_once(settings: Settings, group: str, event: HealthEvent, *, shadow_s: float, since: str,
             criteria: Criteria, sleep: Callable[[float], None] = time.sleep) -> Verdict:  # fmt: skip
    """One round after a drift event: retrain, shadow, decide, promote or end the shadow."""
    from stream_app.ops.retrain import train_from_topic
    from stream_app.training.fit import TrainingConfig

    store = ModelStore.for_group(settings.model_dir, group)
    _note(store, group, f"drift event {event.event_id}: {event.message}; training a candidate from the last {since}")
    current = store.load()
    config = TrainingConfig(window=current.card.window, units=current.card.units)
    bundle, _ = train_from_topic(settings, since, None if group == DEFAULT_GROUP else group, config)
    candidate = bundle.card.version
    store.set_shadow(candidate, note=f"policy: after drift event {event.event_id}")
    _note(store, group, f"shadowing {candidate} for {shadow_s:.0f}s", candidate)
    sleep(shadow_s)

    async def stats() -> dict[str, str]:
        client = async_redis(settings)
        try:
            return (await shadow_stats(client, settings.redis_prefix)).get(bundle.version, {})
        finally:
            await client.aclose()

    verdict = decide(asyncio.run(stats()), criteria)
    if verdict.promote:
        store.promote(candidate, note=f"policy: {verdict.reason}")
    else:
        store.set_shadow(None, note=f"policy: not promoted: {verdict.reason}")
    _note(store, group, ("promoted " if verdict.promote else "kept the current model; ") + f"{candidate}: {verdict.reason}", candidate)
    return verdict
