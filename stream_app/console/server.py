"""``floorwatch console``: the operator's web page, served by aiohttp (already a dependency through
Faust) from static files (no build step) and a small JSON API over what the workers write to Redis.

Loopback by default; bound to another address it needs a token (``--token`` or
FLOORWATCH_CONSOLE_TOKEN), given once as ``?token=`` (kept in a cookie) or as ``Authorization: Bearer``.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis
from aiohttp import web

from stream_app.config.settings import Settings
from stream_app.console.fleet import Fleet, dumps
from stream_app.models.store import ModelStore, ModelStoreError, stored_groups
from stream_app.ops.dead_letter_reader import recent_letters
from stream_app.pipeline.routing import DEFAULT_GROUP
from stream_app.worker.feedback import FeedbackStore
from stream_app.worker.health import read_events, read_figures

STATIC = Path(__file__).parent / "static"
_COOKIE = "floorwatch_console_token"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _json(value: object) -> web.Response:
    return web.Response(body=dumps(value), content_type="application/json")


def _token_middleware(token: str | None):  # type: ignore[no-untyped-def]
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token is None:
            return await handler(request)
        given = request.query.get("token") or request.cookies.get(_COOKIE) or ""
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[7:]
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise web.HTTPUnauthorized(text="a token is needed: open the console's address with ?token=...")
        response = await handler(request)
        if request.query.get("token") and isinstance(response, web.Response):
            response.set_cookie(_COOKIE, token, httponly=True, samesite="Strict")
        return response

    return check


class Console:
    def __init__(self, settings: Settings, *, refresh_s: float = 2.0, offline_after_s: float = 300.0) -> None:
        self.settings = settings
        self.client = aioredis.from_url(settings.redis_url_value(), socket_timeout=5, socket_connect_timeout=3)
        self.fleet = Fleet(self.client, settings.redis_prefix, refresh_s=refresh_s, offline_after_s=offline_after_s)
        self._letters: tuple[float, list] = (-float("inf"), [])
        self._letters_lock = asyncio.Lock()
        self._follow: asyncio.Task | None = None
        self._warm: asyncio.Task | None = None

    def app(self, token: str | None = None) -> web.Application:
        app = web.Application(middlewares=[_token_middleware(token)])
        app.router.add_get("/", self.index)
        app.router.add_get("/api/fleet", self.api_fleet)
        app.router.add_get("/api/alerts", self.api_alerts)
        app.router.add_get("/api/alerts/stream", self.api_alert_stream)
        app.router.add_get("/api/device/{device}", self.api_device)
        app.router.add_get("/api/models", self.api_models)
        app.router.add_get("/api/dead-letters", self.api_dead_letters)
        app.router.add_static("/static", STATIC)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, _: web.Application) -> None:
        try:
            await self.fleet.feed.load()
        except (OSError, aioredis.RedisError):
            pass  # the feed fills once Redis answers
        self._follow = asyncio.create_task(self.fleet.feed.follow())
        self._warm = asyncio.create_task(self._first_snapshot())  # so the first page finds it read

    async def _first_snapshot(self) -> None:
        try:
            await self.fleet.snapshot()
        except (OSError, aioredis.RedisError):
            pass  # read again when a page asks

    async def _stop(self, _: web.Application) -> None:
        for task in (self._follow, self._warm):
            if task is not None:
                task.cancel()
        await self.client.aclose()

    async def index(self, request: web.Request) -> web.StreamResponse:
        response = web.FileResponse(STATIC / "index.html")
        if request.query.get("token"):
            response.set_cookie(_COOKIE, request.query["token"], httponly=True, samesite="Strict")
        return response

    async def api_fleet(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            page = await self.fleet.page(
                page=int(q.get("page", 0)), size=int(q.get("size", 50)), sort=q.get("sort", "state"),
                descending=q.get("dir", "desc") != "asc", state=q.get("state") or None, query=q.get("q", ""),
            )  # fmt: skip
        except ValueError:
            raise web.HTTPBadRequest(text="page and size are numbers")
        return _json(page.model_dump())

    async def api_alerts(self, request: web.Request) -> web.Response:
        count = min(int(request.query.get("count", 50)), 500)
        return _json(list(self.fleet.feed.recent)[:count])

    async def api_alert_stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: each new alert as one ``data:`` line, a comment every 15 s to keep it open."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        queue = self.fleet.feed.subscribe()
        try:
            while True:
                try:
                    view = await asyncio.wait_for(queue.get(), 15.0)
                    await response.write(b"data: " + dumps(view) + b"\n\n")
                except asyncio.TimeoutError:
                    await response.write(b": keep-alive\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.fleet.feed.unsubscribe(queue)
        return response

    async def api_device(self, request: web.Request) -> web.Response:
        return _json(await self.fleet.device(request.match_info["device"]))

    async def api_models(self, request: web.Request) -> web.Response:
        groups = await asyncio.to_thread(_models, self.settings.model_dir)
        names = [g["group"] for g in groups] or [DEFAULT_GROUP]
        try:
            figures = await read_figures(self.client, self.settings.redis_prefix, names)
            events = [e.model_dump(mode="json") for e in await read_events(self.client, self.settings.redis_prefix, 20)]
            precision = {
                v: p.model_dump() | {"precision": p.precision}
                for v, p in (await FeedbackStore(self.client, self.settings.redis_prefix).precision()).items()
            }
        except (OSError, aioredis.RedisError):
            figures, events, precision = {}, [], {}
        return _json({"groups": groups, "figures": figures, "events": events, "precision": precision})

    async def api_dead_letters(self, request: web.Request) -> web.Response:
        # One topic read for every viewer at most every 5 s (a consumer costs the broker a little).
        async with self._letters_lock:
            taken, letters = self._letters
            if time.monotonic() - taken > 5.0:
                try:
                    letters = [v.model_dump() for v in await asyncio.to_thread(recent_letters, self.settings, 50, wait_s=3.0)]
                except Exception as exc:  # the page says the topic is unreadable, and why (type only)
                    return _json({"error": f"dead-letter topic unreadable ({type(exc).__name__})", "letters": []})
                self._letters = (time.monotonic(), letters)
        return _json({"error": None, "letters": letters})


def _models(model_dir: Path) -> list[dict]:
    out = []
    for group in [DEFAULT_GROUP, *stored_groups(model_dir)]:
        try:
            store = ModelStore.for_group(model_dir, group)
            cards = store.cards()
        except (ModelStoreError, ValueError, OSError):
            continue
        current, shadow = store.current(), store.shadow_version()
        versions = []
        for card in cards:
            v = card.validation
            versions.append({
                "version": card.version, "current": card.version == current, "shadow": card.version == shadow,
                "created_at": card.created_at, "detector": card.detector, "features": card.features,
                "window": card.window, "source": card.training.source,
                "validation_p99": v.validation_score_p99, "over_threshold": v.validation_windows_over_threshold,
                "calibration": json.loads(json.dumps(card.calibration, default=str)),
            })  # fmt: skip
        if versions:
            out.append({"group": group, "current": current, "shadow": shadow, "versions": versions})
    return out


async def serve(settings: Settings, host: str, port: int, token: str | None, ready: Callable[[str], None]) -> None:
    runner = web.AppRunner(Console(settings).app(token), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    ready(f"http://{host}:{port}/")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
