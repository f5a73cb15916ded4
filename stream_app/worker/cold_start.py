"""Cold start in the worker: each asset group with no model trains its first one from its own stream.

The group's readings are kept by its ``Learner`` (``pipeline/cold_start.py``) while the worker scores the
other groups. Once the learner has enough, a model is trained on them on a background thread
(``background.py``) with the same recipe as ``floorwatch train``, saved in the group's store and made
current, unless another worker made one current first. The worker's hot reload (``reload.py``) then
installs it at the start of a batch, exactly as it installs a promoted version. A failed training, or a
first model the reload refuses (``load-refused``: e.g. weights that do not load here), is logged, and the
group trains again once it has twice the readings: it does not stay unscored until a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from stream_app.background import background_executor
from stream_app.models.store import ModelStore
from stream_app.pipeline.group_detector import GroupDetector
from stream_app.training.fit import TrainingConfig, train

log = logging.getLogger(__name__)


class ColdStarter:
    """Trains the first model of every learning group once it is ready, off the scoring path."""

    def __init__(
        self,
        detector: GroupDetector,
        model_dir: Path,
        training: TrainingConfig = TrainingConfig(jit_compile=False),
        *,
        refused: Callable[[str], str | None] = lambda group: None,
    ) -> None:
        self.detector = detector
        self.model_dir = Path(model_dir)
        self.training = training
        self.refused = refused  # the version of a group the hot reload refused, if any (reload.py)
        self._pool = background_executor("floorwatch-cold-start")
        self._busy: set[str] = set()  # groups training now, or trained and waiting for the reload
        self._retry_at: dict[str, int] = {}  # after a failure: readings the group needs before the next try
        self._promoted: dict[str, str] = {}  # the first model this worker made current, per group

    def check(self) -> None:
        """Start the training of every group that is ready (called before each batch; cheap)."""
        for group, learner in self.detector.learners.items():
            promoted = self._promoted.get(group)
            if group in self._busy and promoted is not None and self.refused(group) == promoted:
                self._retry_at[group] = 2 * learner.readings
                self._busy.discard(group)
                log.error("cold start: group %s's first model %s was refused by the reload; training again at %d readings",
                          group, promoted, 2 * learner.readings)  # fmt: skip
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
            current = store.current()
            if current is None or current == self._promoted.get(group):  # none yet, or our own that was refused
                store.promote(bundle.version, note="cold start: the group's first model, learnt from its stream")
                self._promoted[group] = bundle.version
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
