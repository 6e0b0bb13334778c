"""Collects what a HubConnection receives and its trace, with bounded waits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from signalr.client import ConnectionState, HubConnection, TraceEvent


class Inbox:
    """Registers handlers for ``targets`` on a connection and queues ``(target, args)``; also keeps the trace."""

    def __init__(self, targets: tuple[str, ...] = ("broadcastMessage", "echo")) -> None:
        self.messages: asyncio.Queue[tuple[str, tuple[Any, ...]]] = asyncio.Queue()
        self.trace: list[TraceEvent] = []
        self._traced = asyncio.Event()
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

    def record(self, event: TraceEvent) -> None:
        """The connection's trace callback."""
        self.trace.append(event)
        self._traced.set()

    async def traced(self, predicate: Callable[[TraceEvent], bool], timeout: float = 5.0) -> TraceEvent:
        """The first trace event, already seen or still to come, for which ``predicate`` holds."""
        async with asyncio.timeout(timeout):
            while True:
                for event in self.trace:
                    if predicate(event):
                        return event
                self._traced.clear()
                await self._traced.wait()


def connect(url: str, inbox: Inbox | None = None, **options: Any) -> tuple[HubConnection, Inbox]:
    """A HubConnection to ``url`` (no reconnect unless asked) whose messages and trace land in the inbox."""
    inbox = inbox or Inbox()
    options.setdefault("reconnect_delays", None)
    connection = HubConnection(url, trace=inbox.record, **options)
    return inbox.attach(connection), inbox


class StateLog:
    """Every state a connection entered, in order; :meth:`wait_for` waits for the next entry into ``state``."""

    def __init__(self, connection: HubConnection) -> None:
        self.states: list[ConnectionState] = []
        self._changed = asyncio.Event()
        connection.on_state_change(self._record)

    def _record(self, _old: ConnectionState, new: ConnectionState) -> None:
        self.states.append(new)
        self._changed.set()

    async def wait_for(self, state: ConnectionState, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not self.states or self.states[-1] is not state:
                self._changed.clear()
                await self._changed.wait()
