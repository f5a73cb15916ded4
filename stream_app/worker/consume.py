"""Batches of messages from the readings topic, committed once handled.

The worker reads ``sensor-readings`` with librdkafka (confluent-kafka) in batches rather than
through a Faust agent's stream. Faust's per-event machinery (one Event, queue hand-off, ack
tracking and future per message) cost about 100 us per message here, which capped a worker at
~8.5k readings/s with its core otherwise idle; ``Consumer.consume`` hands over a thousand messages
in one call from librdkafka's own fetch thread (measured: ~57k readings/s single-message form,
~74k batched, decode and model included). The rest of the worker stays in the Faust app: its
lifecycle and signals, the producer for alerts and dead letters, the timers.

Delivery is at-least-once: offsets are committed after a batch is handled (alerts acknowledged by
the broker, Redis written or buffered), synchronously, so a revoked partition's processed
messages are committed before the next owner reads it and nothing is committed unprocessed. A
sink that cannot take a batch's output is retried by the handler with the same records (handler.py):
``handle`` returns only once they are sent, and nothing is consumed or committed meanwhile (librdkafka
keeps the group's heartbeats; past ``max.poll.interval.ms`` the member leaves the group, its commit
then fails and the batch is read again by the partitions' next owner). A batch whose handling raises
(decoding or detection: a bug) is handled again message by message; a message that fails alone is
dead-lettered, and one that cannot be dead-lettered either is read again rather than committed past.

Exactly-once (Apache Kafka, exactly_once.py): the batch's records and offsets commit as one
transaction instead; a transaction that fails is aborted and its same records sent again in a new
one, with the same backoff, until it commits (``_commit_transaction``), unless the group has given
the batch's partitions to another member.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from concurrent.futures import ThreadPoolExecutor

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, KafkaException, Message, TopicPartition

from stream_app.worker.lag import committed_lag
from stream_app.worker.exactly_once import BatchTransaction, TransactionFenced, first_offsets
from stream_app.config.kafka_config import consumer_config
from stream_app.worker.messages import offset_of, partition_of
from stream_app.worker.metrics import Metrics
from stream_app.worker.retry import BatchRetries
from stream_app.config.settings import BatchSettings, KafkaSettings
from stream_app.worker.stall import StallWatch

log = logging.getLogger(__name__)

# How long to wait before reading again a message that could not be dead-lettered (broker trouble).
_RETRY_PAUSE_S = 1.0
# A partition whose position has not moved for this long while its lag stayed positive is stalled;
# checked every few seconds (each check asks the broker for every partition's high watermark).
_STALL_AFTER_S = 10.0
_CHECK_EVERY_S = 5.0
# The embedded broker's stall is cured by a longer fetch wait (measured: 20 ms stalls, 100 and 500 ms
# read 30,000 one-record batches; 500 ms read 130,000): each stall multiplies it by 5, up to this.
_MAX_FETCH_WAIT_MS = 2_500

Handler = Callable[[list[Message]], Awaitable[None]]
# Called with a message whose handler raised, and the exception: the app dead-letters it.
FailureHandler = Callable[[list[Message], Exception], Awaitable[None]]


class ReadingsConsumer:
    """The worker's consumer-group member for the readings topic; ``run`` until cancelled."""

    def __init__(
        self,
        settings: KafkaSettings,
        batch: BatchSettings,
        handle: Handler,
        on_failure: FailureHandler | None = None,
        metrics: Metrics | None = None,
        transaction: BatchTransaction | None = None,
    ) -> None:
        self.settings = settings
        self.batch = batch
        self.handle = handle
        self.on_failure = on_failure
        self.metrics = metrics
        # Exactly-once (kafka profile): each batch's output and offsets commit as one transaction.
        self.transaction = transaction
        # Every call into the consumer happens on this one thread, in order: consume blocks
        # there (the event loop stays free) and librdkafka's rebalance callbacks run there too.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="readings-consumer")
        # The progress check's queries: their own client and thread (``_probe_client``), made on first use.
        self._probe: Consumer | None = None
        self._probe_thread = ThreadPoolExecutor(1, thread_name_prefix="readings-progress")
        self._config = consumer_config(
            settings,
            settings.app_id,
            **{
                "enable.auto.commit": False,
                # A worker that joins after readings were produced still scores them.
                "auto.offset.reset": "earliest",
            },
        )
        self._consumer = Consumer(self._config)
        self._watch = StallWatch(_STALL_AFTER_S)
        self._last_check = time.monotonic()
        self._next_check = self._last_check + _CHECK_EVERY_S
        self._idle_s = 0.0  # seconds spent on empty batches since the last check
        self._cut = (0.0, 0.0)  # when the last batch was taken: wall clock, perf_counter

    async def run(self) -> None:
        await self._call(self._subscribe)
        try:
            while True:
                if time.monotonic() >= self._next_check:
                    checking = time.perf_counter()
                    await self._check_stalls()
                    if self.metrics is not None:
                        self.metrics.stage_seconds.labels("stall_check").observe(time.perf_counter() - checking)
                asked = time.monotonic()
                messages = await self._call(self._next_batch)
                usable = [m for m in messages if _usable(m)]
                if not usable:
                    self._idle_s += time.monotonic() - asked
                    continue
                self._observe_cut(usable)
                if self.transaction is not None:
                    await self._call(self.transaction.begin)
                stopped = await self._handle(usable)
                committing = time.perf_counter()
                await self._commit(usable, stopped)
                if self.metrics is not None:
                    self.metrics.stage_seconds.labels("commit").observe(time.perf_counter() - committing)
                if stopped:
                    await self._rewind(stopped)
        finally:
            await asyncio.shield(self._close())

    def _subscribe(self) -> None:
        self._consumer.subscribe([self.settings.readings_topic], on_assign=_log_assign, on_revoke=_log_revoke)

    async def _check_stalls(self) -> None:
        """Export each partition's lag; a partition stalled below its high watermark is logged once,
        counted, and recovered: on the embedded broker by a longer fetch wait, elsewhere by a seek."""
        now = time.monotonic()
        # Mostly empty batches since the last check: the consumer had time to read, and got nothing.
        idle = self._idle_s > 0.5 * (now - self._last_check)
        self._idle_s, self._last_check, self._next_check = 0.0, now, now + _CHECK_EVERY_S
        try:
            positions = await self._call(self._positions)
            loop = asyncio.get_running_loop()
            positions, highs, lag = await loop.run_in_executor(self._probe_thread, self._progress, positions)
        except KafkaException as exc:  # the broker away: nothing to judge now
            log.debug("partition progress unknown (%s)", exc.args[0].str())
            return
        stalled = self._watch.observe(positions, highs, idle=idle)
        if self.metrics is not None:
            self.metrics.set_lag(self._watch.lag)
            if lag is not None:
                self.metrics.set_committed_lag(lag)
        if not stalled:
            return
        if self.metrics is not None:
            self.metrics.consumer_stalls.inc(len(stalled))
        where = ", ".join(f"{p} at offset {positions[(t, p)]} ({self._watch.lag[(t, p)]} behind)" for t, p in stalled)
        # (said as "no progress": the position stood, or crept while the consumer idled)
        wait = int(self._config.get("fetch.wait.max.ms", 500))
        if self.settings.kafka_profile == "embedded" and wait < _MAX_FETCH_WAIT_MS:
            longer = min(wait * 5, _MAX_FETCH_WAIT_MS)
            log.warning(
                "readings partition(s) %s: no progress for %.0f s; reconnecting with fetch.wait.max.ms=%d (was %d)",
                where, _STALL_AFTER_S, longer, wait,
            )
            await self._call(self._rebuild, longer)
        else:
            log.warning("readings partition(s) %s: no progress for %.0f s; fetching again", where, _STALL_AFTER_S)
            for topic, partition in stalled:
                try:
                    await self._call(self._consumer.seek, TopicPartition(topic, partition, positions[(topic, partition)]))
                except KafkaException as exc:
                    log.warning("could not seek %s [%d] (%s)", topic, partition, exc.args[0].str())

    def _positions(self) -> dict[tuple[str, int], int]:
        """Each assigned partition's position (next offset to read; negative before its first read):
        librdkafka's own figure, no broker call."""
        consumer = self._consumer
        return {(tp.topic, tp.partition): tp.offset for tp in consumer.position(consumer.assignment())}

    def _progress(
        self, positions: dict[tuple[str, int], int]
    ) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int], dict[tuple[str, int], int] | None]:
        """Positions completed (never read: the committed offset, else the low watermark), each partition's
        high watermark, and the group's committed lag (None without metrics, or unknown): asked of the probe,
        on its own thread."""
        probe = self._probe_client()
        positions = dict(positions)
        unread = [TopicPartition(t, p) for (t, p), offset in positions.items() if offset < 0]
        if unread:  # nothing read since the assignment: it starts at the committed offset
            for tp in probe.committed(unread, timeout=5):
                positions[(tp.topic, tp.partition)] = tp.offset
        highs: dict[tuple[str, int], int] = {}
        for (topic, partition), offset in list(positions.items()):
            low, high = probe.get_watermark_offsets(TopicPartition(topic, partition), timeout=5, cached=False)
            highs[(topic, partition)] = high
            if offset < 0:
                positions[(topic, partition)] = low  # never committed: "earliest"
        lag = committed_lag(probe, highs) if self.metrics is not None else None
        return positions, highs, lag

    def _probe_client(self) -> Consumer:
        """A client of the same group that never joins it, for the progress check's broker queries:
        on the reading consumer's connection they queued behind its fetches (the embedded broker holds
        one ~10 ms), 8 partitions' worth of 120-180 ms every 5 s with no batch read meanwhile, the
        latency runs' p99 (floorwatch_batch_stage_seconds{stage="stall_check"})."""
        if self._probe is None:
            self._probe = Consumer({**self._config, "client.id": f"{self.settings.app_id}-progress"})
        return self._probe

    def _rebuild(self, fetch_wait_ms: int) -> None:
        """A new group member with a longer fetch wait: librdkafka cannot change it on a live consumer.
        Offsets are committed after every batch, so the new member resumes exactly where this one was."""
        self._consumer.close()
        self._config = {**self._config, "fetch.wait.max.ms": fetch_wait_ms}
        self._consumer = Consumer(self._config)
        self._subscribe()
        self._watch.reset()

    async def _handle(self, messages: list[Message]) -> dict[tuple[str, int], int]:
        """Handle a batch; if that fails, each message on its own, so one bad message costs no other.

        A message whose handling fails goes to ``on_failure`` (the dead-letter topic). If that fails
        too (the broker unreachable), nothing from there on is committed: returns, per partition,
        the offset of the first message neither handled nor dead-lettered, to be read again.
        """
        try:
            await self.handle(messages)
            return {}
        except Exception:  # the worker never stops on one bad batch
            log.exception("batch of %d messages failed; handling them one by one", len(messages))
        if self.transaction is not None:  # drop what the failed batch sent; each message sends its own again
            await self._call(self.transaction.abort)
            await self._call(self.transaction.begin)
        stopped: dict[tuple[str, int], int] = {}
        for message in messages:
            where = partition_of(message)
            if where in stopped:
                continue
            if stopped:
                stopped[where] = offset_of(message)  # after a failed dead letter: stop every partition
                continue
            try:
                await self.handle([message])
                continue
            except Exception as exc:
                failure = exc
            try:
                if self.on_failure is None:
                    raise failure
                await self.on_failure([message], failure)
            except Exception:
                log.exception(
                    "could not dead-letter %s [%d] offset %d; reading it again", *where, message.offset()
                )
                stopped[where] = offset_of(message)
        return stopped

    async def _rewind(self, stopped: dict[tuple[str, int], int]) -> None:
        """Read the partitions again from their first unhandled message, after a pause."""
        for (topic, partition), offset in stopped.items():
            try:
                await self._call(self._consumer.seek, TopicPartition(topic, partition, offset))
            except KafkaException as exc:  # e.g. revoked meanwhile: its next owner reads it from the commit
                log.warning("could not rewind %s [%d] (%s)", topic, partition, exc.args[0].str())
        await asyncio.sleep(_RETRY_PAUSE_S)

    def _next_batch(self) -> list[Message]:
        """What librdkafka has already fetched, up to ``batch_max_size``; if nothing, the first
        message to arrive within ``batch_max_wait_s`` and whatever came with it.

        So a batch never waits to fill: under load the fetched backlog makes batches large, and
        a quiet stream's reading is handled as soon as it arrives.
        """
        consume, size = self._consumer.consume, self.batch.batch_max_size
        batch = consume(size, 0)
        if not batch:
            batch = consume(1, self.batch.batch_max_wait_s)
            if batch and size > 1:
                batch += consume(size - 1, 0)
        self._cut = (time.time(), time.perf_counter())
        return batch

    def _observe_cut(self, batch: list[Message]) -> None:
        """The batch's ``age`` when it was cut (its first message's Kafka timestamp to the cut) and
        how long it then ``queued`` for the event loop (floorwatch_batch_stage_seconds)."""
        if self.metrics is None:
            return
        stage = self.metrics.stage_seconds
        wall, cut = self._cut
        kind, produced_ms = batch[0].timestamp()
        if kind != TIMESTAMP_NOT_AVAILABLE and produced_ms > 0:
            stage.labels("age").observe(max(0.0, wall - produced_ms / 1000.0))
        stage.labels("queued").observe(time.perf_counter() - cut)

    async def _commit(self, messages: list[Message], stopped: dict[tuple[str, int], int]) -> None:
        """Commit past the batch, or up to each stopped partition's first unhandled message."""
        offsets = _next_offsets(messages, stopped)
        if self.transaction is not None:
            await self._commit_transaction(messages, offsets)
            return
        try:
            await self._call(self._consumer.commit, offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # e.g. the broker restarting: the batch's partitions are read again from the last
            # commit, by this worker or their next owner (at-least-once; the sinks are idempotent).
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("offset commit failed (%s); the batch may be read again", exc.args[0].str())

    async def _commit_transaction(self, messages: list[Message], offsets: list[TopicPartition]) -> None:
        """Commit the batch's transaction, sending its same records again in a new one after each
        failure, with backoff, until it commits (retry.py): consumption waits meanwhile. Only a batch
        whose partitions another member owns now is given up: read again from the last commit."""
        assert self.transaction is not None
        what = f"its {self.transaction.pending} record(s)"
        try:
            async with BatchRetries(self.metrics, what) as retries:
                while True:
                    try:
                        await self._call(self.transaction.commit, self._consumer, offsets)
                        return
                    except KafkaException as exc:
                        await retries.failed("the batch's transaction", exc)
        except TransactionFenced as exc:
            log.warning("transaction fenced (%s); its batch is read again from the last commit by its owner", exc)
            await self._call(self._rewind_batch, messages)

    def _rewind_batch(self, messages: list[Message]) -> None:
        """After a fenced transaction: read the batch again (partitions revoked meanwhile are skipped:
        their new owner reads them from the last commit)."""
        for partition in first_offsets(messages):
            try:
                self._consumer.seek(partition)
            except KafkaException as exc:
                log.warning("rewind of %s [%s] failed: %s", partition.topic, partition.partition, exc.args[0].str())

    async def _close(self) -> None:
        try:
            if self.transaction is not None:
                await self._call(self.transaction.close)
            await self._call(self._consumer.close)  # leaves the group: partitions move at once
            if self._probe is not None:
                await asyncio.get_running_loop().run_in_executor(self._probe_thread, self._probe.close)
        finally:
            self._thread.shutdown(wait=False)
            self._probe_thread.shutdown(wait=False)

    async def _call(self, fn: Callable[..., object], *args: object, **kwargs: object) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, lambda: fn(*args, **kwargs))


def _next_offsets(messages: list[Message], stopped: dict[tuple[str, int], int]) -> list[TopicPartition]:
    """Per partition, the offset to commit: past its last message, or at its first unhandled one."""
    ends: dict[tuple[str, int], int] = {}
    for message in messages:
        where = partition_of(message)
        ends[where] = max(ends.get(where, -1), offset_of(message) + 1)
    ends.update(stopped)
    return [TopicPartition(topic, partition, offset) for (topic, partition), offset in ends.items()]


def _usable(message: Message) -> bool:
    error = message.error()
    if error is None:
        return True
    log.warning("consumer error on %s [%s]: %s", message.topic(), message.partition(), error.str())
    return False


def _log_assign(consumer: Consumer, partitions: list[TopicPartition]) -> None:
    # What the worker holds now: with cooperative rebalancing (kafka profile) ``partitions`` are only
    # the added ones, and those it kept are still in ``assignment()``.
    held = {p.partition for p in consumer.assignment()} | {p.partition for p in partitions}
    log.info("readings partitions assigned: %s", sorted(held))


def _log_revoke(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
    log.info("readings partitions revoked: %s", sorted(p.partition for p in partitions))
