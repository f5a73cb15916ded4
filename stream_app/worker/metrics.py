"""Prometheus metrics of one worker, on its own registry (no process-global state)."""

from __future__ import annotations

from collections.abc import Mapping

import errno
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)

from stream_app.worker.dlq_reasons import REASONS, reason_label


# ``floorwatch_batch_stage_seconds{stage}``, a micro-batch's path in order. ``age``: its first message's
# age (Kafka timestamp to now) when the consumer took the batch (produce, broker, fetch); ``queued``:
# from then until the handler began; ``decode``; ``model``: the model calls; ``detector``: the rest of
# detection; ``sinks``: until every sink held the batch's records (each sink's own wait is
# ``sink_<name>``); ``commit``: the offsets (or the transaction); ``redis_write``: from alerts' hand-over
# to the Redis sink until its background writer has them in Redis; ``stall_check``: the consumer's
# progress check every few seconds (broker round trips between two batches). Clocks differ between
# the producer's machine and the worker's: ``age`` is only as good as their sync.
STAGES = ("age", "queued", "decode", "model", "detector", "sinks", "sink_dead_letters", "sink_kafka", "sink_redis", "commit", "redis_write", "stall_check")
STAGE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


class DeadLetterCounter:
    """``floorwatch_dead_letters_total{reason}``, the reason one of a bounded set (dlq_reasons.py)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.counter = Counter(
            "floorwatch_dead_letters", "Messages or readings sent to the DLQ, by reason", ["reason"], registry=registry
        )
        for label in REASONS:  # every series from the start: rate() sees the first one
            self.counter.labels(label)

    def add(self, reason: str, amount: int = 1) -> None:
        """Count dead letters by their free-text reason."""
        self.counter.labels(reason_label(reason)).inc(amount)

    def inc(self, amount: float = 1) -> None:
        """For a caller that does not know the reasons: counted as ``other``."""
        self.counter.labels("other").inc(amount)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter("floorwatch_messages_total", "Messages consumed from the readings topic", registry=r)
        self.readings = Counter("floorwatch_readings_total", "Readings decoded", registry=r)
        self.duplicates = Counter("floorwatch_duplicate_readings_total", "Readings seen before (redelivery)", registry=r)
        self.dead_letters = DeadLetterCounter(r)
        self.windows = Counter("floorwatch_windows_scored_total", "Windows scored by the model", registry=r)
        self.known_spikes = Counter(
            "floorwatch_known_spikes", "Windows over a device's line that matched its own recent brief excursions: no episode opened",
            registry=r,
        )  # fmt: skip
        self.alerts = Counter("floorwatch_alerts_total", "Alerts emitted", ["state"], registry=r)
        self.batch_size = Histogram(
            "floorwatch_batch_windows", "Windows per micro-batch", buckets=(1, 8, 64, 256, 1024, 4096), registry=r
        )
        self.batch_seconds = Histogram("floorwatch_batch_seconds", "Time to process one micro-batch", registry=r)
        # Where a reading's latency goes, batch by batch (STAGES); fine buckets: the goal is tens of ms.
        self.stage_seconds = Histogram(
            "floorwatch_batch_stage_seconds", "Seconds a micro-batch spent in each stage (see STAGES)", ["stage"],
            buckets=STAGE_BUCKETS, registry=r,
        )  # fmt: skip
        for stage in STAGES:  # every series from the start
            self.stage_seconds.labels(stage)
        self.redis_pending = Gauge("floorwatch_redis_pending_alerts", "Alerts waiting for Redis", registry=r)
        self.readings_lag = Gauge(
            "floorwatch_readings_lag", "Readings partition lag: high watermark - position", ["partition"], registry=r
        )
        self._lag_labels: set[str] = set()
        self.consumer_lag = Gauge(
            "floorwatch_consumer_lag",
            "Readings partition lag of the group: high watermark - committed offset (sampled every few seconds)",
            ["partition"], registry=r,
        )  # fmt: skip
        self._committed_labels: set[str] = set()
        self.model = Info("floorwatch_model", "The model version each asset group is scored with", ["group"], registry=r)
        # CPU seconds, resident memory, open fds, start time: of this worker process (Linux /proc).
        ProcessCollector(registry=r)
        self.consumer_stalls = Counter(
            "floorwatch_consumer_stalls_total", "Readings partitions found stalled below their high watermark", registry=r
        )
        self.devices = Gauge("floorwatch_devices", "Devices the worker holds state for", registry=r)
        self.devices_evicted = Counter(
            "floorwatch_devices_evicted_total", "Devices whose state was dropped after FLOORWATCH_DEVICE_IDLE_S", registry=r
        )
        self.redis_available = Gauge(
            "floorwatch_redis_available", "1 while the Redis sink's breaker is closed, 0 while it buffers", registry=r
        )
        self.model_drift = Gauge(
            "floorwatch_model_drift", "Drift figure of a model (drift.py)", ["group", "feature", "figure"], registry=r
        )
        self.model_swaps = Counter("floorwatch_model_swaps_total", "Promoted versions swapped in", ["group"], registry=r)
        self.shadow_alerts = Counter("floorwatch_shadow_alerts_total", "Alerts of shadow models (not sent)", ["model"], registry=r)
        self.sink_retries = Counter(
            "floorwatch_sink_retries_total",
            "Failed attempts to send a batch's alerts or dead letters, or commit its transaction (the same records are sent again)",
            registry=r,
        )  # fmt: skip
        self.sink_retrying = Gauge(
            "floorwatch_sink_retrying", "1 while a batch waits for a sink (or its transaction) to take its records (nothing committed)",
            registry=r,
        )  # fmt: skip
        self.redis_dropped = Counter("floorwatch_redis_dropped_alerts_total", "Alerts dropped from the Redis buffer", registry=r)
        self.adaptation = Counter(
            "floorwatch_adaptation_states", "Devices' adaptation states saved to Redis, or taken up from it (worker/adaptation.py)",
            ["action"], registry=r,
        )  # fmt: skip
        for action in ("saved", "restored"):
            self.adaptation.labels(action)

    def set_lag(self, lag: Mapping[tuple[str, int], int]) -> None:
        """Each assigned readings partition's lag (high watermark - position); revoked ones removed."""
        labels = {str(partition) for _, partition in lag}
        for gone in self._lag_labels - labels:
            self.readings_lag.remove(gone)
        for (_, partition), value in lag.items():
            self.readings_lag.labels(str(partition)).set(value)
        self._lag_labels = labels

    def set_committed_lag(self, lag: Mapping[tuple[str, int], int]) -> None:
        """Each assigned readings partition's high watermark - committed offset; revoked ones removed."""
        labels = {str(partition) for _, partition in lag}
        for gone in self._committed_labels - labels:
            self.consumer_lag.remove(gone)
        for (_, partition), value in lag.items():
            self.consumer_lag.labels(str(partition)).set(value)
        self._committed_labels = labels

    def set_models(self, versions: Mapping[str, str]) -> None:
        """``floorwatch_model_info{group, version}``: the version each group scores with now."""
        for group, version in versions.items():
            self.model.labels(group).info({"version": version})

    def totals(self) -> dict[str, float]:
        """Every floorwatch counter's total (labelled ones summed), keyed by its exported ``*_total`` name."""
        totals: dict[str, float] = {}
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.name.startswith("floorwatch_"):
                    totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        return totals

    def readiness(self) -> list[str]:
        """Why the worker is not ready (empty: ready): it holds readings partitions and Redis answers.
        The model is loaded before the endpoint starts (start.py)."""
        problems = []
        if not self._lag_labels:
            problems.append("no readings partition assigned (yet)")
        if self.redis_available._value.get() != 1:
            problems.append("Redis unavailable: alerts are buffered")
        return problems

    def serve(self, host: str, port: int) -> ThreadingHTTPServer | None:
        """``/metrics`` (and any other path, as before), ``/healthz`` (the process answers) and
        ``/readyz`` (200 when ``readiness`` is empty, else 503 with the reasons), in a daemon thread."""
        if not port:
            return None
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?")[0]
                if path == "/healthz":
                    self._send(200, b"ok\n", "text/plain")
                elif path == "/readyz":
                    problems = metrics.readiness()
                    self._send(503 if problems else 200, ("; ".join(problems) or "ready").encode() + b"\n", "text/plain")
                else:
                    self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)

            def _send(self, code: int, body: bytes, kind: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # a scrape a second is not worth a log line
                pass

        try:
            server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise OSError(exc.errno, f"metrics port {host}:{port} is in use (another worker? set FLOORWATCH_METRICS_PORT)") from None
            raise
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
        return server
