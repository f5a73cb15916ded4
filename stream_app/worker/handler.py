"""One micro-batch of the readings topic: decode, detect, and hand the output to the sinks.

For each batch: decode every message (unusable parts -> dead-letter sink) -> the lifecycle's
hook (a promoted model is swapped in here) -> open episodes of devices new to this worker, from
Redis -> each asset group's detector on its own devices -> readings it refused -> dead-letter sink,
alerts -> every sink at once (dead letters, Kafka, Redis: ``_deliver``) -> metrics. The handler
returns once every sink has flushed: only then may the consumer commit the batch's offsets (consume.py).

Once the detector has taken a batch in, its output is final: a sink that cannot take it gets the
same records again (``_deliver``, with backoff) rather than the batch being scored again, which
would find its readings already seen. Only a failure before that (decoding, detection: a bug) makes
``handle`` raise; the consumer then handles the batch's messages one by one, and one that fails
alone goes to ``dead_letter_failed``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

from redis.exceptions import RedisError

from stream_app.contracts import Alert, Reading
from stream_app.pipeline.bulk_decode import BatchDecoded, BulkDecoder
from stream_app.pipeline.decode import Rejection
from stream_app.pipeline.detector import Refused
from stream_app.pipeline.episodes import OpenEpisode
from stream_app.pipeline.group_detector import Detections, GroupDetector
from stream_app.worker.adaptation import AdaptationStore
from stream_app.worker.context import KafkaMessage, MessageContext
from stream_app.worker.metrics import Metrics
from stream_app.worker.retry import RETRY_FIRST_S, RETRY_MAX_S, BatchRetries
from stream_app.worker.sinks.base import AlertSink, DeadLetterSink, Statuses

if TYPE_CHECKING:
    from stream_app.worker.lifecycle import Lifecycle

log = logging.getLogger(__name__)

class EpisodeSource(Protocol):
    """Where the episodes that a device's previous worker left open are read (the Redis sink)."""

    @property
    def available(self) -> bool: ...
    async def open_episodes(self, device_ids: Sequence[str]) -> dict[str, OpenEpisode]: ...
    def trip(self) -> None: ...


class BatchHandler:
    """The worker's step for one batch of messages; the consumer calls ``handle`` (and
    ``dead_letter_failed`` for a message that failed alone)."""

    def __init__(
        self,
        detector: GroupDetector,
        alerts: Sequence[AlertSink],
        dead_letters: DeadLetterSink,
        metrics: Metrics,
        *,
        episodes: EpisodeSource | None = None,
        adaptation: AdaptationStore | None = None,
        resume_budget_s: float = 1.0,
        lifecycle: Lifecycle | None = None,
        retry_first_s: float = RETRY_FIRST_S,
        retry_max_s: float = RETRY_MAX_S,
    ) -> None:
        self.detector = detector
        self.alert_sinks = list(alerts)
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.episodes = episodes
        self.adaptation = adaptation  # each device's saved lines, taken up with its open episode (adaptation.py)
        self.resume_budget_s = resume_budget_s
        self.lifecycle = lifecycle
        # The backoff between attempts to send a batch's records to a sink that failed (``_deliver``, retry.py).
        self.retry_first_s = retry_first_s
        self.retry_max_s = retry_max_s
        self.decoder = BulkDecoder()

    async def handle(self, messages: Sequence[KafkaMessage]) -> None:
        try:
            await self._handle(messages)
        except BaseException:
            self._abandon()
            raise

    async def dead_letter_failed(self, messages: Sequence[KafkaMessage], exc: Exception) -> None:
        """Messages the worker failed on, alone (decoding or detection raised: a bug): to the
        dead-letter sink with their bytes, to be replayed once the cause is fixed. Alerts they may
        already have sent carry the same ids on replay: the sinks drop the repeats. If this fails
        too, the consumer reads the message again rather than commit past it (consume.py)."""
        reason = f"the worker failed on this message: {type(exc).__name__}: {str(exc)[:300]}"
        try:
            for message in messages:
                source = MessageContext.of(message)
                await self.dead_letters.add(Rejection(reason, source.value), source)
            await self.dead_letters.flush()
        except BaseException:
            self.dead_letters.abandon()
            raise
        self.metrics.dead_letters.add(reason, len(messages))

    async def _handle(self, messages: Sequence[KafkaMessage]) -> None:
        started = time.perf_counter()
        output, readings, detection = await self._detect(messages)
        await self._deliver(output)
        metrics = self.metrics
        for alert in output.alerts:
            metrics.alerts.labels(alert.episode.state).inc()
        for _, rejection in output.letters:
            metrics.dead_letters.add(rejection.reason)
        metrics.duplicates.inc(detection.duplicates)
        metrics.windows.inc(detection.scored)
        metrics.known_spikes.inc(detection.known_spikes)
        metrics.batch_size.observe(detection.scored)
        metrics.batch_seconds.observe(time.perf_counter() - started)
        if self.lifecycle is not None:
            await self.lifecycle.after_batch(readings, detection)

    async def _detect(self, messages: Sequence[KafkaMessage]) -> tuple[_Output, Sequence[Reading], Detections]:
        """Decode and score the batch: what it sends where. The detector takes the readings in here,
        so from here on the batch is never scored again (see ``_deliver``)."""
        # The whole batch at once, into columns (bulk_decode.py). A message's context (coordinates,
        # bytes) is made only for a dead letter: 1 us a message is too much for every message.
        started = time.perf_counter()
        batch = self.decoder.decode([message.value() for message in messages])
        readings = batch.columns
        letters: list[tuple[MessageContext, Rejection]] = []
        contexts: dict[int, MessageContext] = {}
        for m, rejection in batch.rejections:
            source = contexts.get(m)
            if source is None:
                source = contexts[m] = MessageContext.of(messages[m])
            letters.append((source, rejection))
        stage = self.metrics.stage_seconds
        stage.labels("decode").observe(time.perf_counter() - started)
        self.metrics.messages.inc(len(messages))
        self.metrics.readings.inc(len(readings))
        if self.lifecycle is not None:
            self.lifecycle.before_batch(readings)  # a promoted model is swapped in here, between two batches

        # Devices new to this worker (a restart, a rebalance): carry on with the episodes their
        # previous worker left open, so a failure that spans the handover stays one episode, and with
        # the lines it had learnt, so the device does not warm up again.
        if self.episodes is not None:
            unseen = self.detector.unseen(dict.fromkeys(readings.device_ids))
            if unseen and self.episodes.available:
                await self._take_over(unseen)
        started = time.perf_counter()
        detection = self.detector.process(readings)
        model = detection.model_seconds
        stage.labels("model").observe(model)
        stage.labels("detector").observe(time.perf_counter() - started - model)
        if detection.refused:
            sources = _Sources(messages, batch)
            for refused in detection.refused:
                rejection, source = sources.rejection(refused)
                letters.append((source, rejection))
        return _Output(letters, detection.alerts, detection.statuses()), readings, detection

    async def _deliver(self, output: _Output) -> None:
        """Send the batch's dead letters and its alerts to every sink at once, and wait until each
        holds them (at-least-once). Nothing orders the sinks: Redis may hold an alert before the
        alerts topic does (with transactions, Kafka's share commits with the offsets after this),
        and an alert id is the same either way. Concurrently, the Redis sink's background writer
        runs while the broker acknowledges, rather than after (floorwatch_batch_stage_seconds).

        A sink that fails gets the same records again, with a backoff doubling up to ``retry_max_s``,
        until it takes them; the sinks that took them are not sent them again. Alert ids are
        deterministic, so a sink drops the repeats of a failed attempt. Scoring the batch again would
        lose its alerts (the detector has its readings already and refuses them as old).

        Until then ``handle`` does not return and nothing of the batch is committed (consume.py): a
        Kafka that stays away holds consumption up, logged and counted (floorwatch_sink_retrying,
        floorwatch_sink_retries_total). Cancelled (the worker stopping), what is unsent is forgotten
        and the batch's next owner reads it again from the last commit.
        """
        started = time.perf_counter()
        waiting: list[AlertSink | DeadLetterSink] = [self.dead_letters, *self.alert_sinks]  # sinks without the records yet
        what = f"the batch's {len(output.alerts)} alert(s) and {len(output.letters)} dead letter(s)"
        async with BatchRetries(self.metrics, what, first_s=self.retry_first_s, max_s=self.retry_max_s) as retries:
            while True:
                try:
                    for sink in waiting:
                        await self._add(sink, output)
                except Exception as exc:
                    for sink in waiting:
                        sink.abandon()
                    await retries.failed(type(sink).__name__, exc)
                    continue
                outcomes = await asyncio.gather(*(self._flush(sink) for sink in waiting), return_exceptions=True)
                failed = []
                for sink, outcome in zip(waiting, outcomes):
                    if isinstance(outcome, BaseException):
                        if not isinstance(outcome, Exception):
                            raise outcome  # cancelled, or an interpreter exit: not a sink failure
                        failed.append((sink, outcome))
                if not failed:
                    self.metrics.stage_seconds.labels("sinks").observe(time.perf_counter() - started)
                    return
                waiting = [sink for sink, _ in failed]
                for sink in waiting:
                    sink.abandon()
                await retries.failed(type(failed[0][0]).__name__, failed[0][1])

    async def _flush(self, sink: AlertSink | DeadLetterSink) -> None:
        started = time.perf_counter()
        await sink.flush()
        self.metrics.stage_seconds.labels(f"sink_{sink.name}").observe(time.perf_counter() - started)

    @staticmethod
    async def _add(sink: AlertSink | DeadLetterSink, output: _Output) -> None:
        if isinstance(sink, DeadLetterSink):
            for source, rejection in output.letters:
                await sink.add(rejection, source)
            return
        for alert in output.alerts:
            await sink.add(alert)
        sink.add_statuses(output.statuses)

    async def _take_over(self, device_ids: list[str]) -> None:
        # On the batch's path, so bounded: a Redis that does not answer in time opens the sink's breaker.
        assert self.episodes is not None
        try:
            episodes, states = await asyncio.wait_for(self._handover(device_ids), self.resume_budget_s)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self.episodes.trip()
            log.warning("open episodes unreadable (%s): %d device(s) start afresh", type(exc).__name__, len(device_ids))
            return
        restored = 0
        for device, state in states.items():
            try:
                restored += self.detector.restore_state(device, state)
            except ValueError as exc:  # not a state this version wrote: the device warms up as new
                log.warning("adaptation state of %s unreadable (%s): it learns afresh", device, exc)
        if restored:
            self.metrics.adaptation.labels("restored").inc(restored)
            log.info("took up the learnt lines of %d device(s) new to this worker", restored)
        for device, episode in episodes.items():
            self.detector.resume(device, episode)
        if episodes:
            log.info("resumed %d open episode(s) of devices new to this worker", len(episodes))

    async def _handover(self, device_ids: list[str]) -> tuple[dict[str, OpenEpisode], dict[str, bytes]]:
        """What the devices' previous worker left in Redis: open episodes and saved adaptation states, read at once."""
        assert self.episodes is not None
        episodes = self.episodes.open_episodes(device_ids)
        if self.adaptation is None:
            return await episodes, {}
        return await asyncio.gather(episodes, self.adaptation.load(device_ids))

    def _abandon(self) -> None:
        self.dead_letters.abandon()
        for sink in self.alert_sinks:
            sink.abandon()


class _Output(NamedTuple):
    """What one batch sends: kept until every sink holds it, so a failed send is retried as is."""

    letters: list[tuple[MessageContext, Rejection]]
    alerts: list[Alert]
    statuses: Statuses


class _Sources:
    """Which message, and which part of it, each reading of a batch came from.

    Built only when the detector refuses readings: a refused reading is found by its device and
    timestamp, and among readings that share those, by equal content, each taken once.
    """

    def __init__(self, messages: Sequence[KafkaMessage], batch: BatchDecoded) -> None:
        self._messages = messages
        self._batch = batch
        self._by_key: dict[tuple[str, int], list[int]] = {}
        for row, key in enumerate(zip(batch.columns.device_ids, batch.columns.ts)):
            self._by_key.setdefault(key, []).append(row)

    def rejection(self, refused: Refused) -> tuple[Rejection, MessageContext]:
        """The dead letter of a refused reading: its reason, the bytes of its own part of the message."""
        candidates = self._by_key[(refused.reading.device_id, refused.reading.ts)]
        values = self._batch.columns.values
        i = next((i for i, row in enumerate(candidates) if values[row] == refused.reading.values), 0)
        row = candidates.pop(i)
        source = MessageContext.of(self._messages[self._batch.message_of[row]])
        where, part = self._batch.part(row)
        return Rejection(where + refused.reason, source.value if part is None else part), source
