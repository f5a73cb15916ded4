"""The default training recipe, defined once.

What ``floorwatch train`` does with no options, and what demo, bench and ``evaluate --train`` train
when they need a model: ``TrainingConfig()`` (the model's shape and its calibration defaults) on
simulated normal data, 40 devices x 2000 readings, seed 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stream_app.models.store import ModelBundle, ModelStore
from stream_app.training.fit import TrainingConfig, train

# The defaults every entry point shows and uses (window, units, epochs, quantile, multiplier, EWMA alpha...).
DEFAULT_TRAINING = TrainingConfig()


@dataclass(frozen=True, slots=True)
class SimulatedNormal:
    """Normal series from the fleet simulator, and the source line a model card records for them."""

    devices: int = 40
    samples: int = 2000
    seed: int = 1
    rate_hz: float = 1.0

    def series(self) -> list[np.ndarray]:
        from producers.simulator import normal_training_series  # the simulator: tooling, not the worker's path

        return normal_training_series(self.devices, self.samples, rate_hz=self.rate_hz, seed=self.seed)

    def source(self) -> str:
        every = "" if self.rate_hz == 1.0 else f" every {1 / self.rate_hz:g}s"
        return f"simulator: {self.devices} devices x {self.samples} readings{every}, seed {self.seed}"


DEFAULT_DATA = SimulatedNormal()


def train_default(store: ModelStore) -> ModelBundle:
    """The default model, trained into ``store`` and promoted (about a minute on a laptop)."""
    from producers.scenarios import FEATURES

    return train(DEFAULT_DATA.series(), FEATURES, store, DEFAULT_TRAINING, source=DEFAULT_DATA.source())
