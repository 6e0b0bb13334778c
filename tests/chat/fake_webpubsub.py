"""An in-memory stand-in for ``webpubsub.client.WebPubSubClient`` and the Web PubSub chat behind it, for UI tests.

:class:`FakeWebPubSub` plays the service and the app server's event handler (contract: ``broadcastMessage`` →
a server message ``{"name", "message", "target"}`` to every connection, ``echo`` → to the caller only with
`` (echo from server)`` appended). Its :meth:`FakeWebPubSub.factory` is a ``client_factory`` for
``chat.webpubsub_connection.WebPubSubConnection``. Deliveries are scheduled on the event loop, never inline. The
end-to-end tests use the real client against real processes instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from signalr.client import TraceEvent
from webpubsub.subprotocol import Connected, DataType, Disconnected, ServerMessage


class FakeSendError(Exception):
    """A failed ack: ``name`` as the service names it (``BadRequest``, ``Forbidden``…)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


class FakeWebPubSub:
    """The shared service of the fake clients; records every event sent and can be told to fail."""

    def __init__(self) -> None:
        self.clients: list[FakeWebPubSubClient] = []
        self.created: list[FakeWebPubSubClient] = []
        self.events: list[tuple[str, Any, DataType, bool]] = []
        self.start_error: Exception | None = None
        self.ack_error: FakeSendError | None = None
        self.urls: list[str] = []
        self._ids = itertools.count(1)

    def factory(
        self,
        url: str | Callable[[], Awaitable[str]],
        *,
        protocol: str,
        headers: Mapping[str, str] | None,
        trace: Callable[[TraceEvent], None] | None,
    ) -> FakeWebPubSubClient:
        client = FakeWebPubSubClient(self, url, protocol=protocol, headers=headers, trace=trace)
        self.created.append(client)
        return client

    def next_id(self) -> str:
        return f"wps-{next(self._ids)}"

    def deliver(self, sender: FakeWebPubSubClient, event: str, data: Any) -> None:
        if not isinstance(data, dict):
            return
        if event == "broadcastMessage":
            self.push({"name": data["name"], "message": data["message"], "target": "broadcastMessage"})
        elif event == "echo":
            echoed = {"name": data["name"], "message": f"{data['message']} (echo from server)", "target": "echo"}
            sender.receive(ServerMessage(DataType.JSON, echoed))

    def push(self, data: Any, data_type: DataType = DataType.JSON) -> None:
        """The app server sends ``data`` to every connection."""
        for client in list(self.clients):
            client.receive(ServerMessage(data_type, data))


class FakeWebPubSubClient:
    """Same constructor and callbacks as our ``WebPubSubClient`` (contract §6)."""

    def __init__(
        self,
        service: FakeWebPubSub,
        url: str | Callable[[], Awaitable[str]],
        *,
        protocol: str,
        headers: Mapping[str, str] | None,
        trace: Callable[[TraceEvent], None] | None,
    ) -> None:
        self.service = service
        self.url = url
        self.protocol = protocol
        self.headers = dict(headers or {})
        self._trace = trace
        self.connection_id: str | None = None
        self.connected_url = ""
        self.is_connected = False
        self.stopped = False
        self.on_connected: Callable[[Connected], Any] | None = None
        self.on_disconnected: Callable[[Disconnected | None], Any] | None = None
        self.on_server_message: Callable[[ServerMessage], Any] | None = None
        self.on_stopped: Callable[[BaseException | None], Any] | None = None

    async def _next_url(self) -> str:
        url = self.url if isinstance(self.url, str) else await self.url()
        self.service.urls.append(url)
        return url

    def _emit(self, kind: str, url: str, detail: str) -> None:
        if self._trace is not None:
            host = url.split("/")[2] if "://" in url else ""
            self._trace(TraceEvent(kind, "WS", url.split("?")[0], host, None, None, None, detail, time.time()))

    async def start(self) -> None:
        url = await self._next_url()
        await asyncio.sleep(0)
        if self.service.start_error is not None:
            raise self.service.start_error
        self._connect(url)

    def _connect(self, url: str) -> None:
        self.connection_id = self.service.next_id()
        self.connected_url = url.split("?")[0]
        self.is_connected = True
        self.service.clients.append(self)
        self._emit("connect", url, f"connected as {self.connection_id} ({self.protocol})")
        if self.on_connected is not None:
            self.on_connected(Connected("user", self.connection_id, "secret-reconnection-token"))

    async def send_event(
        self,
        event: str,
        data: Any,
        data_type: DataType = DataType.JSON,
        *,
        ack: bool = True,
        timeout: float | None = None,
    ) -> int | None:
        if not self.is_connected:
            raise FakeSendError("NotConnected", "the client is not connected")
        self.service.events.append((event, data, data_type, ack))
        self._emit("send", self.connected_url or "", f"event {event}")
        await asyncio.sleep(0)
        if self.service.ack_error is not None:
            raise self.service.ack_error
        asyncio.get_running_loop().call_soon(self.service.deliver, self, event, data)
        return len(self.service.events)

    def receive(self, message: ServerMessage) -> None:
        def run() -> None:
            if self.on_server_message is not None:
                self.on_server_message(message)

        asyncio.get_running_loop().call_soon(run)

    async def drop(self) -> None:
        """The connection is lost; the client reconnects at once with a new connection from its URL source."""
        self._leave()
        if self.on_disconnected is not None:
            self.on_disconnected(Disconnected("lost"))
        await asyncio.sleep(0)
        self._connect(await self._next_url())

    async def recover(self) -> None:
        """The socket drops and the client resumes the same connection (reliable subprotocol): no callback."""
        self.is_connected = False
        self._emit("reconnect", self.connected_url, f"recovering connection {self.connection_id} (attempt 1)")
        await asyncio.sleep(0.2)
        self.is_connected = True

    def give_up(self, error: Exception) -> None:
        """The connection is lost for good (no reconnect)."""
        self._leave()
        if self.on_stopped is not None:
            self.on_stopped(error)

    def _leave(self) -> None:
        self.is_connected = False
        if self in self.service.clients:
            self.service.clients.remove(self)

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self._leave()
        self._emit("close", self.connected_url or "", "closed by the client (1000)")
        if self.on_stopped is not None:
            self.on_stopped(None)


TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJ4In0.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
"""The access token of the fake client access URLs (a test checks it is shown nowhere)."""


def client_access_url(n: int = 1) -> str:
    """A client access URL as the app server's answer carries it (port 9: nothing listens, the client is a fake)."""
    return f"ws://127.0.0.1:9/client/hubs/chat?access_token={TOKEN}{n}"


def webpubsub_body(n: int) -> bytes:
    """The app server's Web PubSub negotiate answer, the ``n``-th one."""
    return json.dumps({"service": "webpubsub", "hub": "chat", "url": client_access_url(n)}).encode()


@dataclass
class AppServer:
    """A stand-in app server on 127.0.0.1: ``answer(n)`` gives (status, body) of its ``n``-th negotiate."""

    url: str
    requests: list[dict[str, str]]
    answer: Callable[[int], tuple[int, bytes]]


@contextlib.asynccontextmanager
async def negotiate_server(answer: Callable[[int], tuple[int, bytes]]) -> AsyncIterator[AppServer]:
    """Serve ``POST /chat/negotiate`` on 127.0.0.1 with ``answer``; yields the :class:`AppServer` (its hub URL)."""
    requests: list[dict[str, str]] = []
    box: list[AppServer] = []

    async def negotiate(request: web.Request) -> web.Response:
        requests.append({"path": request.path_qs, **dict(request.headers)})
        status, body = box[0].answer(len(requests))
        return web.Response(status=status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/chat/negotiate", negotiate)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    box.append(AppServer(f"http://127.0.0.1:{server.port}/chat", requests, answer))
    try:
        yield box[0]
    finally:
        await server.close()
