"""Operator feedback on alerts: "this alert was right" (confirmed) or "wrong" (false alarm).

Feedback arrives by ``floorwatch alerts label`` or on the ``alert-feedback`` topic (JSON, key =
alert id; see the README), which the workers consume. It is kept in Redis (prefix ``floorwatch``):

* ``<prefix>:feedback:<alert_id>``              hash: verdict, note, by, at, model_version, device_id, episode_id
* ``<prefix>:feedback:episodes``                hash: episode id -> JSON {verdict, device_id, start_ms, end_ms,
  model_version}: what retraining leaves out (confirmed faults) or keeps (false alarms)
* ``<prefix>:feedback:by-version:<version>``    hash: episode id -> verdict, for precision per model version

Feedback is per episode: the open and the closed alert of one episode are one judgement, and the
latest one counts. An alert id this Redis does not know (never alerted, or its marker expired) is
refused: on the CLI with one clear line, on the topic to the dead-letter topic with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Literal

import orjson
import redis.asyncio as aioredis
from confluent_kafka import Consumer, KafkaException, Message
from pydantic import BaseModel, Field, ValidationError
from redis.exceptions import RedisError

from stream_app.errors import FloorwatchError
from stream_app.contracts import Alert, to_epoch_ms
from stream_app.worker.sinks import RedisKeys

log = logging.getLogger(__name__)

Verdict = Literal["confirmed", "false_alarm"]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Feedback(BaseModel):
    """One judgement of one alert (the ``alert-feedback`` topic's message)."""

    alert_id: str = Field(min_length=1, max_length=100)
    verdict: Verdict
    note: str = Field("", max_length=2000)
    by: str = Field("", max_length=200)
    at: str = Field(default_factory=_now)


class UnknownAlert(FloorwatchError):
    """Feedback for an alert id that Redis does not know."""


class FeedbackKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def alert(self, alert_id: str) -> str:
        return f"{self.prefix}:feedback:{alert_id}"

    @property
    def episodes(self) -> str:
        return f"{self.prefix}:feedback:episodes"

    def by_version(self, version: str) -> str:
        return f"{self.prefix}:feedback:by-version:{version}"


class Precision(BaseModel):
    model_version: str
    confirmed: int
    false_alarms: int

    @property
    def labelled(self) -> int:
        return self.confirmed + self.false_alarms

    @property
    def precision(self) -> float | None:
        return self.confirmed / self.labelled if self.labelled else None


class FeedbackStore:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.keys = FeedbackKeys(prefix)
        self.alert_keys = RedisKeys(prefix)

    async def find_alert(self, alert_id: str) -> Alert | None:
        """The alert with this id: from its de-duplication marker (which holds the alert), else the alerts stream."""
        marker = await self.client.get(self.alert_keys.alert_id(alert_id))
        if marker is None:
            return None  # never alerted, or older than the markers' TTL: not scanned for (a flood of bad ids stays cheap)
        if marker.startswith(b"{"):
            return Alert.model_validate_json(marker)
        # A marker written before markers held the alert ("1"): look in the capped stream.
        for _, fields in await self.client.xrevrange(self.alert_keys.alerts):
            if fields.get(b"alert_id", b"").decode() == alert_id:
                return Alert.model_validate_json(fields[b"alert"])
        return None

    async def record(self, feedback: Feedback) -> Alert:
        """Store the judgement; raise UnknownAlert if the alert id is not known."""
        alert = await self.find_alert(feedback.alert_id)
        if alert is None:
            raise UnknownAlert(f"unknown alert id {feedback.alert_id!r}: no such alert in Redis (or it expired)")
        episode = alert.episode
        span = {
            "verdict": feedback.verdict, "device_id": alert.device_id, "model_version": alert.model_version,
            "start_ms": to_epoch_ms(episode.started_at),
            "end_ms": to_epoch_ms(episode.ended_at) if episode.ended_at else None,
        }  # fmt: skip
        previous = await self.client.hget(self.keys.episodes, episode.episode_id)
        if previous is not None and span["end_ms"] is None:
            span["end_ms"] = orjson.loads(previous).get("end_ms")  # an earlier label of the closed alert knew the end
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.keys.alert(alert.alert_id), mapping={
            "verdict": feedback.verdict, "note": feedback.note, "by": feedback.by, "at": feedback.at,
            "model_version": alert.model_version, "device_id": alert.device_id, "episode_id": episode.episode_id,
        })  # fmt: skip
        pipe.hset(self.keys.episodes, episode.episode_id, orjson.dumps(span))
        pipe.hset(self.keys.by_version(alert.model_version), episode.episode_id, feedback.verdict)
        await pipe.execute()
        return alert

    async def for_alerts(self, alerts: Iterable[Alert]) -> dict[str, dict[str, str]]:
        """Feedback on each alert, by alert id; an alert's episode's judgement counts for both its alerts."""
        alerts = list(alerts)
        if not alerts:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for alert in alerts:
            pipe.hgetall(self.keys.alert(alert.alert_id))
        pipe.hmget(self.keys.episodes, [a.episode.episode_id for a in alerts])
        *own, episodes = await pipe.execute()
        out: dict[str, dict[str, str]] = {}
        for alert, fields, episode in zip(alerts, own, episodes):
            if fields:
                out[alert.alert_id] = {k.decode(): v.decode() for k, v in fields.items()}
            elif episode is not None:
                out[alert.alert_id] = {"verdict": orjson.loads(episode)["verdict"], "note": "(on the episode's other alert)"}
        return out

    async def precision(self) -> dict[str, Precision]:
        """Precision per model version from feedback: confirmed / labelled episodes."""
        out: dict[str, Precision] = {}
        prefix = self.keys.by_version("")
        async for key in self.client.scan_iter(match=prefix + "*", count=500):
            version = key.decode()[len(prefix):]
            verdicts = [v.decode() for v in await self.client.hvals(key)]
            out[version] = Precision(
                model_version=version, confirmed=verdicts.count("confirmed"), false_alarms=verdicts.count("false_alarm")
            )
        return dict(sorted(out.items()))

    async def labelled_episodes(self) -> list[dict]:
        """Every labelled episode: verdict, device_id, start_ms, end_ms (None: still open when labelled)."""
        raw = await self.client.hgetall(self.keys.episodes)
        return [orjson.loads(v) | {"episode_id": k.decode()} for k, v in raw.items()]


def parse_feedback(raw: bytes | None) -> Feedback:
    """A topic message as Feedback; ValueError with a plain reason otherwise."""
    if not raw:
        raise ValueError("empty message")
    try:
        return Feedback.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "message"
        raise ValueError(f"not a feedback message: {where}: {first['msg']}") from exc


DeadLetterFn = Callable[[Message, str], Awaitable[object]]


class FeedbackConsumer:
    """Reads the ``alert-feedback`` topic into the FeedbackStore; unusable messages are dead-lettered.

    Its own consumer group (``<app_id>-feedback``): the topic has one partition, so one worker of
    the fleet handles it and the others stand by. Offsets are committed after each batch is stored
    or dead-lettered.
    """

    def __init__(self, consumer_config: dict[str, object], topic: str, store: FeedbackStore, dead_letter: DeadLetterFn) -> None:
        self.topic = topic
        self.store = store
        self.dead_letter = dead_letter
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="feedback-consumer")
        self._consumer = Consumer(consumer_config)
        self.recorded = 0
        self.rejected = 0

    async def run(self) -> None:
        await self._call(self._consumer.subscribe, [self.topic])
        try:
            while True:
                messages = await self._call(self._consumer.consume, 100, 0.5)
                messages = [m for m in messages if m.error() is None]
                if not messages:
                    continue
                await self.handle(messages)
                try:
                    await self._call(self._consumer.commit, asynchronous=False)
                except KafkaException as exc:
                    log.warning("feedback offset commit failed (%s); they may be read again (idempotent)", exc.args[0].str())
        finally:
            await asyncio.shield(self._close())

    async def handle(self, messages: list[Message]) -> None:
        for message in messages:
            try:
                feedback = parse_feedback(message.value())
                await self._record(feedback)
                self.recorded += 1
            except (ValueError, UnknownAlert) as exc:
                self.rejected += 1
                log.warning("alert feedback refused: %s", exc)
                await self.dead_letter(message, str(exc))

    async def _record(self, feedback: Feedback) -> None:
        # Redis down: wait for it (nothing is committed meanwhile); only this consumer waits, not scoring.
        warned = False
        while True:
            try:
                await self.store.record(feedback)
                return
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                if not warned:
                    log.warning("alert feedback waits for Redis (%s)", type(exc).__name__)
                    warned = True
                await asyncio.sleep(1.0)

    async def _close(self) -> None:
        try:
            await self._call(self._consumer.close)
        finally:
            self._thread.shutdown(wait=False)

    async def _call(self, fn: Callable[..., object], *args: object, **kwargs: object) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, lambda: fn(*args, **kwargs))
