"""``floorwatch worker``: load the current models (the default one and each asset group's),
compile and warm them, then run the Faust app."""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import sys

from stream_app.pipeline.cold_start import ColdStartConfig, Learner
from stream_app.pipeline.detector import Detector, DetectorConfig
from stream_app.pipeline.episodes import EpisodeRule
from stream_app.pipeline.lines import LineConfig
from stream_app.pipeline.profiles import ProfileConfig
from stream_app.pipeline.reservoir import RefitConfig
from stream_app.pipeline.seasonal import SeasonConfig
from stream_app.pipeline.shifts import ShiftConfig
from stream_app.pipeline.transients import TransientConfig
from stream_app.training.refit import BackgroundRefitter
from stream_app.training.fit import TrainingConfig
from stream_app.pipeline.group_detector import GroupDetector
from stream_app.worker.metrics import Metrics
from stream_app.models.store import ModelBundle, ModelStore, ModelStoreError
from stream_app.pipeline.routing import DEFAULT_GROUP, GroupRouter
from stream_app.pipeline.scorer import Scorer
from stream_app.config.settings import DetectionSettings, EpisodeSettings, Settings
from stream_app.worker.lean_import import import_keras_lean
from stream_app.worker.logs import json_logging_config

log = logging.getLogger(__name__)


def build_detectors(settings: Settings, version: str | None = None) -> GroupDetector:
    """A detector for the default model and one per configured asset group; ``version`` pins the default model."""
    bundles = load_bundles(settings, version)
    learners = {
        group: Learner(group, cold_start_config(settings)) for group in all_groups(settings) if group not in bundles
    }  # cold start: the groups with no model yet learn one from their stream
    for group, bundle in bundles.items():
        if bundle.card.asset_group != group:  # e.g. a version folder copied from another group's store
            log.warning("model %s serves asset group %r but was trained for %r", bundle.version, group,
                        bundle.card.asset_group)
    # A rule applies to every model that has its sensor; one that no model has is a typo.
    known = {f for bundle in bundles.values() for f in bundle.card.features}
    unknown = [r.name for r in settings.rule_list() if r.feature not in known]
    if unknown and not learners:  # a learning group's sensors are not known yet
        raise ValueError(f"FLOORWATCH_RULES: {', '.join(unknown)} name(s) a sensor no model uses ({', '.join(sorted(known))})")
    detectors = {group: build_detector(settings, bundle) for group, bundle in bundles.items()}
    log.info("models: %s", ", ".join(f"{g}={d.model_version}" for g, d in detectors.items()))
    for group in learners:
        log.warning("cold start: group %s has no model; its readings are kept, not scored, until %d readings over %.0f s "
                    "of stream time train its first one", group, settings.cold_start_readings, settings.cold_start_min_span_s)  # fmt: skip
    return GroupDetector(detectors, GroupRouter(settings.asset_group_list()), learners)


def all_groups(settings: Settings) -> list[str]:
    return [DEFAULT_GROUP, *(g.name for g in settings.asset_group_list())]


def load_bundles(settings: Settings, version: str | None = None) -> dict[str, ModelBundle]:
    """Each group's current model (JSON only, no TensorFlow yet); every missing model named in one error,
    unless cold start is on: then a group with no model is left out (it learns one from its stream)."""
    bundles: dict[str, ModelBundle] = {}
    problems: list[str] = []
    for group in all_groups(settings):
        try:
            store = ModelStore.for_group(settings.model_dir, group)
            if settings.cold_start and store.current() is None and not (version and group == DEFAULT_GROUP):
                continue
            bundles[group] = store.load(version if group == DEFAULT_GROUP else None)
        except ModelStoreError as exc:
            problems.append(str(exc))
    if problems:
        raise ModelStoreError("; ".join(problems) + " (or set FLOORWATCH_COLD_START=true to learn a missing model from the stream)")
    if len(bundles) < len(all_groups(settings)) and settings.reload_interval_s <= 0:
        raise ModelStoreError("cold start installs a group's first model by hot reload: set FLOORWATCH_RELOAD_INTERVAL_S > 0")
    return bundles


def cold_start_config(settings: Settings) -> ColdStartConfig:
    return ColdStartConfig(
        min_readings=settings.cold_start_readings, min_span_s=settings.cold_start_min_span_s,
        max_readings=max(50_000, 4 * settings.cold_start_readings), max_gap_ms=int(settings.max_gap_s * 1000),
        max_future_ms=int(settings.max_future_s * 1000),
    )  # fmt: skip


def build_detector(settings: Settings, bundle: ModelBundle) -> Detector:
    scorer = Scorer.from_bundle(bundle, max_batch=settings.batch_max_size)
    scorer.warm()  # compile every padded shape before the first message, not during it
    config = detector_config(settings.detection, settings.episodes)
    rules = tuple(r for r in config.rules if r.feature in bundle.card.features)
    refitter = None
    if config.refit.enabled and bundle.card.detector == "lstm-autoencoder":
        training = TrainingConfig(window=bundle.card.window, units=bundle.card.units, jit_compile=False)
        refitter = BackgroundRefitter(
            ModelStore.for_group(settings.model_dir, bundle.group), training, config.refit, max_batch=settings.batch_max_size
        )
    return Detector(bundle, scorer, dataclasses.replace(config, rules=rules), on_refit=refitter)


def detector_config(detection: DetectionSettings, episodes: EpisodeSettings) -> DetectorConfig:
    return DetectorConfig(
        stride=detection.stride,
        max_gap_ms=int(detection.max_gap_s * 1000),
        max_future_ms=int(detection.max_future_s * 1000),
        rule=EpisodeRule(
            episodes.episode_open_after, episodes.episode_close_after, episodes.episode_close_ratio,
            close_after_s=episodes.episode_close_after_s, max_duration_s=episodes.episode_max_duration_s,
            escalate_factor=episodes.episode_escalate_factor, marginal_ratio=episodes.episode_marginal_ratio,
        ),  # fmt: skip
        rules=detection.rule_list(),
        min_check_windows=detection.level_check_min_windows,
        short_check_widening=detection.level_check_short_widening,
        lines=LineConfig(enabled=detection.adapt_lines, warmup=detection.adapt_warmup_windows),
        season=SeasonConfig(enabled=detection.adapt_seasonal),
        transients=TransientConfig(enabled=detection.adapt_transients_seen > 0, min_seen=max(1, detection.adapt_transients_seen)),
        shifts=ShiftConfig(
            enabled=detection.adapt_shifts, relative_max_features=ShiftConfig().relative_max_features if detection.adapt_shift_relative else 0
        ),
        jumps=detection.check_jumps,
        profiles=ProfileConfig(enabled=detection.check_hours),
        refit=RefitConfig(
            enabled=detection.refit, min_interval_s=detection.refit_min_interval_s, every_windows=detection.refit_every_windows
        ),
    )


def ready_line(settings: Settings, detector: GroupDetector) -> str:
    """What the worker prints once started, whatever the log level: models, topics, endpoints."""
    models = ", ".join([*(f"{g}={d.model_version}" for g, d in detector.detectors.items()),
                        *(f"{g}=none yet (learning from the stream)" for g in detector.learners)])  # fmt: skip
    where = (f"http://{settings.metrics_host}:{settings.metrics_port}/metrics (and /healthz, /readyz)"
             if settings.metrics_port else "off")  # fmt: skip
    return (f"floorwatch worker ready: models {models}; reading {settings.readings_topic} as group {settings.app_id}; "
            f"alerts to {settings.alerts_topic}, dead letters to {settings.dlq_topic}; metrics {where}")  # fmt: skip


def ready_fields(settings: Settings, detector: GroupDetector) -> dict[str, object]:
    """The ready line's facts as fields of a JSON log line (``--log-format json``)."""
    return {
        "models": {g: d.model_version for g, d in detector.detectors.items()},
        "readings_topic": settings.readings_topic,
        "consumer_group": settings.app_id,
        "alerts_topic": settings.alerts_topic,
        "dlq_topic": settings.dlq_topic,
        "metrics_url": f"http://{settings.metrics_host}:{settings.metrics_port}/metrics" if settings.metrics_port else None,
    }


def run_worker(settings: Settings, version: str | None = None) -> None:
    import faust

    import_keras_lean()

    json_logs = settings.log_format == "json"

    class _ReadyWorker(faust.Worker):
        def __init__(self, ready: str, fields: dict[str, object], *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            self._ready, self._fields = ready, fields
            # Its spinner writes cursor escape codes even into a log file, and is no JSON.
            if json_logs or not self.stdout.isatty():
                self.spinner = None

        async def on_startup_finished(self) -> None:
            await super().on_startup_finished()
            if json_logs:  # the same words, and their facts as fields
                log.warning(self._ready, extra=self._fields)
                return
            # Faust redirects stderr into its log at WARNING: shown at the default level, never filtered out.
            print(self._ready, file=sys.stderr, flush=True)

    from stream_app.worker.app import create_app
    from stream_app.worker.preflight import check_services

    from stream_app.worker.lifecycle import Lifecycle

    load_bundles(settings, version)  # a missing model is named first: it is JSON, read in milliseconds
    check_services(settings)  # before minutes of model loading: a wrong password or no Kafka is one line now
    detector = build_detectors(settings, version)
    metrics = Metrics()
    metrics.set_models({group: d.model_version for group, d in detector.detectors.items()})
    metrics.serve(settings.metrics_host, settings.metrics_port)
    ready, fields = ready_line(settings, detector), ready_fields(settings, detector)
    lifecycle = Lifecycle(
        settings, detector, lambda bundle: build_detector(settings, bundle), metrics, pinned_default=version is not None
    )
    app = create_app(settings, detector, metrics, lifecycle)
    # TensorFlow and Keras leave millions of long-lived objects; without this every full
    # collection walks them all, and it cost about a third of decoding time (measured).
    gc.freeze()
    try:
        # JSON: Faust's Worker sets logging up with this configuration instead of its colour handler.
        logging_config = json_logging_config(settings.log_level, settings.secrets()) if json_logs else None
        _ReadyWorker(
            ready, fields, app, loglevel=settings.log_level.upper(), quiet=True, logging_config=logging_config
        ).execute_from_commandline()
    finally:
        if settings.adapt_save_s > 0:  # what the devices learnt since the last timed save, for the next worker
            from stream_app.worker.adaptation import save_on_exit

            saved = save_on_exit(settings.redis, detector, heard_within_s=2 * settings.adapt_save_s)
            metrics.adaptation.labels("saved").inc(saved)
        # After faust has committed and left the group: what this worker did, for the operator
        # (the metrics endpoint may already be gone) and for the restart drill.
        totals = metrics.totals()
        log.info("worker stopped: %s", json.dumps(totals, sort_keys=True), extra={"totals": totals})
