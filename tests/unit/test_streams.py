"""producers.streams: seeded univariate test streams that `evaluate --csv` reads as they are."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from producers.streams import ANOMALY_KINDS, INTERVALS_S, main, write_streams
from stream_app.lab.skab import read_labelled_csv


def test_the_same_seed_writes_the_same_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    write_streams(tmp_path / "a", 4, seed=1)
    write_streams(tmp_path / "b", 4, seed=1)
    write_streams(tmp_path / "c", 4, seed=2)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert len(names) == 5 and "streams.json" in names
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in names)
    assert (tmp_path / "a" / "streams.json").read_bytes() != (tmp_path / "c" / "streams.json").read_bytes()


def test_streams_read_back_with_their_labels_rates_and_kinds(tmp_path: Path, capsys: object) -> None:
    main([str(tmp_path), "--files", "12", "--seed", "1"])
    manifest = json.loads((tmp_path / "streams.json").read_text())["files"]
    kinds, intervals = set(), set()
    for spec in manifest:
        s = read_labelled_csv(tmp_path / spec["file"], label_column="label")
        assert s.features == ["value"] and len(s.ts) == spec["rows"]
        assert set(np.diff(s.ts).tolist()) == {spec["interval_s"] * 1000}
        expected = np.zeros(spec["rows"], bool)
        for a in spec["anomalies"]:
            expected[a["start"] : a["end"] + 1] = True
            assert a["start"] >= 0.15 * spec["rows"]  # after NAB's probationary share
            kinds.add(a["kind"])
        assert (s.labels == expected).all()
        intervals.add(spec["interval_s"])
    assert kinds <= set(ANOMALY_KINDS) and len(kinds) >= 4
    assert intervals <= set(INTERVALS_S) and len(intervals) >= 3


def test_benign_spikes_are_unlabelled_and_leave_the_rest_as_it_was() -> None:
    from producers.streams import generate

    spec, t, x, labels = generate(0, np.random.default_rng(7))
    spiky_spec, spiky_t, spiky_x, spiky_labels = generate(0, np.random.default_rng(7), benign_spikes=0.01)
    assert spec == spiky_spec and (labels == spiky_labels).all() and (t == spiky_t).all()
    moved = np.flatnonzero(np.abs(spiky_x - x) > 3.5 * spec.noise_sd)
    assert 0.004 * spec.rows < len(moved) < 0.02 * spec.rows and not labels[moved].any()


def test_wandering_files_walk_on_top_of_the_same_stream_and_hold_still_where_it_stops() -> None:
    from producers.streams import generate
    from stream_app.training.wander import wandering

    spec, t, x, labels = generate(3, np.random.default_rng(11))
    walking = [generate(3, np.random.default_rng(11), wandering=1.0) for _ in range(2)]
    w_spec, w_t, w_x, w_labels = walking[0]
    assert w_spec == spec.model_copy(update={"wandering": True}) and (w_labels == labels).all() and (w_t == t).all()
    assert (walking[1][2] == w_x).all()  # seeded
    walk = w_x - x
    assert np.abs(walk).max() > 10 * spec.noise_sd  # it goes far from where it started
    warm = w_x[: int(0.15 * spec.rows)]
    assert wandering([warm[:, None]]) == [True] and wandering([x[: int(0.15 * spec.rows)][:, None]]) == [False]
    for a in spec.anomalies:  # a stopped signal stays stopped
        if a.kind == "stopped":
            assert np.ptp(w_x[a.start : a.end + 1]) == 0
    never = generate(3, np.random.default_rng(11), wandering=0.0)
    assert (never[2] == x).all() and not never[0].wandering


def test_rows_probe_shorter_and_longer_files_and_the_default_set_is_unchanged(tmp_path: Path) -> None:
    import pytest

    main([str(tmp_path / "short"), "--files", "6", "--seed", "1", "--rows", "1000:1200"])
    manifest = json.loads((tmp_path / "short" / "streams.json").read_text())
    assert manifest["rows"] == [1000, 1200] and all(1000 <= f["rows"] <= 1200 for f in manifest["files"])
    write_streams(tmp_path / "a", 2, seed=1)
    main([str(tmp_path / "b"), "--files", "2", "--seed", "1", "--rows", "2000:8000"])
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in names)
    for bad in ("10:20", "900", "3000:2000"):
        with pytest.raises(SystemExit):
            main([str(tmp_path / "c"), "--rows", bad])


def test_dropped_readings_leave_irregular_times_and_labels_where_their_readings_are(tmp_path: Path) -> None:
    from producers.streams import generate

    spec, t, x, labels = generate(2, np.random.default_rng(5))
    main([str(tmp_path), "--files", "8", "--seed", "3", "--drop", "0.25"])
    manifest = json.loads((tmp_path / "streams.json").read_text())
    assert manifest["drop"] == 0.25
    for f in manifest["files"]:
        s = read_labelled_csv(tmp_path / f["file"], label_column="label")
        steps = np.diff(s.ts) // (f["interval_s"] * 1000)
        assert len(s.ts) == f["rows"] and len(set(steps.tolist())) > 2 and steps.max() >= 5  # lost readings, outages
        expected = np.zeros(f["rows"], bool)
        for a in f["anomalies"]:
            expected[a["start"] : a["end"] + 1] = True
        assert (s.labels == expected).all()
    thin, tt, tx, tl = generate(2, np.random.default_rng(5), drop=0.25)
    assert set(tt.tolist()) <= set(t.tolist()) and 0.6 * spec.rows < thin.rows < 0.8 * spec.rows
    assert np.isin(tx, x).all() and tl.sum() <= labels.sum()
