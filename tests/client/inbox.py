"""Collects what a HubConnection receives and its trace, with bounded waits."""

from __future__ import annotations

import asyncio
from typing import Any

from signalr.client import HubConnection, TraceEvent


class Inbox:
    """Registers handlers for ``targets`` on a connection and queues ``(target, args)``; also keeps the trace."""

    def __init__(self, targets: tuple[str, ...] = ("broadcastMessage", "echo")) -> None:
        self.messages: asyncio.Queue[tuple[str, tuple[Any, ...]]] = asyncio.Queue()
        self.trace: list[TraceEvent] = []
        self.closed: asyncio.Queue[Exception | None] = asyncio.Queue()
        self.targets = targets

    def attach(self, connection: HubConnection) -> HubConnection:
        for target in self.targets:
            connection.on(target, self._handler(target))
        connection.on_close(self.closed.put_nowait)
        return connection

    def _handler(self, target: str) -> Any:
        def handle(*arguments: Any) -> None:
            self.messages.put_nowait((target, arguments))

        return handle

    async def next(self, timeout: float = 5.0) -> tuple[str, tuple[Any, ...]]:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def next_close(self, timeout: float = 5.0) -> Exception | None:
        return await asyncio.wait_for(self.closed.get(), timeout)

    def kinds(self) -> list[str]:
        return [event.kind for event in self.trace]


def connect(url: str, inbox: Inbox | None = None, **options: Any) -> tuple[HubConnection, Inbox]:
    """A HubConnection to ``url`` (no reconnect unless asked) whose messages and trace land in the inbox."""
    inbox = inbox or Inbox()
    options.setdefault("reconnect_delays", None)
    connection = HubConnection(url, trace=inbox.trace.append, **options)
    return inbox.attach(connection), inbox
