"""A scripted SignalR service for the cases the real emulator will not produce on demand.

It speaks the transport protocols (``docs/protocol.md`` §3) on ``/client/``: negotiate v1, WebSockets, Server-Sent
Events and LongPolling, and records what the client sent. Server-to-client bytes are whatever the test pushes, so a
test can send several records per frame, a malformed record, a Close message, or nothing at all.

The hub URL to give a client is :attr:`FakeService.hub_url`. By default it answers the handshake with ``{}``.
``protocol`` is the hub protocol the client is expected to speak after the handshake: the service splits what it
receives with it, and sends pushed bytes in WebSocket binary frames when it is binary.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from signalr.handshake import split_handshake
from signalr.hub_protocol import HubProtocol, MessageReader, TransferFormat
from signalr.json_protocol import JSON, RECORD_SEPARATOR
from signalr.negotiate import service_negotiate_response
from signalr.sse import SSE_PREAMBLE, encode_event
from tests.client.servers import Recorded, serve

# What ASP.NET Core offers (the emulator too): ServerSentEvents carries Text only.
TRANSFER_FORMATS: dict[str, object] = {
    "WebSockets": ["Text", "Binary"],
    "ServerSentEvents": ["Text"],
    "LongPolling": ["Text", "Binary"],
}


@dataclass
class FakeService:
    """Configure the fields, then ``async with service.running():``."""

    transports: list[str] = field(default_factory=lambda: ["WebSockets", "ServerSentEvents", "LongPolling"])
    transfer_formats: dict[str, object] = field(default_factory=lambda: dict(TRANSFER_FORMATS))  # absent: no key
    protocol: HubProtocol = JSON
    handshake_reply: bytes | None = b"{}\x1e"  # None: never answer the handshake
    after_handshake: bytes = b""  # sent in the same frame/event/poll as the handshake reply (trap 8)
    delete_status: int = 202
    sse_content_type: str = "text/event-stream"
    lp_hold: float = 1.0  # how long a poll waits for data before an empty 200
    lp_instant_empty: bool = False  # a broken server: every poll answers an empty 200 at once
    first_poll_status: int = 200
    negotiate_delay: float = 0.0
    ws_drop_on_client_close: bool = False  # a peer going away: the client's close frame gets no answer, only a TCP end

    def __post_init__(self) -> None:
        self.requests: list[Recorded] = []
        # Every message the client sent, without framing: the handshake record first, then the protocol's payloads.
        self.records: asyncio.Queue[bytes] = asyncio.Queue()
        self.ws_frame_types: list[WSMsgType] = []  # the type of every WebSocket frame the client sent
        self.outgoing: asyncio.Queue[bytes | None] = asyncio.Queue()  # None = close the transport
        self.ws_close_codes: list[int | None] = []
        self._ws_end: tuple[int, str] = (1000, "")
        self._ws_closed = asyncio.Event()
        self.negotiations = 0
        self.polls = 0
        self.url = ""
        self._handshake = bytearray()
        self._reader: MessageReader | None = None

    @property
    def hub_url(self) -> str:
        return f"{self.url}/client/?hub=chat"

    def push(self, data: bytes) -> None:
        """Bytes for the client: one WS frame, one SSE event, or one poll response."""
        self.outgoing.put_nowait(data)

    def end(self, code: int = 1000, reason: str = "") -> None:
        """End the transport from the server side (WS close ``code`` with ``reason``, SSE stream end, LP 204)."""
        self._ws_end = (code, reason)
        self.outgoing.put_nowait(None)

    async def next_record(self, timeout: float = 5.0) -> bytes:
        return await asyncio.wait_for(self.records.get(), timeout)

    async def closed_sockets(self, count: int = 1, timeout: float = 5.0) -> list[int | None]:
        """The close codes of the WebSockets, once ``count`` of them have ended on the server side."""
        async with asyncio.timeout(timeout):
            while len(self.ws_close_codes) < count:
                self._ws_closed.clear()
                await self._ws_closed.wait()
        return self.ws_close_codes

    async def records_until(self, predicate: str, timeout: float = 5.0) -> list[bytes]:
        """Records up to and including the first one containing ``predicate``."""
        taken: list[bytes] = []
        async with asyncio.timeout(timeout):
            while True:
                taken.append(await self.records.get())
                if predicate.encode() in taken[-1]:
                    return taken

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FakeService]:
        app = web.Application()
        app.router.add_post("/client/negotiate", self._negotiate)
        app.router.add_route("*", "/client/", self._connect)
        async with serve(app) as url:
            self.url = url
            yield self

    def _receive(self, data: bytes) -> bytes:
        """Record the client's messages; returns the handshake answer (plus extra messages) when the handshake came."""
        answer = b""
        if self._reader is None:
            self._handshake += data
            parts = split_handshake(bytes(self._handshake), 1 << 20)
            if parts is None:
                return answer
            record, data = parts
            self.records.put_nowait(record)
            self._reader = self.protocol.reader(1 << 20)
            if self.handshake_reply is not None:
                answer += self.handshake_reply + self.after_handshake
        for payload in self._reader.feed(data):
            self.records.put_nowait(payload)
        return answer

    async def _negotiate(self, request: web.Request) -> web.Response:
        self.requests.append(Recorded.of(request))
        self.negotiations += 1
        self._handshake.clear()  # a new connection: it opens with its own handshake
        self._reader = None
        await asyncio.sleep(self.negotiate_delay)
        entries: list[dict[str, object]] = []
        for name in self.transports:
            entry: dict[str, object] = {"transport": name}
            if name in self.transfer_formats:
                entry["transferFormats"] = self.transfer_formats[name]
            entries.append(entry)
        body = service_negotiate_response(f"conn-{self.negotiations}", f"token-{self.negotiations}", 1, entries)
        return web.Response(body=body, content_type="application/json")

    async def _connect(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Recorded.of(request))
        if request.method == "POST":
            answer = self._receive(await request.read())
            if answer:
                self.push(answer)
            return web.Response(status=200)
        if request.method == "DELETE":
            self.end()
            return web.Response(status=self.delete_status, text="")
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        if request.headers.get("Accept") == "text/event-stream":
            return await self._sse(request)
        return await self._poll(request)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoclose=not self.ws_drop_on_client_close)
        await ws.prepare(request)

        async def pump_out() -> None:
            while True:
                data = await self.outgoing.get()
                if data is None:
                    code, reason = self._ws_end
                    await ws.close(code=code, message=reason.encode())
                    return
                if self.protocol.transfer_format is TransferFormat.BINARY:
                    await ws.send_bytes(data)
                else:
                    await ws.send_str(data.decode())

        sender = asyncio.create_task(pump_out())
        try:
            async for message in ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    self.ws_frame_types.append(message.type)
                    raw = message.data.encode() if message.type is WSMsgType.TEXT else message.data
                    answer = self._receive(raw)
                    if answer:
                        self.push(answer)
        finally:
            sender.cancel()
            if self.ws_drop_on_client_close and request.transport is not None:
                request.transport.abort()
            self.ws_close_codes.append(ws.close_code)
            self._ws_closed.set()
        return ws

    async def _sse(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": self.sse_content_type, "Cache-Control": "no-cache"})
        await response.prepare(request)
        await response.write(SSE_PREAMBLE)
        while True:
            data = await self.outgoing.get()
            if data is None:
                break
            await response.write(encode_event(data))
        await response.write_eof()
        return response

    async def _poll(self, request: web.Request) -> web.StreamResponse:
        self.polls += 1
        if self.polls == 1:
            return web.Response(status=self.first_poll_status, body=b"", content_type="application/octet-stream")
        if self.lp_instant_empty:
            return web.Response(status=200, body=b"")
        try:
            data = await asyncio.wait_for(self.outgoing.get(), self.lp_hold)
        except TimeoutError:
            return web.Response(status=200, body=b"")
        if data is None:
            return web.Response(status=204)
        # Everything queued so far goes in one response: several records per poll (trap 8).
        while not self.outgoing.empty():
            more = self.outgoing.get_nowait()
            if more is None:
                self.outgoing.put_nowait(None)
                break
            data += more
        return web.Response(status=200, body=data, content_type="application/octet-stream")


def records(*texts: str) -> bytes:
    """JSON texts as back-to-back records."""
    return b"".join(t.encode() + RECORD_SEPARATOR for t in texts)
