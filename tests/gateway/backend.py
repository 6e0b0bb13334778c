"""A small SignalR-shaped backend for the gateway tests (not the emulator).

It serves the service's client endpoints just enough to observe what a gateway forwards:

- ``POST /client/negotiate[/]`` and ``OPTIONS`` on any path: JSON describing the request as received
  (path, raw query, Host, headers) — negotiate and CORS preflights.
- ``GET /client/`` with ``Accept: text/event-stream``: an SSE stream, ``:\\r\\n`` then a small
  ``data:`` event every 200 ms (``?events=N`` stops after N events; ``?flood=1`` writes 64 KiB
  events until one write is blocked for 0.5 s, then resets the connection).
- ``GET /client/`` otherwise: a LongPolling-like poll answering a short JSON description
  (``?hold=S`` waits S seconds before the headers; ``?status=N`` answers N with a plain body).
- ``POST /client/``: echoes the body and describes the request; ``DELETE /client/``: 202.
- ``GET /client/`` with ``Upgrade: websocket``: an echo socket; the text ``close:<code>:<reason>``
  makes it close with that code; ``big:<n>`` makes it send one binary message of n bytes; ``flood``
  makes it send 256 KiB messages until one send is blocked for 0.5 s (the reader stalled), then
  reset the connection (each reset counted in ``/stats``); ``?refuse=404`` refuses the handshake like SignalR
  (``No Connection with that ID``); the first message it sends is a JSON description of the handshake.
- ``GET /stats`` (direct only): how many SSE streams are open right now, and the close code and
  reason of the last WebSocket a client closed.

Run: ``python -m tests.gateway.backend [--port 0]``; prints ``BACKEND listening on http://127.0.0.1:<port>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import struct
from typing import Any

from aiohttp import WSMsgType, web

STATS = web.AppKey("stats", dict)


def describe(request: web.Request, body: bytes = b"") -> dict[str, Any]:
    headers: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        headers.setdefault(name.lower(), []).append(value)
    return {
        "method": request.method,
        "path": request.rel_url.raw_path,
        "query": request.rel_url.raw_query_string,
        "host": request.headers.get("Host"),
        "headers": headers,
        "body": body.decode(errors="replace"),
    }


def _json(request: web.Request, data: dict[str, Any], status: int = 200) -> web.Response:
    response = web.json_response(data, status=status)
    response.headers["X-Backend"] = "test-backend"
    response.headers.add("Set-Cookie", "a=1; Path=/")
    response.headers.add("Set-Cookie", "b=2; Path=/")
    return response


async def negotiate(request: web.Request) -> web.Response:
    return _json(request, {"negotiate": True, **describe(request, await request.read())})


async def preflight(request: web.Request) -> web.Response:
    response = _json(request, {"preflight": True, **describe(request)})
    response.headers["Access-Control-Allow-Origin"] = request.headers.get("Origin", "*")
    response.headers["Access-Control-Allow-Credentials"] = "true"
    return response


def reset(request: web.Request) -> None:
    """Drop the connection with a TCP reset, as a service does with a client it gave up on."""
    transport = request.transport
    assert transport is not None
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    request.app[STATS]["resets"] += 1


async def flood(request: web.Request, send: Any, chunk: int) -> None:
    """Send until the reader stalls (one send blocked for 0.5 s; at most 4096 sends), then reset."""
    for _ in range(4096):
        try:
            async with asyncio.timeout(0.5):
                await send(b"x" * chunk)
        except TimeoutError:
            break
    reset(request)


async def sse(request: web.Request) -> web.StreamResponse:
    events = int(request.query.get("events", "1000000"))
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache,no-store",
            "Pragma": "no-cache",
            "Content-Encoding": "identity",
        }
    )
    await response.prepare(request)
    stats = request.app[STATS]
    stats["open_sse"] += 1
    try:
        await response.write(b":\r\n")
        if request.query.get("flood"):
            await flood(request, lambda data: response.write(b"data: " + data + b"\r\n\r\n"), 65536)
            return response
        for n in range(events):
            await asyncio.sleep(0.2)
            await response.write(f"data: event {n}\r\n\r\n".encode())
        await response.write_eof()
    finally:
        stats["open_sse"] -= 1
    return response


async def websocket(request: web.Request) -> web.StreamResponse:
    refuse = request.query.get("refuse")
    if refuse:
        return web.Response(status=int(refuse), text="No Connection with that ID")
    ws = web.WebSocketResponse(protocols=("chat.v1",), max_msg_size=0)
    await ws.prepare(request)
    await ws.send_str(json.dumps({"handshake": describe(request), "protocol": ws.ws_protocol}))
    stats = request.app[STATS]
    while True:
        msg = await ws.receive()
        if msg.type is WSMsgType.TEXT:
            if msg.data.startswith("big:"):
                await ws.send_bytes(b"b" * int(msg.data[4:]))
                continue
            if msg.data == "flood":
                await flood(request, ws.send_bytes, 262144)
                break
            if msg.data.startswith("close:"):
                _, code, reason = msg.data.split(":", 2)
                await ws.close(code=int(code), message=reason.encode())
                break
            await ws.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
        elif msg.type is WSMsgType.CLOSE:
            stats["last_client_close"] = [msg.data, msg.extra]
            break
        elif msg.type in (WSMsgType.CLOSED, WSMsgType.CLOSING, WSMsgType.ERROR):
            stats["last_client_close"] = [None, "connection lost"]
            break
    return ws


async def connect_get(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await websocket(request)
    if "text/event-stream" in request.headers.get("Accept", ""):
        return await sse(request)
    hold = float(request.query.get("hold", "0"))
    if hold:
        await asyncio.sleep(hold)
    status = request.query.get("status")
    if status:
        return web.Response(status=int(status), text="No Connection with that ID")
    return _json(request, {"poll": True, **describe(request)})


async def connect_post(request: web.Request) -> web.Response:
    return _json(request, {"send": True, **describe(request, await request.read())})


async def connect_delete(request: web.Request) -> web.Response:
    return web.Response(status=202, text="")


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATS])


def make_app() -> web.Application:
    app = web.Application()
    app[STATS] = {"open_sse": 0, "last_client_close": None, "resets": 0}
    for path in ("/client/negotiate", "/client/negotiate/"):
        app.router.add_post(path, negotiate)
    for path in ("/client/", "/client"):
        app.router.add_get(path, connect_get, allow_head=False)
        app.router.add_post(path, connect_post)
        app.router.add_delete(path, connect_delete)
    app.router.add_route("OPTIONS", "/{tail:.*}", preflight)
    app.router.add_get("/stats", stats)
    return app


async def serve(port: int) -> None:
    runner = web.AppRunner(make_app(), access_log=None, handler_cancellation=True, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"BACKEND listening on http://127.0.0.1:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
