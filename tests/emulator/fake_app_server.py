"""A fake app server for Default and Classic mode: one aiohttp WebSocket server connection speaking
``signalr.service_protocol`` to the emulator, with bounded waits for what the emulator sends."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from typing import Any, TypeVar

import aiohttp

from signalr.service_protocol import (
    ConnectionData,
    HandshakeRequest,
    HandshakeResponse,
    OpenConnection,
    Ping,
    ServiceMessage,
    ServiceMessageReader,
    encode_many,
)
from signalr.tokens import mint_token

from .conftest import Emulator

M = TypeVar("M", bound=ServiceMessage)
PING_ONLY = b'{"type":6}\x1e'


def server_token(emulator: Emulator, hub: str = "chat", *, key: str | None = None, aud: str | None = None) -> str:
    """A server-connection token as the SDK mints it: ``aud`` = Endpoint (no port) + ``/server/?hub=…``."""
    audience = aud if aud is not None else f"http://127.0.0.1/server/?hub={hub}"
    return mint_token(key or emulator.access_key, audience, claims={"nameid": "server-1"})


def server_url(emulator: Emulator, hub: str | None = "chat") -> str:
    query = f"?hub={hub}&cid={uuid.uuid4()}" if hub is not None else ""
    return f"{emulator.base}/server/{query}"


async def upgrade_status(emulator: Emulator, url: str, headers: dict[str, str]) -> tuple[int, str, Any]:
    """A WebSocket upgrade whose refusal can be read: (status, body, headers)."""
    upgrade_headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        **headers,
    }
    async with emulator.session.get(url, headers=upgrade_headers) as response:
        return response.status, await response.text(), response.headers


class FakeAppServer:
    """One server connection. ``received`` keeps every service message the emulator sent, in order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.reader = ServiceMessageReader()
        self.raw: list[bytes] = []
        self.received: list[ServiceMessage] = []
        self._queue: list[ServiceMessage] = []
        self.connection_id: str | None = None

    @classmethod
    async def connect(
        cls,
        emulator: Emulator,
        hub: str = "chat",
        *,
        handshake: bool = True,
        connection_type: int = 0,
        server_id: str = "server-1",
    ) -> FakeAppServer:
        """Open a server connection and (unless ``handshake`` is False) complete the handshake."""
        ws = await emulator.session.ws_connect(
            server_url(emulator, hub).replace("http", "ws", 1),
            headers={"Authorization": f"Bearer {server_token(emulator, hub)}", "X-ASRS-Server-Id": server_id},
        )
        server = cls(ws)
        if handshake:
            await server.send(HandshakeRequest(version=1, connection_type=connection_type))
            response = await server.expect(HandshakeResponse)
            assert response.error == "" and response.connection_id
            server.connection_id = response.connection_id
        return server

    async def send(self, *messages: ServiceMessage) -> None:
        await self.ws.send_bytes(encode_many(list(messages)))

    async def receive(self, timeout: float = 5) -> ServiceMessage:
        """The next service message, pings included; raises EOFError when the socket closed."""
        async with asyncio.timeout(timeout):
            while not self._queue:
                message = await self.ws.receive()
                if message.type is not aiohttp.WSMsgType.BINARY:
                    raise EOFError(f"server connection ended: {message.type} {message.data!r} {message.extra!r}")
                self.raw.append(message.data)
                self._queue += self.reader.feed(message.data)
        received = self._queue.pop(0)
        self.received.append(received)
        return received

    async def expect(self, kind: type[M], timeout: float = 5) -> M:
        """The next message that is not a keep-alive (a Ping, or a client's hub ping as data), which must be a
        ``kind``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            message = await self.receive(max(0.01, deadline - loop.time()))
            if isinstance(message, kind) and not (kind is ConnectionData and _is_hub_ping(message)):
                return message
            if isinstance(message, Ping) or _is_hub_ping(message):
                continue
            raise AssertionError(f"expected {kind.__name__}, got {message!r}")

    async def closed(self, timeout: float = 5) -> tuple[int | None, str]:
        """Wait until the emulator closes the socket; returns (close code, reason)."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.ws.receive()
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    return self.ws.close_code, str(message.extra or "")
                if message.type is aiohttp.WSMsgType.BINARY:
                    self._queue += self.reader.feed(message.data)

    async def accept(self) -> OpenConnection:
        """Take the next client: its OpenConnection and handshake data, answered with a successful handshake."""
        opened = await self.expect(OpenConnection)
        data = await self.expect(ConnectionData)
        assert data.connection_id == opened.connection_id
        assert data.payload.startswith(b'{"protocol":"json","version":1}\x1e')
        await self.send(ConnectionData(opened.connection_id, b"{}\x1e"))
        return opened

    async def close(self) -> None:
        await self.ws.close()


def _is_hub_ping(message: ServiceMessage) -> bool:
    return isinstance(message, ConnectionData) and message.payload == PING_ONLY
