"""A stand-in for Azure SignalR's data-plane REST API that records what the app server sends.

Azure itself cannot run here, and the emulator answers 202 to anything; this recorder checks what Azure checks
(``docs/protocol.md`` §6.1): the bearer token's HS256 signature under the AccessKey, ``exp``, and an ``aud`` that
names the request URL. It runs an aiohttp server on 127.0.0.1 in a background thread, so sync and async tests (and
a ``chat-server`` process pointed at it) can all use it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from typing import Any

import jwt
from aiohttp import web

from signalr.tokens import TokenError, rest_audience_matches, verify_token


@dataclass(frozen=True)
class RecordedSend:
    """One REST request as the service saw it."""

    method: str
    path: str
    query: str
    body: Any
    audience: str
    token_error: str | None
    token: str


class RestRecorder:
    """Start with :meth:`start`, stop with :meth:`stop`; ``status`` is what successful sends are answered with."""

    def __init__(self, access_key: str, port: int = 0) -> None:
        self.access_key = access_key
        self._wanted_port = port
        self.status = 202
        self.delay = 0.0
        self.port = 0
        self._sends: list[RecordedSend] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rest-recorder", daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def sends(self) -> list[RecordedSend]:
        with self._lock:
            return list(self._sends)

    def clear(self) -> None:
        with self._lock:
            self._sends.clear()
        self.status = 202
        self.delay = 0.0

    def start(self) -> RestRecorder:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def connection_string(self, **extra: str) -> str:
        parts = {"Endpoint": "http://127.0.0.1", "Port": str(self.port), "AccessKey": self.access_key, "Version": "1.0"}
        parts.update(extra)
        return "".join(f"{k}={v};" for k, v in parts.items())

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._wanted_port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else ""
        url = str(request.url)
        error: str | None = None
        try:
            verify_token(token, self.access_key, lambda aud: rest_audience_matches(url, aud))
        except TokenError as exc:
            error = str(exc)
        try:
            audience = str(jwt.decode(token, options={"verify_signature": False}).get("aud", ""))
        except jwt.PyJWTError:
            audience = ""
        send = RecordedSend(
            request.method, request.rel_url.raw_path, request.rel_url.raw_query_string, body, audience, error, token
        )
        with self._lock:
            self._sends.append(send)
        if error is not None:
            return web.json_response({"code": "Unauthorized", "message": error}, status=401)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status >= 400:
            return web.json_response(
                {"code": "Error", "message": f"recorder answers {self.status}"}, status=self.status
            )
        return web.Response(status=self.status)
