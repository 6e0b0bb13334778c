"""The floor of ``bench.negotiate``: a bare aiohttp + PyJWT negotiate handler, no SignalR service behind it.

Run with the product venv's interpreter (aiohttp and PyJWT are dependencies of the product):
``python negotiate_pyjwt.py --access-key KEY --audience-base http://127.0.0.1/ [--loop asyncio|uvloop]``. It listens
on 127.0.0.1 on a free port and prints ``negotiate peer listening on http://127.0.0.1:PORT`` once ready.

``POST /client/negotiate?hub=…`` does the work every negotiate needs and nothing else: the bearer token of the
``Authorization`` header verified with PyJWT (HS256 with the AccessKey's UTF-8 bytes, ``exp``, and ``aud`` equal to
``{audience base}client/?hub={hub}``), a connection id and a connection token from ``secrets``, and the negotiate answer
(version 1, the three transports) made with ``json.dumps``. A missing or refused token is answered 401. No access log.

SIGINT or SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import signal

import jwt
from aiohttp import web

READY = "negotiate peer listening on "

TRANSPORTS = [
    {"transport": "WebSockets", "transferFormats": ["Text", "Binary"]},
    {"transport": "ServerSentEvents", "transferFormats": ["Text"]},
    {"transport": "LongPolling", "transferFormats": ["Text", "Binary"]},
]


def negotiate_app(access_key: str, audience_base: str) -> web.Application:
    key = access_key.encode("utf-8")

    async def negotiate(request: web.Request) -> web.Response:
        hub = request.query.get("hub", "")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return web.Response(status=401)
        try:
            jwt.decode(token, key, algorithms=["HS256"], audience=f"{audience_base}client/?hub={hub}")
        except jwt.PyJWTError:
            return web.Response(status=401)
        body = {
            "negotiateVersion": 1,
            "connectionId": secrets.token_urlsafe(16),
            "connectionToken": secrets.token_urlsafe(16),
            "availableTransports": TRANSPORTS,
        }
        return web.Response(body=json.dumps(body, separators=(",", ":")).encode(), content_type="application/json")

    app = web.Application()
    app.router.add_post("/client/negotiate", negotiate)
    return app


async def serve(access_key: str, audience_base: str) -> None:
    runner = web.AppRunner(negotiate_app(access_key, audience_base), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        print(f"{READY}http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--access-key", required=True, help="the AccessKey tokens are signed with")
    parser.add_argument("--audience-base", required=True, help="scheme://host/ of the token audiences")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio", help="event loop (default asyncio)")
    args = parser.parse_args()
    factory = None
    if args.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(args.access_key, args.audience_base))


if __name__ == "__main__":
    main()
