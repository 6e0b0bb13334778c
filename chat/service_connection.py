"""The chat's connection to whatever service the app server answers for: SignalR, or Azure Web PubSub.

:class:`ServiceConnection` starts a :class:`signalr.client.HubConnection`; when the app server's negotiate answers
for Web PubSub (``{"service": "webpubsub", "hub", "url"}``, :class:`signalr.negotiate.WebPubSubAnswer`), it goes on
over Web PubSub (:class:`chat.webpubsub_connection.WebPubSubConnection`) with the client access URL the answer
carried. So ``chat --url http://127.0.0.1:5000/chat`` works on either service without a flag. From then on it is that
connection: every call is passed to it. Use the class as ``ChatApp``'s ``connection_factory``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from signalr.client import ConnectionState, HubConnection, TraceEvent, TransportChoice
from signalr.hub_protocol import HubProtocol
from signalr.json_protocol import JSON
from signalr.negotiate import WebPubSubAnswer
from signalr.redact import redact_url

from .connection import ChatConnection, ConnectionFactory
from .webpubsub_connection import ClientAccessUrls, WebPubSubConnection

__all__ = ["ServiceConnection", "WebPubSubConnectionFactory", "webpubsub_answer"]

WebPubSubConnectionFactory = Callable[..., WebPubSubConnection]
"""Builds the Web PubSub side: ``(urls, headers=, trace=)`` → :class:`WebPubSubConnection` (tests inject theirs)."""


def webpubsub_answer(error: BaseException) -> WebPubSubAnswer | None:
    """The :class:`WebPubSubAnswer` behind a failed start: ``error`` itself or an exception it was raised from or
    while handling (the client turns the answer into its own negotiate error)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, WebPubSubAnswer):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class ServiceConnection:
    """SignalR first, Web PubSub when the app server answers for it; the ``ChatConnection`` surface either way.

    Takes ``HubConnection``'s arguments (``transport`` and ``protocol`` apply to SignalR only). After ``start()``,
    :attr:`service` says which service it is on and :attr:`webpubsub_protocol` the Web PubSub subprotocol (``None``
    on SignalR).
    """

    def __init__(
        self,
        url: str,
        *,
        transport: TransportChoice = TransportChoice.WEBSOCKETS,
        headers: Mapping[str, str] | None = None,
        trace: Callable[[TraceEvent], None] | None = None,
        protocol: HubProtocol = JSON,
        hub_factory: ConnectionFactory = HubConnection,
        webpubsub_factory: WebPubSubConnectionFactory = WebPubSubConnection,
    ) -> None:
        self.url = url
        self._headers = dict(headers or {})
        self._trace = trace
        self._webpubsub_factory = webpubsub_factory
        self._handlers: list[tuple[str, Callable[..., Any]]] = []
        self._state_callbacks: list[Callable[[ConnectionState, ConnectionState], None]] = []
        self._close_callbacks: list[Callable[[Exception | None], Any]] = []
        self._hub = hub_factory(url, transport=transport, headers=headers, trace=self._hub_trace, protocol=protocol)
        self._active: ChatConnection = self._hub
        self._protocol = protocol
        self._hub.on_state_change(self._hub_state)
        self._hub.on_close(self._hub_close)
        self.service: str | None = None
        """``signalr`` or ``webpubsub`` once started."""
        self.webpubsub_protocol: str | None = None
        """The Web PubSub subprotocol, when on Web PubSub."""

    # -------------------------------------------------------------------------------------------------- surface

    @property
    def state(self) -> ConnectionState:
        return self._active.state

    @property
    def connection_id(self) -> str | None:
        return self._active.connection_id

    @property
    def transport_name(self) -> str | None:
        return self._active.transport_name

    @property
    def connected_url(self) -> str | None:
        return self._active.connected_url

    @property
    def last_rtt_ms(self) -> float | None:
        return self._active.last_rtt_ms

    @property
    def protocol(self) -> HubProtocol | None:
        """The SignalR hub protocol spoken; ``None`` on Web PubSub."""
        return None if self.service == "webpubsub" else self._protocol

    def on(self, target: str, handler: Callable[..., Any]) -> None:
        self._handlers.append((target, handler))
        self._active.on(target, handler)

    def on_state_change(self, callback: Callable[[ConnectionState, ConnectionState], None]) -> None:
        self._state_callbacks.append(callback)
        if self._active is not self._hub:
            self._active.on_state_change(callback)

    def on_close(self, callback: Callable[[Exception | None], Any]) -> None:
        self._close_callbacks.append(callback)
        if self._active is not self._hub:
            self._active.on_close(callback)

    async def start(self) -> None:
        """Start on SignalR; on the app server's Web PubSub answer, start on Web PubSub with the URL it carried."""
        try:
            await self._hub.start()
        except Exception as exc:
            answer = webpubsub_answer(exc)
            if answer is None:
                raise
            await self._start_webpubsub(answer)
            return
        self.service = "signalr"

    async def invoke(self, target: str, *arguments: Any, timeout: float | None = 30) -> Any:
        return await self._active.invoke(target, *arguments, timeout=timeout)

    async def stop(self) -> None:
        await self._active.stop()

    # -------------------------------------------------------------------------------------------------- internals

    async def _start_webpubsub(self, answer: WebPubSubAnswer) -> None:
        self._emit_switch(answer)
        urls = ClientAccessUrls(self.url, answer.url, headers=self._headers, trace=self._trace)
        connection = self._webpubsub_factory(urls, headers=self._headers or None, trace=self._trace)
        for target, handler in self._handlers:
            connection.on(target, handler)
        for state_callback in self._state_callbacks:
            connection.on_state_change(state_callback)
        for close_callback in self._close_callbacks:
            connection.on_close(close_callback)
        self._active = connection
        self.service = "webpubsub"
        self.webpubsub_protocol = connection.webpubsub_protocol
        await connection.start()

    def _emit_switch(self, answer: WebPubSubAnswer) -> None:
        if self._trace is not None:
            detail = f"the app server answers for Azure Web PubSub (hub {answer.hub}): on to its client access URL"
            host = urlsplit(answer.url).netloc.rpartition("@")[2]
            url = redact_url(answer.url)
            self._trace(TraceEvent("redirect", "", url, host, None, None, None, detail, time.time()))

    def _hub_trace(self, event: TraceEvent) -> None:
        # The hub connection reports its failed start as an error: not one when Web PubSub takes over.
        if self._trace is None:
            return
        if event.kind == "error" and "answers for Azure Web PubSub" in event.detail:
            return
        self._trace(event)

    def _hub_state(self, old: ConnectionState, new: ConnectionState) -> None:
        if self._active is self._hub:
            for callback in list(self._state_callbacks):
                callback(old, new)

    def _hub_close(self, error: Exception | None) -> None:
        if self._active is self._hub:
            for callback in list(self._close_callbacks):
                callback(error)
