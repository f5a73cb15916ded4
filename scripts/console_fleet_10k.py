"""The console's fleet page with 10,000 device hashes on a real redis-server: `python scripts/console_fleet_10k.py`."""
import asyncio, time, tempfile
from pathlib import Path
import redis.asyncio as aioredis
from stream_app.lab.embedded import EmbeddedServices, free_port
from stream_app.console.fleet import Fleet

async def main(url):
    c = aioredis.from_url(url)
    pipe = c.pipeline(transaction=False)
    for d in range(10_000):
        pipe.hset(f"big:device:press-{d:05d}", mapping={"state": "anomalous" if d % 97 == 0 else "normal", "last_score": "0.0123",
                  "line": "0.0234", "last_reading_ts": "2026-11-26T10:00:00.000Z", "updated_at": "2026-11-26T10:00:00.000Z", "model_version": "v0001"})
    await pipe.execute()
    f = Fleet(c, "big", refresh_s=0)
    for q in ["", "press-09"]:
        t = time.perf_counter(); page = await f.page(query=q); dt = time.perf_counter() - t
        print(f"10,000 devices, query {q!r}: {page.total} matched, {len(page.rows)} rows, {dt*1000:.0f} ms (a fresh snapshot)")
    f.refresh_s = 2
    await f.snapshot()
    t = time.perf_counter(); await f.page(sort="device"); print(f"cached snapshot, sorted by device: {(time.perf_counter()-t)*1000:.0f} ms")
    await c.aclose()

with tempfile.TemporaryDirectory() as tmp:
    s = EmbeddedServices(Path(tmp), kafka_port=free_port(), redis_port=free_port()); st = s.start()
    try: asyncio.run(main(st.redis_url))
    finally: s.stop()
