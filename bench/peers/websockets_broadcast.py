"""The raw floor of ``bench.fanout``: a minimal broadcast server on the ``websockets`` package, no protocol, no auth.

Run with the interpreter of its own venv (``make bench`` installs it):
``python websockets_broadcast.py [--loop auto|asyncio|uvloop] [--stats PATH]``. It listens on 127.0.0.1 on a free
port and prints ``fanout peer listening on http://127.0.0.1:PORT`` once ready.

- ``ws://…/ws``: a receiving client; what it sends is read and dropped.
- ``ws://…/send``: the sender; every message it sends is written as-is to every ``/ws`` client
  as a text frame, like the emulator's JSON (``websockets.broadcast``: one write per client, no backpressure).

GC figures go to ``--stats PATH`` on SIGUSR1 and at exit (``peer_runtime``). SIGINT or SIGTERM stops it.
"""

from __future__ import annotations

import asyncio
import signal

from peer_runtime import serve_peer  # type: ignore[import-not-found]
from websockets.asyncio.server import ServerConnection, broadcast, serve

READY = "fanout peer listening on "
CLIENTS: set[ServerConnection] = set()


async def handler(connection: ServerConnection) -> None:
    path = connection.request.path if connection.request is not None else ""
    if path == "/send":
        async for message in connection:
            broadcast(CLIENTS, message, text=True)
        return
    CLIENTS.add(connection)
    try:
        async for _ in connection:
            pass
    finally:
        CLIENTS.discard(connection)


async def main() -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"{READY}http://127.0.0.1:{port}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    serve_peer(main, __doc__.splitlines()[0])
