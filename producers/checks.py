"""What a producer command checks before it publishes: that the worker would take its readings.

``simulate`` and ``replay`` used to report "published N readings" while the worker dead-lettered
them (an invalid device id, sensors the model lacks, timestamps in the future). These checks run on
the messages as they will be sent, with the worker's own decoder and limits, and raise one line.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from stream_app.errors import FloorwatchError
from stream_app.pipeline.decode import decode
from stream_app.models.store import ModelStore, ModelStoreError
from stream_app.pipeline.routing import GroupRouter
from stream_app.config.settings import Settings


class RefusedReadings(FloorwatchError, ValueError):
    """Readings the worker would refuse; the message says which and why, on one line."""


def check_message(payload: bytes, where: str) -> None:
    """The worker's decoder must take every reading of ``payload``."""
    decoded = decode(payload)
    if decoded.rejections:
        raise RefusedReadings(f"{where}: the worker would refuse it: {decoded.rejections[0].reason}")


def check_not_future(settings: Settings, ts_ms: int, where: str, *, now_ms: int | None = None) -> None:
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if ts_ms > now_ms + settings.max_future_s * 1000:
        raise RefusedReadings(
            f"{where}: timestamp is more than {settings.max_future_s:.0f} s in the future; the worker would refuse it"
        )


def check_sensors(settings: Settings, device_ids: Iterable[str], sensors: Sequence[str], source: str) -> None:
    """The model that will score each device must find its features among ``sensors``.

    Without a stored model there is nothing to check against (the worker would not start either)."""
    router = GroupRouter(settings.asset_group_list())
    for group in dict.fromkeys(router.group_of(d) for d in device_ids):
        try:
            bundle = ModelStore.for_group(settings.model_dir, group).load()
        except ModelStoreError:
            continue
        missing = [f for f in bundle.card.features if f not in sensors]
        if missing:
            raise RefusedReadings(
                f"{source} lacks sensor(s) {', '.join(missing)} that model {bundle.version} ({group}) needs: "
                f"the worker would refuse every reading (it has: {', '.join(sensors) or 'none'})"
            )
