"""The Python SignalR peer of ``bench.fanout``: an ``aiosignalr`` server with a minimal hub that broadcasts.

Run with the interpreter of its own venv (``make bench`` installs ``aiosignalr==0.1.1`` there):
``python aiosignalr_hub.py``. It listens on 127.0.0.1 on a free port and prints
``fanout peer listening on http://127.0.0.1:PORT`` once ready.

- ``/hub``: the SignalR endpoint (aiosignalr's own aiohttp front end; a WebSocket without ``id`` skips negotiate).
  aiosignalr writes every message as a binary WebSocket frame, JSON included.
- ``POST /send`` with the body ``N``: ``broadcastMessage("bench", "N")`` to every connection, through the server's
  lifetime manager (``send_all``: serialised once per protocol, as a hub's ``Clients.All`` does); answers 202.
- ``GET /stats``: JSON with the longest GC pause seen (``gc.callbacks``) and the number of connections.

SIGINT or SIGTERM stops it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time

from aiohttp import web
from aiosignalr.server import Hub, ServerOptions, SignalRServer  # type: ignore[import-not-found]

READY = "fanout peer listening on "


# --- the longest GC pause, from gc.callbacks ---------------------------------------------------------------------

_gc: dict[str, float] = {"started": 0.0, "max_ms": 0.0, "total_ms": 0.0, "collections": 0.0}


def _on_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc["started"] = time.perf_counter()
        return
    pause = (time.perf_counter() - _gc["started"]) * 1000.0
    _gc["collections"] += 1
    _gc["total_ms"] += pause
    _gc["max_ms"] = max(_gc["max_ms"], pause)


def gc_stats() -> dict[str, float]:
    """The longest pause (ms), total pause time and collections since start, and the objects the GC tracks now."""
    return {
        "max_ms": _gc["max_ms"],
        "total_ms": _gc["total_ms"],
        "collections": _gc["collections"],
        "tracked": float(len(gc.get_objects())),
    }


class BroadcastHub(Hub):  # type: ignore[misc]
    """Clients may also broadcast themselves: ``send(message)`` → ``broadcastMessage("bench", message)`` to all."""

    async def send(self, message: str) -> None:
        await self.clients.all_.send("broadcastMessage", "bench", message)


async def main() -> None:
    gc.callbacks.append(_on_gc)
    logging.basicConfig(level=logging.WARNING)
    server = SignalRServer(BroadcastHub, options=ServerOptions())
    app = server.create_application(path="/hub")

    async def send(request: web.Request) -> web.Response:
        seq = (await request.read()).decode()
        await server.lifetime.send_all("broadcastMessage", ("bench", seq))
        return web.Response(status=202)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({**gc_stats(), "clients": len(server.lifetime.connections)})

    app.router.add_post("/send", send)
    app.router.add_get("/stats", stats)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(f"{READY}http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
