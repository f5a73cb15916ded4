"""A device's adaptation state as bytes: what a restarted worker, or the next owner of its partition, takes up.

The detector's per-device learning (its lines, its seasonal hours) lives in memory; kept in Redis
(``worker/adaptation.py``), it saves a restarted worker the warm-up of every device (up to 64 windows
without new episodes: hours on a slow stream) and the days the seasonal lines need. The state is in
units of a model's calibrated line, so it names its ``basis``: the version whose calibration those
units are (a fine-tuned refit keeps its basis, a model trained afresh starts its own). A detector
takes up only a state of its own basis.

Layout: ``FWA1``, the basis (u16 length + UTF-8), then named parts (u8 length + name, u32 length + bytes).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

MAGIC = b"FWA1"
_U16, _U8, _U32 = struct.Struct("<H"), struct.Struct("<B"), struct.Struct("<I")


def pack(basis: str, parts: Mapping[str, bytes]) -> bytes:
    """The state of one device: its ``basis`` and each part's bytes under its name."""
    name = basis.encode()
    out = [MAGIC, _U16.pack(len(name)), name]
    for key, data in parts.items():
        k = key.encode()
        out += [_U8.pack(len(k)), k, _U32.pack(len(data)), data]
    return b"".join(out)


def unpack(blob: bytes) -> tuple[str, dict[str, bytes]]:
    """``pack``'s basis and parts; ValueError for bytes that are not such a state."""
    try:
        if blob[:4] != MAGIC:
            raise ValueError("not an adaptation state")
        (size,) = _U16.unpack_from(blob, 4)
        at = 6 + size
        basis = blob[6:at].decode()
        parts: dict[str, bytes] = {}
        while at < len(blob):
            (size,) = _U8.unpack_from(blob, at)
            key = blob[at + 1 : at + 1 + size].decode()
            at += 1 + size
            (size,) = _U32.unpack_from(blob, at)
            data = blob[at + 4 : at + 4 + size]
            if len(data) != size:
                raise ValueError("truncated adaptation state")
            parts[key] = data
            at += 4 + size
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"not an adaptation state ({exc})") from None
    return basis, parts
