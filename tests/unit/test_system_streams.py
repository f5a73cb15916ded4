"""producers.system_streams: seeded bursty, heavy-tailed system streams that `evaluate --csv` reads as they are."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from producers.system_streams import ANOMALY_KINDS, INTERVALS_S, KINDS, generate, main, write_system_streams
from stream_app.lab.skab import read_labelled_csv
from tests.support.generated import assert_seeded


def test_the_same_seed_writes_the_same_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    assert_seeded(write_system_streams, tmp_path, 41)


def test_streams_read_back_with_their_labels_rates_and_kinds(tmp_path: Path) -> None:
    main([str(tmp_path), "--files", "12", "--seed", "41"])
    kinds = set()
    for spec in json.loads((tmp_path / "streams.json").read_text())["files"]:
        s = read_labelled_csv(tmp_path / spec["file"], label_column="label")
        assert s.features == ["value"] and len(s.ts) == spec["rows"] and spec["interval_s"] in INTERVALS_S
        assert set(np.diff(s.ts).tolist()) == {spec["interval_s"] * 1000}
        expected = np.zeros(spec["rows"], bool)
        for a in spec["anomalies"]:
            expected[a["start"] : a["end"] + 1] = True
            assert a["start"] >= 0.15 * spec["rows"] and a["kind"] in ANOMALY_KINDS[spec["kind"]]
        assert (s.labels == expected).all()
        kinds.add(spec["kind"])
    assert len(kinds) >= 4


def test_each_kind_has_the_shape_of_its_quantity_and_unlabelled_benign_events() -> None:
    seen = set()
    for index in range(60):
        spec, t, x, labels = generate(index, np.random.default_rng(index))
        seen.add(spec.kind)
        if spec.kind in ("requests", "sparse"):
            assert (x >= 0).all() and (x == np.round(x)).all()  # counts
        if spec.kind == "cpu":
            assert 0 <= x.min() and x.max() <= 100
            normal = x[~labels]
            assert (normal > 70).sum() > 0  # benign spikes to 70-100%, never labelled
        if spec.kind != "heavy":
            assert spec.benign_events > 0
    assert seen == set(KINDS)
