"""``floorwatch evaluate``: run the worker's detector over labelled data and measure it.

The same ``Detector`` the worker runs is fed the readings in time order, in micro-batches of
``batch_size`` readings across devices, exactly as the worker feeds it: windows, stride,
thresholds, checks and episodes all behave as in production, and nothing looks ahead. Each reading
then gets two verdicts: whether its device had an alert episode open after it ("episode", the
default, what operators see) and whether its own window was over the line ("window").

Sources: a simulated fleet with its injected failures (and benign events, never labelled), CSV
recordings with a label column or without one, the SKAB benchmark (per file, the first 400 rows train
that file's model; the rest are scored) and SMD (per machine, its train part trains the model; its
test part is scored).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from stream_app.contracts import Reading
from stream_app.pipeline.detector import Detector, DetectorConfig
from stream_app.models.store import ModelBundle
from stream_app.lab.nab import EventWindowScore, events_score
from stream_app.lab.quality import BestF1, DeviceTrace, EventMetrics, PointMetrics, best_f1, event_metrics, match_events, openings, point_metrics, runs
from stream_app.lab.skab import LabelledSeries
from stream_app.training.fit import TrainingConfig, min_training_rows
from stream_app.training.recipe import DEFAULT_DATA, DEFAULT_TRAINING
from stream_app.training.wander import CENTRED_NOTE

if TYPE_CHECKING:  # imported where used: the simulator, the settings and rich load only for the runs that need them
    from rich.console import Console

    from producers.scenarios import Scenario
    from producers.simulator import BenignSpan
    from stream_app.config.settings import Settings
    from stream_app.pipeline.scorer import WindowScorer

PointMode = Literal["episode", "window"]
DetectorKind = Literal["lstm", "iforest"]
# Progress hooks: readings scored so far of all to score, and what the run is doing now (training a
# file's model, ...). The CLI draws them; this module never prints.
OnReadings = Callable[[int, int], None]
OnStage = Callable[[str], None]


@dataclass(slots=True)
class Trace:
    """One device's evaluation: per reading, truth and the detector's verdicts (test rows only)."""

    device_id: str
    ts: np.ndarray  # (n,) epoch ms
    truth: np.ndarray  # (n,) bool
    is_open: np.ndarray  # (n,) bool: an episode of this device is open after this reading
    over_line: np.ndarray  # (n,) bool: this reading's window is over the line
    ratio: np.ndarray  # (n,) float: this reading's window's distance to normal (1.0 = line); NaN: no window
    # Per reading, for --detections: the window's model score and its device's line (NaN: no window),
    # the episode it belongs to ("" if none) and whether an episode opened at it.
    score: np.ndarray | None = None
    line: np.ndarray | None = None
    episode: np.ndarray | None = None
    opened: np.ndarray | None = None
    # The rows before ``ts`` that the model learnt on and the detector only warmed up with (not scored): their
    # times and truth, so --detections has a row for every input row.
    warmup_ts: np.ndarray | None = None
    warmup_truth: np.ndarray | None = None
    # The raw readings (n, F) and their sensors, and the labelled failures' names: for --plot.
    values: np.ndarray | None = None
    features: tuple[str, ...] = ()
    failures: tuple[str, ...] = ()

    def predicted(self, mode: PointMode) -> np.ndarray:
        return self.is_open if mode == "episode" else self.over_line


@dataclass(slots=True)
class Model:
    """A detector ready to run, and what it cost to build."""

    detector: Detector
    train_s: float = 0.0
    # Where its versions (and its refits) live for the evaluation's lifetime.
    workdir: tempfile.TemporaryDirectory[str] | None = None


class EvaluationReport(BaseModel):
    source: str
    detector: str
    threshold_method: str
    point_mode: PointMode
    devices: int
    points: int
    point: PointMetrics
    events: EventMetrics
    train_s: float
    score_s: float
    config: dict[str, object]
    # Continual learning during the run: candidates kept and discarded.
    refits: dict[str, int] = {}
    # Windows over a device's line that matched its own recent brief excursions: no episode opened (transients.py).
    known_spikes: int = 0
    # What may make the figures misleading, in words (e.g. training rows labelled anomalous).
    warnings: list[str] = []
    # Oracle: the best point-wise F1 over thresholds on the window ratio, chosen on the test labels.
    best_f1: BestF1 | None = None
    # False: no series had labels (figures that need them are n/a; print_report says so).
    labelled: bool = True
    # NAB-style event-window score (standard profile) of episode openings against labelled runs.
    events_score: EventWindowScore | None = None
    # The same with NAB's windows: each labelled run widened so the windows cover 10% of a series' scored points.
    events_score_nab_windows: EventWindowScore | None = None
    # Simulator with benign events: false episodes that opened during one (or within an hour after),
    # per kind; an episode near two kinds counts for each.
    benign_false_episodes: dict[str, int] | None = None


@dataclass(slots=True)
class EvaluateOptions:
    detector: DetectorKind = "lstm"
    point_mode: PointMode = "episode"
    batch_size: int = 256
    detector_config: DetectorConfig = field(default_factory=DetectorConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    # False drops the level envelope check (the model alone, plus the stuck check).
    level_checks: bool = True
    on_progress: OnReadings | None = None
    on_stage: OnStage | None = None


def stream(
    detector: Detector, series: list[LabelledSeries], *, batch_size: int = 256, on_progress: OnReadings | None = None
) -> list[Trace]:
    """Feed every series' readings through ``detector`` in time order; one trace per series.

    Training rows (``train_rows``) are fed too, so the windows are full when the test rows begin, as
    they would be in a live stream, but they are left out of the traces. ``on_progress(done, total)``
    follows each micro-batch (readings fed, training rows included).
    """
    ts_all = np.concatenate([s.ts for s in series])
    owner = np.concatenate([np.full(len(s.ts), i) for i, s in enumerate(series)])
    row = np.concatenate([np.arange(len(s.ts)) for s in series])
    order = np.argsort(ts_all, kind="stable")  # each series is already in time order
    ratio = [np.full(len(s.ts), np.nan, np.float32) for s in series]
    score = [np.full(len(s.ts), np.nan, np.float32) for s in series]
    line = [np.full(len(s.ts), np.nan, np.float32) for s in series]
    episode = [np.full(len(s.ts), "", object) for s in series]
    opened = [np.zeros(len(s.ts), bool) for s in series]
    window_open = [np.full(len(s.ts), -1, np.int8) for s in series]
    index = {s.device_id: i for i, s in enumerate(series)}
    if len(index) != len(series):
        raise ValueError("device ids must be unique across the evaluated series")
    now_ms = int(ts_all.max()) + 1  # the clock at the end of the data: nothing is "in the future"
    untraced = False  # a detector without trace=True (tests' own) says nothing of where episodes opened
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        readings = [
            Reading.model_construct(
                device_id=series[owner[k]].device_id,
                ts=int(ts_all[k]),
                values=dict(zip(series[owner[k]].features, series[owner[k]].values[row[k]].tolist())),
            )
            for k in chunk
        ]
        out = detector.process(readings, now_ms=now_ms)
        if out.refused:
            raise ValueError(f"the detector refused a reading: {out.refused[0].reason}")
        if on_progress is not None:
            on_progress(start + len(chunk), len(order))
        traced = len(out.window_score) == len(out.window_devices)
        untraced = untraced or not traced
        for w, (device, end_ms) in enumerate(zip(out.window_devices, out.window_end_ms)):
            i = index[device]
            at = int(np.searchsorted(series[i].ts, end_ms))
            ratio[i][at] = out.window_ratio[w]
            window_open[i][at] = out.window_open[w]
            if traced:
                score[i][at] = out.window_score[w]
                line[i][at] = out.window_line[w]
                episode[i][at] = out.window_episode[w] or ""
                opened[i][at] = out.window_opened[w]
    traces = []
    for k, (s, r, state) in enumerate(zip(series, ratio, window_open)):
        # A reading without a window of its own (window filling, stride) keeps its device's state.
        has = state >= 0
        last = np.maximum.accumulate(np.where(has, np.arange(len(state)), -1))
        is_open = np.where(last >= 0, state[np.maximum(last, 0)] == 1, False)
        test = slice(s.train_rows, None)
        traces.append(
            Trace(
                s.device_id, s.ts[test], s.labels[test], is_open[test], (np.nan_to_num(r, nan=0.0) > 1.0)[test], r[test],
                score=score[k][test], line=line[k][test], episode=episode[k][test], opened=None if untraced else opened[k][test],
                warmup_ts=s.ts[: s.train_rows], warmup_truth=s.labels[: s.train_rows],
                values=s.values[test], features=tuple(s.features), failures=s.failures,
            )  # fmt: skip
        )
    return traces


# ``anomaly_score`` of a row without a verdict (warm-up, the window still filling): a number, never empty, so a
# scorer that sorts or sweeps thresholds over the column (NAB's optimiser) meets no blank or NaN.
NO_VERDICT = "0.000000"


def write_detections(traces: list[Trace], path: Path) -> int:
    """Per-point rows any benchmark's scoring code can read; returns the number of rows written.

    Columns: timestamp (ISO-8601 UTC), epoch_ms, device, score (the model's window score), line (the
    device's alerting line in score units), ratio (distance to normal: 1.0 = the line; the detector's
    anomaly score), anomaly_score (ratio squashed into [0, 1): ratio / (1 + ratio), 0.5 = the line),
    episode_id, episode_open (1 while an episode is open), opened (1 where an episode opened: a
    detection), label (the ground truth, when the data had one), scored (0 for the rows the model learnt
    on before scoring began, which come first with empty verdicts, so every input row has a row: scorers
    that align by row or skip a probationary share of each file see the file they expect; 1 after). A
    reading without a window of its own (the window still filling, stride) has empty score/line/ratio and
    an anomaly_score of 0.
    """
    import csv

    from stream_app.contracts import iso_ms

    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(
            ["timestamp", "epoch_ms", "device", "score", "line", "ratio", "anomaly_score", "episode_id", "episode_open", "opened", "label", "scored"]
        )
        for t in traces:
            assert t.score is not None and t.line is not None and t.episode is not None and t.opened is not None
            if t.warmup_ts is not None and t.warmup_truth is not None:
                for at, truth in zip(t.warmup_ts.tolist(), t.warmup_truth.tolist()):
                    out.writerow([iso_ms(int(at)), int(at), t.device_id, "", "", "", NO_VERDICT, "", 0, 0, int(truth), 0])
                    rows += 1
            for k in range(len(t.ts)):
                r = float(t.ratio[k])
                has = np.isfinite(t.score[k])
                ratio = min(r, 1e6) if has else None  # a failed check is an infinite distance: capped
                out.writerow([
                    iso_ms(int(t.ts[k])), int(t.ts[k]), t.device_id,
                    f"{t.score[k]:.6g}" if has else "", f"{t.line[k]:.6g}" if has else "",
                    f"{ratio:.6g}" if ratio is not None else "",
                    f"{_anomaly_score(ratio, bool(t.opened[k])):.6f}" if ratio is not None else NO_VERDICT,
                    t.episode[k], int(t.is_open[k]), int(t.opened[k]), int(t.truth[k]), 1,
                ])  # fmt: skip
                rows += 1
    return rows


def _anomaly_score(ratio: float, opened: bool) -> float:
    squashed = ratio / (1.0 + ratio)
    return 0.5 + 0.5 * squashed if opened else min(0.5 * squashed, 0.499999)


def _detector(bundle: ModelBundle, scorer: WindowScorer, options: EvaluateOptions, store: Path | None = None) -> Detector:
    """The worker's detector on ``bundle``, tracing every window; refitting into ``store`` as it goes."""
    if not options.level_checks:
        bundle = bundle.model_copy(update={"thresholds": bundle.thresholds.model_copy(update={"feature_envelope": {}})})
    config = dataclasses.replace(options.detector_config, trace=True)
    hook = None
    if store is not None and config.refit.enabled and bundle.card.detector == "lstm-autoencoder":
        from stream_app.models.store import ModelStore
        from stream_app.training.refit import SyncRefitter

        hook = SyncRefitter(ModelStore(store), options.training, config.refit, max_batch=options.batch_size)
    return Detector(bundle, scorer, config, on_refit=hook)


def build_model(
    train_series: list[np.ndarray], features: list[str], options: EvaluateOptions, *, source: str
) -> Model:
    """Train a model (LSTM autoencoder or IsolationForest) on normal series; in a throwaway store."""
    from stream_app.pipeline.scorer import Scorer

    started = time.perf_counter()
    if options.detector == "iforest":
        from stream_app.training.isolation import train_isolation

        bundle, scorer = train_isolation(train_series, features, options.training, source=source, max_batch=options.batch_size)
        detector = _detector(bundle, scorer, options)
    else:
        from stream_app.models.store import ModelStore
        from stream_app.training.fit import train

        workdir = tempfile.TemporaryDirectory(prefix="floorwatch-eval-")
        bundle = train(train_series, features, ModelStore(Path(workdir.name)), options.training, source=source)
        detector = _detector(bundle, Scorer.from_bundle(bundle, max_batch=options.batch_size), options, store=Path(workdir.name) / "refits")
        return Model(detector, time.perf_counter() - started, workdir)
    return Model(detector, time.perf_counter() - started)


def stored_model(model_dir: Path, version: str | None, options: EvaluateOptions) -> Model:
    from stream_app.models.store import ModelStore
    from stream_app.pipeline.scorer import Scorer

    bundle = ModelStore(model_dir).load(version)
    workdir = tempfile.TemporaryDirectory(prefix="floorwatch-eval-")  # refits stay out of the user's store
    detector = _detector(bundle, Scorer.from_bundle(bundle, max_batch=options.batch_size), options, store=Path(workdir.name))
    return Model(detector, workdir=workdir)


def evaluate_shared(model: Model, series: list[LabelledSeries], options: EvaluateOptions, *, source: str) -> tuple[EvaluationReport, list[Trace]]:
    """One model for every series (a fleet): one detector, all devices' readings interleaved in time."""
    missing = [f for f in model.detector.features if f not in series[0].features]
    if missing:
        raise ValueError(f"the model needs sensor(s) {', '.join(missing)} that the data lacks")
    started = time.perf_counter()
    _stage(options, f"scoring {len(series)} device(s)")
    traces = stream(model.detector, series, batch_size=options.batch_size, on_progress=options.on_progress)
    report = _report(traces, model.detector, options, source, model.train_s, time.perf_counter() - started)
    return report.model_copy(update={"refits": dict(model.detector.refits), "known_spikes": model.detector.known_spikes}), traces


def evaluate_per_series(
    series: list[LabelledSeries], options: EvaluateOptions, *, source: str
) -> tuple[EvaluationReport, list[Trace]]:
    """SKAB's protocol: each series trains its own model on its first ``train_rows`` rows (one config for all)."""
    traces: list[Trace] = []
    train_s = score_s = 0.0
    detector = None
    refits = {"kept": 0, "discarded": 0}
    known_spikes = 0
    notes: list[str] = []
    need = min_training_rows(options.training)
    total, before = sum(len(s.ts) for s in series), 0
    for n, s in enumerate(series, 1):
        # A first model needs ``need`` rows. A series that allows fewer learns on its first ``need`` rows as
        # a cold-started worker would (causally: its rows up to there get no verdict), and one shorter than
        # that gets no verdict at all: one short file must not stop the run.
        learn = max(s.train_rows, need)
        if learn >= len(s.ts):
            notes.append(f"{s.device_id}: {len(s.ts)} rows, too few to learn a model on ({need} needed); no verdicts")
            traces.append(_no_verdicts(s))
            before += len(s.ts)
            continue
        if learn > s.train_rows:
            notes.append(
                f"{s.device_id}: {s.train_rows} training rows are too few for a model; it learnt on its first {learn} "
                f"rows, which get no verdict"
            )
        _stage(options, f"{n}/{len(series)} {s.device_id}: training")
        model = build_model([s.values[:learn]], s.features, options, source=f"{source}: {s.device_id}")
        train_s += model.train_s
        if any(model.detector.bundle.scaler.centred):
            notes.append(f"{s.device_id}: {CENTRED_NOTE}")
        _stage(options, f"{n}/{len(series)} {s.device_id}: scoring")
        started = time.perf_counter()
        (trace,) = stream(model.detector, [s], batch_size=options.batch_size, on_progress=_offset(options.on_progress, before, total))
        traces.append(_without_verdicts(trace, learn - s.train_rows))
        before += len(s.ts)
        score_s += time.perf_counter() - started
        detector = model.detector
        for k, v in detector.refits.items():
            refits[k] += v
        known_spikes += detector.known_spikes
    if detector is None:
        raise ValueError(f"no series has enough rows to learn a model on ({need} needed)")
    report = _report(traces, detector, options, source, train_s, score_s)
    update = {"warnings": [*notes, *training_warnings(series)], "refits": refits, "known_spikes": known_spikes}
    return report.model_copy(update=update), traces


def _without_verdicts(trace: Trace, rows: int) -> Trace:
    """``trace`` with its first ``rows`` test rows' verdicts blanked (the model learnt on them)."""
    if rows <= 0:
        return trace
    head = slice(0, rows)
    trace.is_open[head] = trace.over_line[head] = False
    trace.ratio[head] = np.nan
    for column, blank in ((trace.score, np.nan), (trace.line, np.nan), (trace.episode, ""), (trace.opened, False)):
        if column is not None:
            column[head] = blank
    return trace


def _no_verdicts(s: LabelledSeries) -> Trace:
    """A series too short for any model: every row, none with a verdict."""
    test, n = slice(s.train_rows, None), len(s.ts) - s.train_rows
    return Trace(
        s.device_id, s.ts[test], s.labels[test], np.zeros(n, bool), np.zeros(n, bool), np.full(n, np.nan),
        score=np.full(n, np.nan), line=np.full(n, np.nan), episode=np.full(n, "", object), opened=np.zeros(n, bool),
        warmup_ts=s.ts[: s.train_rows], warmup_truth=s.labels[: s.train_rows],
        values=s.values[test], features=tuple(s.features), failures=s.failures,
    )  # fmt: skip


def _stage(options: EvaluateOptions, what: str) -> None:
    if options.on_stage is not None:
        options.on_stage(what)


def _offset(on_progress: OnReadings | None, before: int, total: int) -> OnReadings | None:
    """One series' progress as a share of the whole run (``before`` readings of ``total`` already fed)."""
    if on_progress is None:
        return None
    report = on_progress
    return lambda done, _: report(before + done, total)


def training_warnings(series: list[LabelledSeries]) -> list[str]:
    """What reading each series repaired, and one line per series whose training rows hold labelled
    anomalies (SKAB's other-2 has 296 of 400)."""
    return [note for s in series for note in s.notes] + [
        f"{s.device_id}: {s.training_anomalies} of its {s.train_rows} training rows are labelled anomalous; "
        "its model learns that behaviour as normal"
        for s in series
        if s.training_anomalies
    ]


def _report(
    traces: list[Trace], detector: Detector, options: EvaluateOptions, source: str, train_s: float, score_s: float
) -> EvaluationReport:
    truth = np.concatenate([t.truth for t in traces])
    predicted = np.concatenate([t.predicted(options.point_mode) for t in traces])
    events = event_metrics(
        [DeviceTrace(device_id=t.device_id, ts=t.ts, truth=t.truth, is_open=t.is_open, opened=t.opened) for t in traces],
        grace=detector.windows.length,
    )
    cfg = options.detector_config
    t = detector.bundle.thresholds
    return EvaluationReport(
        source=source,
        detector=detector.bundle.card.detector,
        threshold_method=t.method,
        point_mode=options.point_mode,
        devices=len(traces),
        points=len(truth),
        point=point_metrics(truth, predicted),
        events=events,
        best_f1=best_f1(truth, np.concatenate([t.ratio for t in traces])),
        events_score=episode_events_score(traces),
        events_score_nab_windows=episode_events_score(traces, window_share=NAB_WINDOW_SHARE),
        train_s=round(train_s, 2),
        score_s=round(score_s, 2),
        config={
            "window": detector.bundle.card.window,
            "units": detector.bundle.card.units,
            "quantile": t.quantile,
            "multiplier": t.multiplier,
            "ewma_alpha": t.ewma_alpha,
            "stride": cfg.stride,
            "max_gap_ms": cfg.max_gap_ms,
            "open_after": cfg.rule.open_after,
            "close_after": cfg.rule.close_after,
            "close_ratio": cfg.rule.close_ratio,
            "close_after_s": cfg.rule.close_after_s,
            "max_duration_s": cfg.rule.max_duration_s,
            "adaptive_lines": cfg.lines.enabled,
            "refit": cfg.refit.enabled,
            "batch_size": options.batch_size,
            "event_grace_samples": detector.windows.length,
        },
    )


NAB_WINDOW_SHARE = 0.1  # NAB's windows span 10% of a file, shared among its anomalies


def episode_events_score(traces: list[Trace], *, window_share: float = 0.0) -> EventWindowScore:
    """The NAB-style score of each device's episode openings (detections) against its labelled runs
    (``window_share`` > 0: widened as NAB widens them, see ``nab.label_windows``)."""
    detections = []
    for t in traces:
        opened = np.zeros(len(t.ts), bool)
        opened[openings(t.is_open, t.opened)] = True
        detections.append((t.ts, opened, t.truth))
    return events_score(detections, window_share=window_share)


def simulated_series(scenario: Scenario, start_ms: int) -> list[LabelledSeries]:
    """A simulated fleet as labelled series: a reading is anomalous while a failure is injected on its device."""
    from producers.scenarios import FEATURES
    from producers.simulator import FleetSimulator

    sim = FleetSimulator(scenario, start_ms)
    stamps, frames = [], []
    for tick_ms, values in sim.ticks():
        stamps.append(tick_ms)
        frames.append(values)
    ts = np.asarray(stamps, np.int64)
    data = np.stack(frames).astype(np.float32)  # (ticks, devices, 4)
    labels = np.zeros((len(ts), scenario.devices), bool)
    kinds: dict[str, list[str]] = {}
    for label in sim.labels():
        labels[(ts >= label.start) & (ts <= label.end), sim.device_ids.index(label.device_id)] = True
        kinds.setdefault(label.device_id, []).append(label.kind + (f" ({label.sensor})" if label.sensor else ""))
    return [
        LabelledSeries(device_id=d, features=list(FEATURES), ts=ts, values=data[:, i, :], labels=labels[:, i],
                       failures=tuple(kinds.get(d, ())))  # fmt: skip
        for i, d in enumerate(sim.device_ids)
    ]


BENIGN_AFTER_MS = 3_600_000  # an episode this soon after a benign step or stretch is blamed on it


def benign_false_episodes(traces: list[Trace], spans: list[BenignSpan], *, grace: int) -> dict[str, int]:
    """False episodes (openings matching no labelled failure, as ``event_metrics`` decides) near benign spans."""
    counts: dict[str, int] = {}
    by_device: dict[str, list[BenignSpan]] = {}
    for span in spans:
        by_device.setdefault(span.device_id, []).append(span)
    for t in traces:
        opened = openings(t.is_open, t.opened)
        _, matched = match_events(opened, runs(t.truth), grace=grace)
        for at in t.ts[opened[~matched]].tolist():
            for kind in {s.kind for s in by_device.get(t.device_id, []) if s.start <= at <= s.end + BENIGN_AFTER_MS}:
                counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


class EvaluateRequest(BaseModel):
    """What ``floorwatch evaluate`` was asked for (the CLI's flags)."""

    source: Literal["simulate", "csv", "skab", "smd"]
    devices: int = 20
    duration_s: float = 3600.0
    failures: int = 4
    kinds: list[str] = []
    seed: int = 7
    scenario: Path | None = None
    csv: list[Path] = []
    label_column: str | None = None  # None: `anomaly` where a file has it, else the file is unlabelled
    time_column: str | None = None
    features: list[str] | None = None
    # Rows of each file a per-file model learns from before scoring; below 1, a share of each file's rows.
    train_rows: float = Field(0, ge=0)
    skab: Path | None = None
    smd: Path | None = None
    machines: list[str] | None = None
    detector: DetectorKind = "lstm"
    point_mode: PointMode = "episode"
    train: bool = False
    model_version: str | None = None
    threshold_method: str = DEFAULT_TRAINING.threshold_method
    quantile: float = DEFAULT_TRAINING.quantile
    multiplier: float = DEFAULT_TRAINING.multiplier
    ewma_alpha: float = DEFAULT_TRAINING.ewma_alpha
    window: int | None = None
    units: int | None = None
    epochs: int | None = None
    level_checks: bool = True
    max_gap_s: float | None = None
    batch_size: int = 256


# Per-file models (SKAB, CSV with --train-rows) learn from a few hundred rows: small and quick.
PER_FILE_TRAINING = dict(window=10, units=8, epochs=20, train_stride=1, validation_share=0.25, jit_compile=False)
SKAB_MAX_GAP_S = 300.0  # SKAB has gaps of up to ~4 minutes inside its recordings
# SMD: each machine's model learns from its ~23,700 unlabelled train rows (16 days a minute apart). The
# worker's model shape; a stride of 4 between training windows keeps it to about a minute a machine.
SMD_TRAINING = dict(window=16, units=16, epochs=15, train_stride=4, validation_share=0.2)
SMD_MAX_GAP_S = 180.0  # one row a minute, no gaps: a window restarts only after 3 missing rows


def run_evaluation(
    settings: Settings, request: EvaluateRequest, *, on_progress: OnReadings | None = None, on_stage: OnStage | None = None
) -> tuple[EvaluationReport, list[Trace]]:
    """Evaluate as ``request`` asks; ``on_progress``/``on_stage`` follow the run (see ``OnReadings``)."""
    from stream_app.worker.start import detector_config

    per_file = request.source == "skab" or (request.source == "csv" and request.train_rows > 0)
    base: dict[str, Any] = dict(PER_FILE_TRAINING) if per_file else dict(SMD_TRAINING) if request.source == "smd" else {}
    for name in ("window", "units", "epochs"):
        if getattr(request, name) is not None:
            base[name] = getattr(request, name)
    training = TrainingConfig(
        **base, quantile=request.quantile, multiplier=request.multiplier, threshold_method=request.threshold_method,
        ewma_alpha=request.ewma_alpha,
    )  # fmt: skip
    gap = request.max_gap_s if request.max_gap_s is not None else _default_gap_s(settings, request)
    dconfig = dataclasses.replace(detector_config(settings.detection, settings.episodes), max_gap_ms=int(gap * 1000))
    options = EvaluateOptions(
        detector=request.detector, point_mode=request.point_mode, batch_size=request.batch_size,
        detector_config=dconfig, training=training, level_checks=request.level_checks, on_progress=on_progress,
        on_stage=on_stage,
    )  # fmt: skip
    if request.source == "skab":
        from stream_app.lab.skab import load_skab

        assert request.skab is not None
        _stage(options, f"reading SKAB files in {request.skab}")
        series = load_skab(request.skab, features=request.features)
        sensors = "" if request.features is None else f", {len(request.features)} of 8 sensors"
        return evaluate_per_series(series, options, source=f"SKAB ({request.skab}{sensors})")
    if request.source == "smd":
        assert request.smd is not None
        return evaluate_smd(request.smd, request.machines, options)
    if request.source == "csv":
        from stream_app.lab.skab import read_labelled_csv

        paths = [f for p in request.csv for f in (csv_files(p) if p.is_dir() else [p])]
        if not paths:
            raise ValueError(f"no CSV files in {', '.join(map(str, request.csv))}")
        series, unread = [], []
        names = device_names(paths)
        for n, p in enumerate(paths, 1):
            _stage(options, f"reading {n}/{len(paths)} {p.name}")
            try:
                series.append(
                    read_labelled_csv(
                        p, label_column=request.label_column or "anomaly", time_column=request.time_column,
                        features=request.features, train_rows=0, labels_optional=request.label_column is None,
                        device_id=names[p],
                    )  # fmt: skip
                )
            except ValueError as exc:
                if len(paths) == 1:
                    raise
                # One unreadable file of a folder must not cost the others their run: it is left out, said.
                unread.append(f"left out: {exc}")
        if not series:
            raise ValueError(f"no readable CSV file: {'; '.join(unread)}")
        for s in series:
            share = request.train_rows < 1
            s.train_rows = int(len(s.ts) * request.train_rows) if share else min(int(request.train_rows), len(s.ts))
        if request.max_gap_s is None:  # any sampling rate
            _follow_sampling(options, series, settings.max_gap_s)
        source = "csv: " + ", ".join(p.name for p in paths)
        if per_file:
            report, traces = evaluate_per_series(series, options, source=source)
        else:
            report, traces = evaluate_shared(_fleet_model(settings, request, options, series[0].features), series, options, source=source)
        report = unlabelled_caveats(report, series)
        return report.model_copy(update={"warnings": [*unread, *report.warnings]}), traces
    scenario = _scenario(request)
    start_ms = 1_795_000_000_000  # a fixed start: the same flags give the same readings and figures
    _stage(options, f"simulating {scenario.devices} devices")
    series = simulated_series(scenario, start_ms)
    if request.max_gap_s is None:  # slow-sampled scenarios (interval_s: 60, 300)
        _follow_sampling(options, series, settings.max_gap_s)
    source = (
        f"simulator: {scenario.devices} devices x {scenario.duration_s:.0f}s, {len(scenario.failures)} failures, seed {scenario.seed}"
    )
    if scenario.benign or scenario.weekend_load:
        source += f", {len(scenario.benign)} benign events" + (", quiet weekends" if scenario.weekend_load else "")
    model = _fleet_model(settings, request, options, series[0].features, rate_hz=scenario.rate_hz)
    report, traces = evaluate_shared(model, series, options, source=source)
    if scenario.benign or scenario.weekend_load:
        from producers.simulator import FleetSimulator

        spans = FleetSimulator(scenario, start_ms).benign_spans()
        blamed = benign_false_episodes(traces, spans, grace=model.detector.windows.length)
        report = report.model_copy(update={"benign_false_episodes": blamed})
    return report, traces


def csv_files(folder: Path) -> list[Path]:
    """A folder's CSV files (plain or ``.gz``); where it has none at its top, those of its subfolders (a
    benchmark's corpus kept by category, e.g. ``realKnownCause/``), never both: results written next to the
    data must not be read back as data."""
    top = sorted([*folder.glob("*.csv"), *folder.glob("*.csv.gz")])
    return top or sorted([*folder.rglob("*.csv"), *folder.rglob("*.csv.gz")])


def device_names(paths: list[Path]) -> dict[Path, str]:
    """Each file's device id: its name without the suffix, or, where two files share one, the folder too."""
    from collections import Counter

    from stream_app.lab.skab import device_id_of

    stems = [device_id_of(p) for p in paths]
    uses = Counter(stems)
    return {p: stem if uses[stem] == 1 else device_id_of(Path(f"{p.parent.name}-{p.name}")) for p, stem in zip(paths, stems)}


def evaluate_smd(root: Path, machines: list[str] | None, options: EvaluateOptions) -> tuple[EvaluationReport, list[Trace]]:
    """SMD's protocol: each machine trains on its whole (unlabelled) train part; its test part is scored."""
    from stream_app.lab.smd import load_smd

    _stage(options, f"reading SMD machines in {root}")
    series = load_smd(root, machines)
    names = "all machines" if machines is None else ", ".join(machines)
    return evaluate_per_series(series, options, source=f"SMD ({root}, {names})")


# A window restarts after this many sampling intervals of silence, at the least (CSV, any rate).
GAP_INTERVALS = 3


def sampling_gap_s(series: list[LabelledSeries], floor_s: float) -> float:
    """Window restart after a silence: ``GAP_INTERVALS`` of the slowest file's median interval, at least ``floor_s``.

    Without it, data a reading every 5 minutes would restart every window under the 60 s default.
    """
    intervals = [float(np.median(np.diff(s.ts))) / 1000 for s in series if len(s.ts) > 1]
    return max([floor_s, *(GAP_INTERVALS * i for i in intervals)])


def _follow_sampling(options: EvaluateOptions, series: list[LabelledSeries], floor_s: float) -> None:
    options.detector_config = dataclasses.replace(options.detector_config, max_gap_ms=int(sampling_gap_s(series, floor_s) * 1000))


def unlabelled_caveats(report: EvaluationReport, series: list[LabelledSeries]) -> EvaluationReport:
    """Mark a report over unlabelled files: the figures that need labels do not apply."""
    unlabelled = [s.device_id for s in series if not s.labelled]
    if not unlabelled:
        return report
    line = (
        f"no labels in {', '.join(unlabelled)}: every point is taken as normal; precision, recall, F1, MAR and "
        "failures detected do not apply, FAR is the share of points flagged and every episode counts as false"
    )
    if len(unlabelled) < len(series):
        return report.model_copy(update={"warnings": [*report.warnings, line]})
    return report.model_copy(
        update={"labelled": False, "best_f1": None, "events_score": None, "events_score_nab_windows": None, "warnings": [*report.warnings, line]}
    )


def _default_gap_s(settings: Settings, request: EvaluateRequest) -> float:
    """Window restart after a silence, when not given: per source."""
    if request.source == "skab":
        return SKAB_MAX_GAP_S
    if request.source == "smd":
        return SMD_MAX_GAP_S
    return float(settings.max_gap_s)


def _scenario(request: EvaluateRequest) -> Scenario:
    from producers.scenarios import FailureKind, Scenario, load_scenario, random_failures

    if request.scenario is not None:
        return load_scenario(request.scenario)
    plan = Scenario(devices=request.devices, duration_s=request.duration_s, seed=request.seed)
    try:
        kinds = [FailureKind(k) for k in request.kinds] or None
    except ValueError as exc:
        raise ValueError(f"{exc}; kinds: {', '.join(k.value for k in FailureKind)}") from exc
    return plan.model_copy(update={"failures": random_failures(plan, request.failures, kinds)})


def _fleet_model(
    settings: Settings, request: EvaluateRequest, options: EvaluateOptions, features: list[str], *, rate_hz: float = 1.0
) -> Model:
    """The stored model, or (``--train`` or IsolationForest) one trained on simulated normal data as `train` does
    (at the simulated fleet's own sampling rate)."""
    if request.detector == "lstm" and not request.train:
        return stored_model(settings.model_dir, request.model_version, options)
    if request.source != "simulate":
        raise ValueError("--train and --detector iforest on CSV need --train-rows N (each file trains on its first N rows)")
    data = dataclasses.replace(DEFAULT_DATA, rate_hz=rate_hz)
    _stage(options, "training a model on simulated normal data")
    return build_model(data.series(), features, options, source=data.source())


def print_report(report: EvaluationReport, console: Console) -> None:
    from rich.markup import escape
    from rich.table import Table

    p, e = report.point, report.events
    table = Table(title=f"Detection quality: {report.source}", show_header=False)
    table.add_column(style="bold")
    table.add_column()

    def delay(med: float | None, mx: float | None, unit: str) -> str:
        return "-" if med is None else f"median {med:g}{unit}, max {mx:g}{unit}"

    def labelled(text: str) -> str:
        return text if report.labelled else "n/a (no labels)"

    b = report.best_f1
    oracle = "-" if b is None else f"{b.f1:.3f} (P {b.precision:.3f}, R {b.recall:.3f}) at {b.threshold:.3g} x the line, chosen on the labels"
    def nab(w: EventWindowScore | None) -> str:
        if w is None or w.score is None:
            return "-"
        return f"{w.score:.1f} (0 = no detections, 100 = perfect; {w.detected} of {w.windows} windows, {w.false_detections} false openings)"

    rows = [
        ("detector", f"{report.detector}, threshold {report.threshold_method}, points = {report.point_mode}"),
        ("devices / scored points", f"{report.devices} / {report.points}"),
        ("point-wise precision", labelled(f"{p.precision:.3f}")),
        ("point-wise recall", labelled(f"{p.recall:.3f}")),
        ("point-wise F1", labelled(f"{p.f1:.3f}")),
        ("FAR = FP/(FP+TN)", f"{p.far:.2%}" if report.labelled else f"{p.far:.2%} of points flagged (no labels)"),
        ("MAR = FN/(FN+TP)", labelled(f"{p.mar:.2%}")),
        ("TP / FP / TN / FN", f"{p.tp} / {p.fp} / {p.tn} / {p.fn}"),
        ("best F1 over lines (oracle)", labelled(oracle)),
        ("event-window score (NAB-style)", labelled(nab(report.events_score))),
        ("the same, NAB's 10% windows", labelled(nab(report.events_score_nab_windows))),
        ("failures detected", labelled(f"{e.detected} of {e.injected}")),
        ("detection delay (samples)", labelled(delay(e.delay_samples_median, e.delay_samples_max, ""))),
        ("detection delay (seconds)", labelled(delay(e.delay_s_median, e.delay_s_max, "s"))),
        ("alert episodes", str(e.episodes)),
        ("refits (kept / discarded)", f"{report.refits.get('kept', 0)} / {report.refits.get('discarded', 0)}"),
        ("known spikes (windows, no episode)", str(report.known_spikes)),
        ("false alert episodes", f"{e.false_episodes} ({e.false_per_device_hour:.3f} per device-hour, {e.normal_device_hours:.1f} normal device-hours)"),
        ("time", f"training {report.train_s:.1f}s, scoring {report.score_s:.1f}s"),
    ]
    if report.benign_false_episodes is not None:
        blamed = ", ".join(f"{k} {n}" for k, n in report.benign_false_episodes.items()) or "none"
        rows.insert(-1, ("false episodes at benign events", f"{blamed} (during one or within an hour after)"))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    for line in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(line)}", highlight=False)
