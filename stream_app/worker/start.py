"""``floorwatch worker``: load the current models (the default one and each asset group's),
compile and warm them, then run the Faust app."""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import sys

from stream_app.pipeline.detector import Detector, DetectorConfig
from stream_app.pipeline.episodes import EpisodeRule
from stream_app.pipeline.lines import LineConfig
from stream_app.pipeline.reservoir import RefitConfig
from stream_app.pipeline.seasonal import SeasonConfig
from stream_app.training.refit import BackgroundRefitter
from stream_app.training.fit import TrainingConfig
from stream_app.pipeline.group_detector import GroupDetector
from stream_app.worker.metrics import Metrics
from stream_app.models.store import ModelBundle, ModelStore, ModelStoreError
from stream_app.pipeline.routing import DEFAULT_GROUP, GroupRouter
from stream_app.pipeline.scorer import Scorer
from stream_app.config.settings import Settings

log = logging.getLogger(__name__)


def build_detectors(settings: Settings, version: str | None = None) -> GroupDetector:
    """A detector for the default model and one per configured asset group; ``version`` pins the default model."""
    bundles = load_bundles(settings, version)
    for group, bundle in bundles.items():
        if bundle.card.asset_group != group:  # e.g. a version folder copied from another group's store
            log.warning("model %s serves asset group %r but was trained for %r", bundle.version, group,
                        bundle.card.asset_group)
    # A rule applies to every model that has its sensor; one that no model has is a typo.
    known = {f for bundle in bundles.values() for f in bundle.card.features}
    unknown = [r.name for r in settings.rule_list() if r.feature not in known]
    if unknown:
        raise ValueError(f"FLOORWATCH_RULES: {', '.join(unknown)} name(s) a sensor no model uses ({', '.join(sorted(known))})")
    detectors = {group: build_detector(settings, bundle) for group, bundle in bundles.items()}
    log.info("models: %s", ", ".join(f"{g}={d.model_version}" for g, d in detectors.items()))
    return GroupDetector(detectors, GroupRouter(settings.asset_group_list()))


def load_bundles(settings: Settings, version: str | None = None) -> dict[str, ModelBundle]:
    """Each group's current model (JSON only, no TensorFlow yet); every missing model named in one error."""
    groups = [DEFAULT_GROUP, *(g.name for g in settings.asset_group_list())]
    bundles: dict[str, ModelBundle] = {}
    problems: list[str] = []
    for group in groups:
        try:
            store = ModelStore.for_group(settings.model_dir, group)
            bundles[group] = store.load(version if group == DEFAULT_GROUP else None)
        except ModelStoreError as exc:
            problems.append(str(exc))
    if problems:
        raise ModelStoreError("; ".join(problems))
    return bundles


def build_detector(settings: Settings, bundle: ModelBundle) -> Detector:
    scorer = Scorer.from_bundle(bundle, max_batch=settings.batch_max_size)
    scorer.warm()  # compile every padded shape before the first message, not during it
    config = detector_config(settings)
    rules = tuple(r for r in config.rules if r.feature in bundle.card.features)
    refitter = None
    if config.refit.enabled and bundle.card.detector == "lstm-autoencoder":
        training = TrainingConfig(window=bundle.card.window, units=bundle.card.units, jit_compile=False)
        refitter = BackgroundRefitter(
            ModelStore.for_group(settings.model_dir, bundle.group), training, config.refit, max_batch=settings.batch_max_size
        )
    return Detector(bundle, scorer, dataclasses.replace(config, rules=rules), on_refit=refitter)


def detector_config(settings: Settings) -> DetectorConfig:
    return DetectorConfig(
        stride=settings.stride,
        max_gap_ms=int(settings.max_gap_s * 1000),
        max_future_ms=int(settings.max_future_s * 1000),
        rule=EpisodeRule(
            settings.episode_open_after, settings.episode_close_after, settings.episode_close_ratio,
            close_after_s=settings.episode_close_after_s, max_duration_s=settings.episode_max_duration_s,
        ),  # fmt: skip
        rules=settings.rule_list(),
        lines=LineConfig(enabled=settings.adapt_lines, warmup=settings.adapt_warmup_windows),
        season=SeasonConfig(enabled=settings.adapt_seasonal),
        refit=RefitConfig(
            enabled=settings.refit, min_interval_s=settings.refit_min_interval_s, every_windows=settings.refit_every_windows
        ),
    )


def ready_line(settings: Settings, detector: GroupDetector) -> str:
    """What the worker prints once started, whatever the log level: models, topics, endpoints."""
    models = ", ".join(f"{g}={d.model_version}" for g, d in detector.detectors.items())
    where = (f"http://{settings.metrics_host}:{settings.metrics_port}/metrics (and /healthz, /readyz)"
             if settings.metrics_port else "off")  # fmt: skip
    return (f"floorwatch worker ready: models {models}; reading {settings.readings_topic} as group {settings.app_id}; "
            f"alerts to {settings.alerts_topic}, dead letters to {settings.dlq_topic}; metrics {where}")  # fmt: skip


def run_worker(settings: Settings, version: str | None = None) -> None:
    import faust

    class _ReadyWorker(faust.Worker):
        def __init__(self, ready: str, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            self._ready = ready
            if not self.stdout.isatty():  # its spinner writes cursor escape codes even into a log file
                self.spinner = None

        async def on_startup_finished(self) -> None:
            await super().on_startup_finished()
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
    ready = ready_line(settings, detector)
    lifecycle = Lifecycle(
        settings, detector, lambda bundle: build_detector(settings, bundle), metrics, pinned_default=version is not None
    )
    app = create_app(settings, detector, metrics, lifecycle)
    # TensorFlow and Keras leave millions of long-lived objects; without this every full
    # collection walks them all, and it cost about a third of decoding time (measured).
    gc.freeze()
    try:
        _ReadyWorker(ready, app, loglevel=settings.log_level.upper(), quiet=True).execute_from_commandline()
    finally:
        # After faust has committed and left the group: what this worker did, for the operator
        # (the metrics endpoint may already be gone) and for the restart drill.
        log.info("worker stopped: %s", json.dumps(metrics.totals(), sort_keys=True))
