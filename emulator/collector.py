"""Keeping CPython's cyclic garbage collector away from the service's connections (``gc.freeze``).

Each connection is some 60–90 objects the collector tracks (the service's, aiohttp's, the event loop's). They live as
long as the connection, so every full collection walks all of them: at 10,000 connections that was a pause of close
to a second, and the collector runs one each time the long-lived objects have grown by a quarter. Objects moved to
the permanent generation (``gc.freeze``) are never walked again; they are still freed as soon as nothing refers to them.

What the permanent generation cannot do is collect a cycle. A connection that ends lets go of its transport
(``ClientConnection.finish``), so what it leaves is freed by reference counting, frozen or not; but a cycle made on
some path nobody foresaw would stay for good. So :class:`HeapFreezer` freezes at the first connection (the service's
own objects: modules, the app) and whenever the open connections have grown by ``step`` since the last freeze (a young
collection first, so no young garbage is frozen; called as connections are made, so a fast ramp-up freezes as it
goes), and thaws as a safety net once twice as many connections have gone as it froze (at least ``step``): one full
collection frees whatever cycles they left, and what is alive is frozen again. A service whose connections come and
stay pays one short young collection per ``step`` new connections; one whose connections churn pays one full
collection per two turnovers, instead of one each time the long-lived objects grew by a quarter.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Collector", "HeapFreezer"]

log = logging.getLogger("emulator")


@dataclass(frozen=True)
class Collector:
    """The three calls of :mod:`gc` the freezer makes (tests pass recorders)."""

    collect: Callable[[int], int] = gc.collect
    freeze: Callable[[], None] = gc.freeze
    unfreeze: Callable[[], None] = gc.unfreeze


class HeapFreezer:
    """Call :meth:`tick` with how many connections are open and how many have gone in all, whenever a connection is
    made and now and then (the service's timer tick); ``step`` 0 turns it off. Cheap when there is nothing to do."""

    __slots__ = ("_collector", "_frozen_alive", "_gone_at_freeze", "step")

    def __init__(self, step: int, collector: Collector | None = None) -> None:
        self.step = step
        self._collector = collector or Collector()
        self._frozen_alive = 0  # connections open at the last freeze (0: nothing frozen)
        self._gone_at_freeze = 0  # connections gone in all when the first of the current freezes was made

    def tick(self, alive: int, gone: int) -> None:
        if self.step <= 0:
            return
        collector = self._collector
        if self._frozen_alive and gone - self._gone_at_freeze >= max(self.step, 2 * self._frozen_alive):
            started = time.perf_counter()
            collector.unfreeze()
            found = collector.collect(2)
            self._frozen_alive = 0
            log.debug(
                "heap thawed: %d unreachable objects freed in %.0f ms",
                found,
                (time.perf_counter() - started) * 1000,
            )
        if alive and (not self._frozen_alive or alive - self._frozen_alive >= self.step):
            collector.collect(1)
            collector.freeze()
            log.debug("heap frozen at %d open connections", alive)
            if not self._frozen_alive:
                self._gone_at_freeze = gone
            self._frozen_alive = alive
