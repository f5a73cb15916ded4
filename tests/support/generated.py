"""Checks shared by the tests of the stand-in stream generators (producers/*_streams.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def assert_seeded(write: Callable[[Path, int, int], Any], folder: Path, seed: int) -> None:
    """``write(out, files, seed)`` writes the same bytes for the same seed and another manifest for another."""
    for name, s in (("a", seed), ("b", seed), ("c", seed + 1)):
        write(folder / name, 3, s)
    names = sorted(p.name for p in (folder / "a").iterdir())
    assert len(names) == 4 and "streams.json" in names
    assert all((folder / "a" / n).read_bytes() == (folder / "b" / n).read_bytes() for n in names)
    assert (folder / "a" / "streams.json").read_bytes() != (folder / "c" / "streams.json").read_bytes()
