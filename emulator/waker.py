"""The sleep and wake-up of a connection's writer, shared by the SignalR and Web PubSub emulators' connections.

A connection holds at most one future for its writer: :meth:`Waker._sleep` gives it (created only when the writer
must sleep, on the loop of the first caller), :meth:`Waker._wake` resolves it when there is something to do. No Event,
no ``wait_for``: one future per sleep and nothing per queued frame. One writer at a time.
"""

from __future__ import annotations

import asyncio

__all__ = ["Waker"]


class Waker:
    """Base of a slotted connection whose writer sleeps until woken; subclasses call ``Waker.__init__(self)``."""

    __slots__ = ("_loop", "_waiter")

    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _sleep(self) -> asyncio.Future[None]:
        """The future the writer awaits (the pending one, or a new one); :meth:`_wake` resolves it."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
        return waiter

    def _wake(self) -> None:
        """Resolve the writer's future, if one sleeps (cheap when none does: the common case under load)."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
