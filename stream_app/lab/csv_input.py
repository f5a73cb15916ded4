"""CSV recordings read one way: plain or gzipped, the delimiter sniffed by ``csv.Sniffer`` unless given.

``floorwatch evaluate --csv`` (``skab.read_labelled_csv``), ``floorwatch replay`` and ``floorwatch train
--csv`` (``producers.replay.read_recording``) all read their files here.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

DELIMITERS = ",;\t|"


def sniff_delimiter(sample: str) -> str:
    """The CSV delimiter among , ; tab and |, sniffed from a sample; a comma when it cannot tell."""
    lines = sample.splitlines()
    if len(lines) > 2:
        sample = "\n".join(lines[:-1])  # a sample's last line may be cut short
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


def read_table(path: Path, delimiter: str | None = None) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the non-empty rows, each with its line number; ValueError (one line) if unreadable or headerless."""
    try:
        text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    reader = csv.reader(text.splitlines(), delimiter=delimiter or sniff_delimiter(text[:8192]))
    header = next(reader, None)
    if not header:
        raise ValueError(f"{path} has no header row")
    return header, [(line, row) for line, row in enumerate(reader, start=2) if row]
