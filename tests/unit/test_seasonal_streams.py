"""producers.seasonal_streams: seeded streams with a daily and weekly shape whose anomalies are days unlike
the same day of other weeks; `evaluate --csv` reads them as they are."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from producers.seasonal_streams import INTERVALS_S, KINDS, main, write_seasonal_streams
from stream_app.lab.skab import read_labelled_csv
from tests.support.generated import assert_seeded


def test_the_same_seed_writes_the_same_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    assert_seeded(write_seasonal_streams, tmp_path, 1)


def test_streams_read_back_with_their_labels_and_anomalies_fall_on_weekdays(tmp_path: Path) -> None:
    main([str(tmp_path), "--files", "12", "--seed", "1"])
    kinds = set()
    for spec in json.loads((tmp_path / "streams.json").read_text())["files"]:
        s = read_labelled_csv(tmp_path / spec["file"], label_column="label")
        assert s.features == ["value"] and len(s.ts) == spec["rows"] and spec["interval_s"] in INTERVALS_S
        assert set(np.diff(s.ts).tolist()) == {spec["interval_s"] * 1000}
        expected = np.zeros(spec["rows"], bool)
        for a in spec["anomalies"]:
            expected[a["start"] : a["end"] + 1] = True
            assert a["start"] >= 0.2 * spec["rows"] and a["kind"] in KINDS
            if a["kind"] in ("quiet_day", "holiday", "missing_rise", "shifted_day"):
                day = int(s.ts[a["start"]] // 86_400_000)
                assert (day + 3) % 7 < 5  # a weekday (1970-01-01 was a Thursday)
            kinds.add(a["kind"])
        assert (s.labels == expected).all()
    assert len(kinds) >= 5
