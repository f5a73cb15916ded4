"""Redis memory of the console's score history (worker/history.py) for a fleet, measured on a
real redis-server: ``python scripts/history_memory.py --devices 10000``.

Writes ``points`` full points per device through ScoreHistory (the worker's own encoding, four
sensors) and reports MEMORY USAGE summed over the history lists.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import redis.asyncio as aioredis

from stream_app.lab.embedded import EmbeddedServices, free_port
from stream_app.pipeline.detector import DeviceStatus
from stream_app.worker.history import ScoreHistory


async def measure(url: str, devices: int, points: int) -> int:
    client = aioredis.from_url(url)
    history = ScoreHistory("mem", step_s=60, points=points)
    start = 1_795_000_000_000
    values = {"temperature": 0.0612345, "vibration": 0.0751234, "motor_rpm": 0.0451234, "motor_amps": 0.0841234}
    for step in range(points):
        pipe = client.pipeline(transaction=False)
        for d in range(devices):
            status = DeviceStatus(f"press-{d:05d}", start + step * 60_000, "normal", 0.0123456, 0.0234567, 0.526, values)
            history.add(pipe, status, "v1")
        await pipe.execute()
    total = 0
    for d in range(devices):
        total += await client.memory_usage(history.key(f"press-{d:05d}")) or 0
    await client.aclose()
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=180)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        services = EmbeddedServices(Path(tmp), kafka_port=free_port(), redis_port=free_port())
        state = services.start()
        try:
            total = asyncio.run(measure(state.redis_url, args.devices, args.points))
        finally:
            services.stop()
    print(f"{args.devices} devices x {args.points} points: {total / 1e6:.1f} MB of history "
          f"({total / args.devices / 1e3:.1f} KB a device, {total / args.devices / args.points:.0f} B a point)")


if __name__ == "__main__":
    main()
