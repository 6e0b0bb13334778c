"""The raw floor of ``bench.fanout``: a minimal broadcast server on the ``websockets`` package, no protocol, no auth.

Run with the interpreter of its own venv (``make bench`` installs it): ``python websockets_broadcast.py``. It listens
on 127.0.0.1 on a free port and prints ``fanout peer listening on http://127.0.0.1:PORT`` once ready.

- ``ws://…/ws``: a receiving client; what it sends is read and dropped.
- ``ws://…/send``: the sender; every message it sends is written as-is to every ``/ws`` client
  as a text frame, like the emulator's JSON (``websockets.broadcast``: one write per client, no backpressure).
- ``GET /stats``: JSON with the longest GC pause seen (``gc.callbacks``) and the number of clients.

SIGINT or SIGTERM stops it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import time
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.http11 import Request, Response

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


def process_request(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == "/stats":
        stats = {**gc_stats(), "clients": len(CLIENTS)}
        return connection.respond(HTTPStatus.OK, json.dumps(stats) + "\n")
    return None


async def main() -> None:
    gc.callbacks.append(_on_gc)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with serve(handler, "127.0.0.1", 0, process_request=process_request, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"{READY}http://127.0.0.1:{port}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
