"""Asset groups: which model scores which device, chosen by device-id pattern.

``FLOORWATCH_ASSET_GROUPS`` lists groups as ``name=glob[,glob...]`` separated by ``;``, e.g.
``pumps=pump-*,valve-*; presses=press-*``. Patterns are shell globs (``fnmatch``, case-sensitive).
A device belongs to the first group with a matching pattern; a device matching none belongs to
``default``, the model at the root of the model store.

This module imports nothing heavy: settings validation uses it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import translate

from stream_app.models.store import DEFAULT_GROUP, check_group_name

# Device ids seen are remembered; a flood of distinct ids (a misbehaving gateway) clears the
# cache instead of growing it without bound.
_CACHE_LIMIT = 1_000_000


@dataclass(frozen=True, slots=True)
class AssetGroup:
    name: str
    patterns: tuple[str, ...]


def parse_asset_groups(spec: str) -> tuple[AssetGroup, ...]:
    """Parse ``name=glob[,glob...]; ...``; an empty spec means no groups. ValueError says what is wrong."""
    groups: list[AssetGroup] = []
    for part in (p.strip() for p in spec.split(";")):
        if not part:
            continue
        name, sep, globs = part.partition("=")
        if not sep:
            raise ValueError(f"asset group {part!r}: expected name=pattern[,pattern...]")
        name = check_group_name(name.strip())
        patterns = tuple(g.strip() for g in globs.split(",") if g.strip())
        if not patterns:
            raise ValueError(f"asset group {name!r} has no device-id pattern")
        if any(g.name == name for g in groups):
            raise ValueError(f"asset group {name!r} is defined twice")
        groups.append(AssetGroup(name, patterns))
    return tuple(groups)


class GroupRouter:
    """Maps device ids to asset group names, first matching group wins; cached per device id."""

    def __init__(self, groups: Sequence[AssetGroup]) -> None:
        self.groups = tuple(groups)
        self._matchers = [(g.name, _compile(g.patterns)) for g in self.groups]
        self._cache: dict[str, str] = {}

    def group_of(self, device_id: str) -> str:
        group = self._cache.get(device_id)
        if group is None:
            group = next((name for name, pattern in self._matchers if pattern.match(device_id)), DEFAULT_GROUP)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[device_id] = group
        return group


def _compile(patterns: tuple[str, ...]) -> re.Pattern[str]:
    # One regex per group: fnmatch.translate anchors each glob at both ends.
    return re.compile("|".join(f"(?:{translate(p)})" for p in patterns))
