"""A local, versioned model store.

Layout, one folder per version, plus a pointer to the version the workers serve::

    <model_dir>/
        CURRENT                 # "v0003"
        v0003/
            model.keras         # the LSTM autoencoder
            scaler.json         # fitted once on training data, applied as-is at scoring time
            thresholds.json     # calibrated on held-out normal windows
            card.json           # features, window, training data summary, validation metrics
        SHADOW                  # optional: a candidate workers score beside CURRENT (shadow.py)
        HISTORY.jsonl           # audit log: train, promote, rollback, shadow (registry_audit.py)
        groups/
            pumps/              # an asset group's own store, same layout (see routing.py)
                CURRENT
                v0001/

Versions are written to a temporary folder and renamed into place, so a reader never sees half
a version. Pointers are written to a temporary file, flushed to disk and renamed over the old one
(``os.replace`` is atomic), so a crash mid-promote leaves ``CURRENT`` naming the old or the new
version, both complete. Running workers watch the pointers and swap models without a restart
(reload.py).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field

from stream_app.errors import FloorwatchError
from stream_app.models.audit import AuditEntry, AuditLog

# Asset group names name folders under ``groups/``; devices that match no group use the default model.
DEFAULT_GROUP = "default"
_GROUP_NAME = re.compile(r"^[a-z0-9_-]+$")


def check_group_name(name: str) -> str:
    """``name`` if it can name an asset group (and a folder under ``groups/``), else ValueError."""
    if not _GROUP_NAME.match(name):
        raise ValueError(f"asset group name {name!r}: use lowercase letters, digits, '_' and '-'")
    if name == DEFAULT_GROUP:
        raise ValueError(f"asset group name {name!r} is reserved for devices that match no group")
    return name

if TYPE_CHECKING:  # keras is imported lazily: commands that don't score shouldn't pay for TensorFlow
    import keras

_VERSION = re.compile(r"^v(\d{4,})$")


class ModelStoreError(FloorwatchError):
    """A model store problem a user can act on (no model yet, unknown version, ...)."""


class Scaler(BaseModel):
    """How raw windows become the model's input: per-feature standardisation, fitted on training data only,
    and for the features in ``centred``, each window taken relative to its own mean."""

    mean: list[float]
    scale: list[float]
    # Features whose level wandered in training like a random walk (``training.wander.wandering``): where
    # such a level will sit later is anybody's guess, and a model that saw only the training's levels
    # reads every new one as anomalous. Their windows are read for their shape, relative to their mean.
    centred: list[bool] = Field(default_factory=list)

    def centre_mask(self) -> np.ndarray:
        """(F,) float32: 1.0 for a centred feature, else 0.0 (all 0.0 for scalers from before centring)."""
        mask = np.zeros(len(self.mean), np.float32)
        mask[: len(self.centred)] = self.centred
        return mask

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Readings (n, F) or windows (n, T, F) -> model input; only windows are centred."""
        scaled = ((x - np.asarray(self.mean, np.float32)) / np.asarray(self.scale, np.float32)).astype(np.float32)
        if scaled.ndim == 3 and any(self.centred):
            scaled -= self.centre_mask() * scaled.mean(axis=1, keepdims=True)
        return scaled

    @classmethod
    def fit(cls, values: np.ndarray, *, centred: list[bool] | None = None) -> Scaler:
        from sklearn.preprocessing import StandardScaler

        fitted = StandardScaler().fit(values.reshape(-1, values.shape[-1]))
        # (none centred is written as none: such a scaler reads as it did before centring)
        return cls(mean=fitted.mean_.tolist(), scale=fitted.scale_.tolist(), centred=list(centred) if centred and any(centred) else [])


class Thresholds(BaseModel):
    """How a window's score is formed and where alerting starts.

    A window's per-feature error is its mean absolute reconstruction error divided by that
    feature's median error on normal validation windows (so 1.0 means "typical"). The score is
    the largest of these; it is anomalous above ``threshold``.
    """

    # "quantile": score > threshold; "per-feature": any feature's relative error > its own
    # threshold in ``feature_thresholds``; "dynamic": smoothed score > threshold (see below).
    method: str = "quantile"
    quantile: float
    multiplier: float
    threshold: float
    feature_reference: list[float]
    feature_thresholds: dict[str, float] = Field(default_factory=dict)
    # Normal operating envelope of each feature's window mean, in sensor units. A reconstruction
    # model can extrapolate a level it never saw (a machine running hot reconstructs as "hot"),
    # so a window whose mean leaves this envelope fails the ``level`` check on its own.
    feature_envelope: dict[str, tuple[float, float]] = Field(default_factory=dict)
    # The ``stuck`` check: a sensor that repeats one value for the last ``stuck_run`` readings of a
    # window (None: the whole window). It applies to ``stuck_features``, those that never held one
    # value that long in normal data (a quantised sensor that often repeats itself is not "stuck");
    # None: every feature.
    stuck_features: list[str] | None = None
    stuck_run: int | None = None
    # Newer models: each feature's own stuck run, from how often it repeated itself in normal data
    # (thresholds.stuck_runs); a feature absent here is never stuck. Empty: the two fields above apply.
    stuck_runs: dict[str, int] = Field(default_factory=dict)
    # Values a feature sat at for its whole stuck run, or longer, in normal training data (an idle floor, a
    # quantised count at zero): a run there is how the sensor rests, not a stuck sensor (thresholds.resting_values).
    resting_values: dict[str, list[float]] = Field(default_factory=dict)
    # A lone sensor's jump line: how far it may step between two readings, 1.5x the largest step in its normal
    # training rows and validation windows (thresholds.jump_lines). Empty: no jump check (models of several
    # sensors, older models).
    jump_lines: dict[str, float] = Field(default_factory=dict)
    # The peak line (newer models): each feature's typical largest single-reading error on normal windows,
    # and the line for the window's largest relative peak. None: no peak check (models from before it).
    peak_reference: list[float] | None = None
    peak_threshold: float | None = None
    # method "dynamic" (telemanom-style): scores are EWMA-smoothed per device with ``ewma_alpha``
    # and ``threshold`` = mean + z * sd of smoothed normal scores, z picked by the pruning criterion.
    ewma_alpha: float | None = None
    z: float | None = None


class TrainingSummary(BaseModel):
    source: str
    series: int
    readings: int
    train_windows: int
    validation_windows: int
    feature_mean: dict[str, float]
    feature_std: dict[str, float]
    epochs: int


class ValidationMetrics(BaseModel):
    train_loss: float
    validation_loss: float
    validation_score_p50: float
    validation_score_p99: float
    validation_score_max: float
    validation_windows_over_threshold: float = Field(description="share of normal validation windows above threshold")


class DriftReference(BaseModel):
    """What the drift watch compares live traffic with (drift.py), recorded at training time.

    ``feature_edges``: per feature, the interior quantiles of its training readings (1/B, ..., (B-1)/B;
    repeats dropped, so a quantised sensor has fewer bins), and ``feature_shares`` the training
    share in each of the bins they make (open at both ends). ``ratio_edges`` and ``ratio_shares``:
    the same for normal validation windows' distance to the line (1.0 = the line).
    ``windows_over_line``: the share of normal validation windows over the line.
    """

    bins: int
    feature_edges: dict[str, list[float]]
    feature_shares: dict[str, list[float]]
    ratio_edges: list[float]
    ratio_shares: list[float]
    windows_over_line: float


class ModelCard(BaseModel):
    version: str = ""
    # The asset group the model was trained for (stamped by the store it was saved in).
    asset_group: str = DEFAULT_GROUP
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    detector: str = "lstm-autoencoder"
    features: list[str]
    window: int
    units: int
    training: TrainingSummary
    validation: ValidationMetrics
    notes: dict[str, Any] = Field(default_factory=dict)
    # How the threshold was calibrated: method, quantile, multiplier, EWMA alpha and z (dynamic), lines.
    calibration: dict[str, Any] = Field(default_factory=dict)
    # Absent on cards written before the drift watch: the watch is then off for that model.
    drift_reference: DriftReference | None = None


class ModelBundle(BaseModel):
    """Everything needed to score: the card, scaler, thresholds and where the weights live."""

    path: Path
    card: ModelCard
    scaler: Scaler
    thresholds: Thresholds
    # The asset group whose store it was loaded from.
    group: str = DEFAULT_GROUP

    @property
    def version(self) -> str:
        """The version as alerts and Redis report it: ``v0003``, or ``pumps/v0003`` for an asset
        group's model (each group numbers its own versions, so the bare number is ambiguous)."""
        return self.card.version if self.group == DEFAULT_GROUP else f"{self.group}/{self.card.version}"

    def load_keras(self) -> keras.Model:
        import keras

        return keras.saving.load_model(self.path / "model.keras", compile=False)


def stored_groups(model_dir: Path) -> list[str]:
    """Asset groups that have a store under ``<model_dir>/groups``, by name."""
    folder = Path(model_dir) / "groups"
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


class ModelStore:
    def __init__(self, root: Path, group: str = DEFAULT_GROUP) -> None:
        self.root = Path(root)
        self.group = group

    @classmethod
    def for_group(cls, model_dir: Path, group: str | None = None) -> ModelStore:
        """The store of an asset group's models, ``<model_dir>/groups/<name>``; None or ``default``
        is ``model_dir`` itself, so installs without groups keep their layout."""
        if group is None or group == DEFAULT_GROUP:
            return cls(model_dir)
        return cls(Path(model_dir) / "groups" / check_group_name(group), group)

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        found = [p.name for p in self.root.iterdir() if p.is_dir() and _VERSION.match(p.name)]
        return sorted(found, key=lambda v: int(v[1:]))

    def current(self) -> str | None:
        return self._pointer("CURRENT")

    def shadow_version(self) -> str | None:
        """The candidate workers score beside the current model (``models shadow``), if any."""
        return self._pointer("SHADOW")

    def pointer_stamp(self) -> tuple[int, int, int, int]:
        """A cheap fingerprint of CURRENT and SHADOW (inode and mtime of each; 0 when absent): what
        running workers poll once a second, reading a pointer only when its stamp changes."""
        stamp: list[int] = []
        for name in ("CURRENT", "SHADOW"):
            try:
                st = os.stat(self.root / name)
                stamp += [st.st_ino, st.st_mtime_ns]
            except OSError:
                stamp += [0, 0]
        return stamp[0], stamp[1], stamp[2], stamp[3]

    @property
    def audit(self) -> AuditLog:
        return AuditLog(self.root)

    def _pointer(self, name: str) -> str | None:
        pointer = self.root / name
        try:
            version = pointer.read_text().strip()
        except OSError:
            return None
        return version if version in self.versions() else None

    def cards(self) -> list[ModelCard]:
        return [self._read(v, "card.json", ModelCard) for v in self.versions()]

    def load(self, version: str | None = None) -> ModelBundle:
        version = version or self.current()
        if version is None:
            if self.group == DEFAULT_GROUP:
                raise ModelStoreError(f"no model in {self.root}: run `floorwatch train` first")
            raise ModelStoreError(
                f"no model for asset group {self.group!r} in {self.root}: run `floorwatch train --group {self.group}` first"
            )
        if version not in self.versions():
            raise ModelStoreError(f"unknown model version {version!r} in {self.root}")
        return ModelBundle(
            path=self.root / version,
            card=self._read(version, "card.json", ModelCard),
            scaler=self._read(version, "scaler.json", Scaler),
            thresholds=self._read(version, "thresholds.json", Thresholds),
            group=self.group,
        )

    def save(
        self,
        model: keras.Model,
        card: ModelCard,
        scaler: Scaler,
        thresholds: Thresholds,
        *,
        promote: bool = True,
    ) -> ModelBundle:
        """Write a new version; make it current when ``promote`` is set."""
        self.root.mkdir(parents=True, exist_ok=True)
        existing = self.versions()
        version = f"v{(int(existing[-1][1:]) + 1) if existing else 1:04d}"
        card = card.model_copy(update={"version": version, "asset_group": self.group})
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            model.save(staging / "model.keras")
            for name, doc in (("card.json", card), ("scaler.json", scaler), ("thresholds.json", thresholds)):
                (staging / name).write_text(doc.model_dump_json(indent=2))
            staging.rename(self.root / version)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self.audit.append(AuditEntry(action="train", group=self.group, version=version, note=card.training.source))
        if promote:
            self.promote(version)
        return self.load(version)

    def promote(self, version: str, *, action: str = "promote", note: str = "") -> str | None:
        """Make ``version`` current; return the version it replaces. Recorded in the audit log."""
        self._check_known(version)
        previous = self.current()
        self._write_pointer("CURRENT", version)
        self.audit.append(AuditEntry(action=action, group=self.group, version=version, previous=previous, note=note))
        return previous

    def rollback_target(self) -> str:
        """The version to roll back to: the one the current version replaced when it was last
        promoted (so successive rollbacks walk back the promotions), else the newest older version."""
        current = self.current()
        if current is None:
            raise ModelStoreError(f"no current model in {self.root}: nothing to roll back")
        for entry in reversed(self.audit.entries()):
            if entry.action == "promote" and entry.version == current and entry.previous in self.versions():
                if entry.previous != current:
                    return entry.previous
        older = [v for v in self.versions() if int(v[1:]) < int(current[1:])]
        if not older:
            raise ModelStoreError(f"nothing to roll back to: {current} is the oldest version in {self.root}")
        return older[-1]

    def rollback(self, note: str = "") -> tuple[str, str]:
        """Make the rollback target current; return (from, to)."""
        target = self.rollback_target()
        previous = self.promote(target, action="rollback", note=note)
        return previous or "", target

    def set_shadow(self, version: str | None, note: str = "") -> str | None:
        """Name the candidate workers score beside the current model (None: stop shadowing); return the previous one."""
        previous = self.shadow_version()
        if version is None:
            try:
                (self.root / "SHADOW").unlink()
            except FileNotFoundError:
                pass
            self.audit.append(AuditEntry(action="shadow-off", group=self.group, previous=previous, note=note))
            return previous
        self._check_known(version)
        self._write_pointer("SHADOW", version)
        self.audit.append(AuditEntry(action="shadow", group=self.group, version=version, previous=previous, note=note))
        return previous

    def _check_known(self, version: str) -> None:
        if version not in self.versions():
            raise ModelStoreError(f"unknown model version {version!r}; known: {', '.join(self.versions()) or 'none'}")

    def _write_pointer(self, name: str, version: str) -> None:
        # Written, flushed and renamed into place: a crash leaves the old pointer or the new one.
        tmp = self.root / f".{name}.tmp"
        with open(tmp, "w") as out:
            out.write(version + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.root / name)
        try:
            folder = os.open(self.root, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(folder)  # the rename itself survives a power cut
        finally:
            os.close(folder)

    def _read(self, version: str, name: str, kind: type[BaseModel]) -> Any:
        path = self.root / version / name
        try:
            return kind.model_validate_json(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ModelStoreError(f"model {version}: cannot read {name}: {exc}") from exc
