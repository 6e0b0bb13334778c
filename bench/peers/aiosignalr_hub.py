"""The Python SignalR peer of ``bench.fanout``: an ``aiosignalr`` server with a minimal hub that broadcasts.

Run with the interpreter of its own venv (``make bench`` installs ``aiosignalr==0.1.1`` there):
``python aiosignalr_hub.py [--loop auto|asyncio|uvloop] [--stats PATH]``. It listens on 127.0.0.1 on a free port and
prints ``fanout peer listening on http://127.0.0.1:PORT`` once ready.

- ``/hub``: the SignalR endpoint (aiosignalr's own aiohttp front end; a WebSocket without ``id`` skips negotiate).
  aiosignalr writes every message as a binary WebSocket frame, JSON included.
- ``POST /send`` with the body ``N``: ``broadcastMessage("bench", "N")`` to every connection, through the server's
  lifetime manager (``send_all``: serialised once per protocol, as a hub's ``Clients.All`` does); answers 202.

GC figures go to ``--stats PATH`` on SIGUSR1 and at exit (``peer_runtime``). SIGINT or SIGTERM stops it.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web
from aiosignalr.server import Hub, ServerOptions, SignalRServer  # type: ignore[import-not-found]
from peer_runtime import serve_peer  # type: ignore[import-not-found]

READY = "fanout peer listening on "


class BroadcastHub(Hub):  # type: ignore[misc]
    """Clients may also broadcast themselves: ``send(message)`` → ``broadcastMessage("bench", message)`` to all."""

    async def send(self, message: str) -> None:
        await self.clients.all_.send("broadcastMessage", "bench", message)


async def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    server = SignalRServer(BroadcastHub, options=ServerOptions())
    app = server.create_application(path="/hub")

    async def send(request: web.Request) -> web.Response:
        seq = (await request.read()).decode()
        await server.lifetime.send_all("broadcastMessage", ("bench", seq))
        return web.Response(status=202)

    app.router.add_post("/send", send)
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
    serve_peer(main, __doc__.splitlines()[0])
