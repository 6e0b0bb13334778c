"""What the Web PubSub emulator tests share: a raw WebSocket client that records every frame, REST clients of the
official ``azure-messaging-webpubsubservice`` SDK, and bounded waits."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from azure.messaging.webpubsubservice import WebPubSubServiceClient
from azure.messaging.webpubsubservice.aio import WebPubSubServiceClient as AsyncServiceClient

from tests.support.wps_emulator import WebPubSubEmulator

JSON = "json.webpubsub.azure.v1"
RELIABLE = "json.reliable.webpubsub.azure.v1"
WAIT = 5.0


def service(emulator: WebPubSubEmulator, hub: str = "chat") -> WebPubSubServiceClient:
    return WebPubSubServiceClient.from_connection_string(emulator.connection_string, hub=hub)


def async_service(emulator: WebPubSubEmulator, hub: str = "chat") -> AsyncServiceClient:
    return AsyncServiceClient.from_connection_string(emulator.connection_string, hub=hub)


def client_url(emulator: WebPubSubEmulator, hub: str = "chat", **kwargs: Any) -> str:
    """A client access URL minted by the official SDK (``user_id``, ``roles``, ``groups``, ``minutes_to_expire``)."""
    return str(service(emulator, hub).get_client_access_token(**kwargs)["url"])


async def eventually(check: Callable[[], bool], timeout: float = WAIT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        await asyncio.sleep(0.02)


@dataclass
class RawClient:
    """A WebSocket client that speaks the subprotocol by hand and records every frame it gets."""

    session: aiohttp.ClientSession
    ws: aiohttp.ClientWebSocketResponse
    frames: list[aiohttp.WSMessage] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None
    connected: dict[str, Any] = field(default_factory=dict)

    @classmethod
    async def connect(
        cls, url: str, protocol: str | None = JSON, *, wait_connected: bool = True, **kwargs: Any
    ) -> RawClient:
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(url, protocols=(protocol,) if protocol else (), autoping=True, **kwargs)
        except BaseException:
            await session.close()
            raise
        client = cls(session, ws)
        client.reader = asyncio.create_task(client._read())
        if wait_connected and protocol:
            first = await client.next_json()
            assert first["type"] == "system" and first["event"] == "connected", first
            client.connected = first
        return client

    async def _read(self) -> None:
        while True:
            message = await self.ws.receive()
            self.frames.append(message)
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return

    @property
    def connection_id(self) -> str:
        return str(self.connected["connectionId"])

    def data_frames(self) -> list[aiohttp.WSMessage]:
        return [f for f in self.frames if f.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY)]

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(f.data) for f in self.data_frames() if f.type is aiohttp.WSMsgType.TEXT]

    async def next_frame(self, timeout: float = WAIT) -> aiohttp.WSMessage:
        index = len(self.data_frames())
        await eventually(lambda: len(self.data_frames()) > index or self.closed, timeout, "a frame")
        frames = self.data_frames()
        if len(frames) <= index:
            raise AssertionError(f"closed without another frame: {self.frames[-3:]}")
        return frames[index]

    async def next_json(self, timeout: float = WAIT) -> dict[str, Any]:
        frame = await self.next_frame(timeout)
        return dict(json.loads(frame.data))

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = WAIT) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def check() -> bool:
            found[:] = [m for m in self.messages() if predicate(m)]
            return bool(found)

        await eventually(check, timeout, "a matching message")
        return found[0]

    async def ack(self, ack_id: int, timeout: float = WAIT) -> dict[str, Any]:
        return await self.wait_for(lambda m: m.get("type") == "ack" and m.get("ackId") == ack_id, timeout)

    async def send(self, obj: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(obj))

    @property
    def closed(self) -> bool:
        return bool(self.frames) and self.frames[-1].type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.ERROR,
        )

    async def wait_closed(self, timeout: float = WAIT) -> aiohttp.WSMessage:
        await eventually(lambda: self.closed, timeout, "the close")
        return self.frames[-1]

    async def close(self) -> None:
        if not self.ws.closed:
            await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()
        await self.session.close()

    async def drop(self) -> None:
        """Cut the TCP connection without a close frame (a network failure, as the service sees it)."""
        self.ws._writer.transport.abort()  # aiohttp has no public handle on the socket
        if self.reader is not None:
            self.reader.cancel()
        await self.session.close()


class CuttableProxy:
    """A TCP relay on 127.0.0.1 in front of the emulator whose connections can be cut at once, as a network failure
    cuts them (no WebSocket close frame either way). Runs in its own thread, so sync clients can use it too."""

    def __init__(self, target_port: int) -> None:
        import socket
        import threading

        self._target = target_port
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopped = False
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target), timeout=5)
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
                self.accepted += 1
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pipe(source: Any, sink: Any) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass

    def cut(self) -> None:
        """Reset every relayed connection (RST on both sides)."""
        import socket
        import struct

        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)  # wakes the relay threads blocked on it
            except OSError:
                pass
            sock.close()

    def url(self, client_access_url: str) -> str:
        """``client_access_url`` through this relay."""
        from urllib.parse import urlsplit

        parts = urlsplit(client_access_url)
        return parts._replace(netloc=f"127.0.0.1:{self.port}").geturl()

    def close(self) -> None:
        self._stopped = True
        self._listener.close()
        self.cut()
