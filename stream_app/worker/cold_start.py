"""Cold start in the worker: each asset group with no model trains its first one from its own stream.

The group's readings are kept by its ``Learner`` (``pipeline/cold_start.py``) while the worker scores the
other groups. Once the learner has enough, a model is trained on them on a background thread
(``background.py``) with the same recipe as ``floorwatch train``, saved in the group's store and made
current, unless another worker made one current first. The worker's hot reload (``reload.py``) then
installs it at the start of a batch, exactly as it installs a promoted version. A failed training is
logged, and tried again once the group has twice the readings.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from stream_app.background import background_executor
from stream_app.models.store import ModelStore
from stream_app.pipeline.group_detector import GroupDetector
from stream_app.training.fit import TrainingConfig, train

log = logging.getLogger(__name__)


class ColdStarter:
    """Trains the first model of every learning group once it is ready, off the scoring path."""

    def __init__(self, detector: GroupDetector, model_dir: Path, training: TrainingConfig = TrainingConfig(jit_compile=False)) -> None:
        self.detector = detector
        self.model_dir = Path(model_dir)
        self.training = training
        self._pool = background_executor("floorwatch-cold-start")
        self._busy: set[str] = set()  # groups training now, or trained and waiting for the reload
        self._retry_at: dict[str, int] = {}  # after a failure: readings the group needs before the next try

    def check(self) -> None:
        """Start the training of every group that is ready (called before each batch; cheap)."""
        for group, learner in self.detector.learners.items():
            if group in self._busy or not learner.ready or learner.readings < self._retry_at.get(group, 0):
                continue
            series = learner.series(min_length=2 * self.training.window)
            if not series or learner.features is None:
                continue
            self._busy.add(group)
            self._pool.submit(self._train, group, list(learner.features), series, learner.readings)

    def _train(self, group: str, features: list[str], series: list[np.ndarray], readings: int) -> None:
        try:
            store = ModelStore.for_group(self.model_dir, group)
            source = f"cold start: {sum(len(s) for s in series)} readings in {len(series)} runs from the stream"
            bundle = train(series, features, store, self.training, source=source, promote=False)
            if store.current() is None:
                store.promote(bundle.version, note="cold start: the group's first model, learnt from its stream")
                log.warning("cold start: group %s learnt its first model %s from %d readings (sensors %s); "
                            "it is scored from the next batches", group, bundle.version, readings, ", ".join(features))  # fmt: skip
            else:
                log.warning("cold start: group %s got a model from elsewhere meanwhile (%s); %s saved, not promoted",
                            group, store.current(), bundle.version)  # fmt: skip
        except Exception as exc:
            self._retry_at[group] = 2 * readings
            self._busy.discard(group)
            log.error("cold start: training group %s's first model failed (%s: %s); trying again at %d readings",
                      group, type(exc).__name__, exc, 2 * readings)  # fmt: skip
