"""``floorwatch worker``: load the current model, compile and warm it, then run the Faust app."""

from __future__ import annotations

import logging

from .detector import Detector, DetectorConfig
from .episodes import EpisodeRule
from .metrics import Metrics
from .model_store import ModelStore
from .scorer import Scorer
from .settings import Settings

log = logging.getLogger(__name__)


def build_detector(settings: Settings, version: str | None = None) -> Detector:
    bundle = ModelStore(settings.model_dir).load(version)
    scorer = Scorer.from_bundle(bundle, max_batch=settings.batch_max_size)
    scorer.warm()  # compile every padded shape before the first message, not during it
    return Detector(bundle, scorer, detector_config(settings))


def detector_config(settings: Settings) -> DetectorConfig:
    return DetectorConfig(
        stride=settings.stride,
        max_gap_ms=int(settings.max_gap_s * 1000),
        max_future_ms=int(settings.max_future_s * 1000),
        rule=EpisodeRule(settings.episode_open_after, settings.episode_close_after, settings.episode_close_ratio),
    )


def run_worker(settings: Settings, version: str | None = None) -> None:
    import faust

    from .app import create_app

    detector = build_detector(settings, version)
    metrics = Metrics()
    metrics.serve(settings.metrics_host, settings.metrics_port)
    app = create_app(settings, detector, metrics)
    faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True).execute_from_commandline()
