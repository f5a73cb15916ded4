"""The console's fleet rows (pure: no Redis is read): a hash behind its device's last alert takes the
alert's state, and a snapshot past its age is refreshed behind the request, not in front of it."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from stream_app.console.fleet import DeviceRow, Fleet
from stream_app.contracts import iso_ms

NOW_MS = int(time.time() * 1000)


def _fleet() -> Fleet:
    # A client that is never used: _row and snapshot (with _read replaced) do not touch Redis.
    return Fleet(aioredis.Redis(), "t", refresh_s=60.0)


def _fields(state: str, last_ms: int) -> list[bytes | None]:
    # Written just now by the worker's clock: a hash older than offline_after_s would read as offline,
    # and this module may be imported many minutes before its tests run.
    written = iso_ms(int(time.time() * 1000))
    return [state.encode(), b"0.01", b"0.02", iso_ms(last_ms).encode(), written.encode(), b"v0001"]


def _alert(state: str, at_ms: int) -> dict:
    return {"state": state, "severity": "major", "at": iso_ms(at_ms)}


def test_a_hash_behind_the_alert_takes_its_state() -> None:
    fleet = _fleet()
    fleet.feed.last_by_device["d"] = _alert("open", NOW_MS)
    row = fleet._row("d", _fields("normal", NOW_MS - 2_000), time.time())
    assert (row.state, row.severity) == ("anomalous", "major")


def test_a_hash_as_new_as_the_alert_keeps_its_own_state() -> None:
    fleet = _fleet()
    fleet.feed.last_by_device["d"] = _alert("closed", NOW_MS - 5_000)
    assert fleet._row("d", _fields("anomalous", NOW_MS), time.time()).state == "anomalous"
    fleet.feed.last_by_device["d"] = _alert("open", NOW_MS - 5_000)
    assert fleet._row("d", _fields("normal", NOW_MS), time.time()).state == "normal"


def test_offline_is_not_overridden_by_an_alert() -> None:
    fleet = _fleet()
    fleet.feed.last_by_device["d"] = _alert("open", NOW_MS)
    assert fleet._row("d", _fields("offline", NOW_MS - 60_000), time.time()).state == "offline"


def test_a_stale_snapshot_is_served_while_the_next_is_read() -> None:
    fleet = _fleet()
    reads: list[asyncio.Event] = []

    async def read() -> list[DeviceRow]:
        done = asyncio.Event()
        reads.append(done)
        if len(reads) > 1:
            await done.wait()  # a slow second read
        return [DeviceRow(device=f"read-{len(reads)}", state="normal")]

    fleet._read = read  # type: ignore[method-assign]

    async def run() -> None:
        assert [r.device for r in await fleet.snapshot()] == ["read-1"]  # the first call waits for its read
        fleet._taken -= 120.0  # past refresh_s
        assert [r.device for r in await fleet.snapshot()] == ["read-1"]  # served at once, read 2 behind it
        assert [r.device for r in await fleet.snapshot()] == ["read-1"]  # one read at a time
        await asyncio.sleep(0)
        assert len(reads) == 2
        reads[1].set()
        await asyncio.sleep(0.01)
        assert [r.device for r in await fleet.snapshot()] == ["read-2"]

    asyncio.run(run())
