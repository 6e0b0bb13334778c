"""``FlowFeed``: follows the app server's hop stream (``GET /flow``, Server-Sent Events, one hop per event).

chat-server serves the stream when the demo starts it with ``--flow-port``; each event's data is one hop's JSON
(``flow.hops.Hop.to_json``), the last 200 first. The feed decodes each with ``Hop.from_json`` and hands it to the
callback; an event that is not a hop is counted and dropped, an oversized event ends that stream, and a dropped
stream is opened again after a pause (the hops already seen are not handed on twice).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

import aiohttp

from flow.hops import MAX_DATAGRAM, Hop, InvalidHop
from signalr.sse import SseDecoder

__all__ = ["FlowFeed"]

RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0)
"""Pauses before opening the stream again, the last one repeated."""
_SEEN = 2000
"""Hops remembered to skip the replay of a stream opened again."""


class FlowFeed:
    """Follow ``url`` (``http://127.0.0.1:PORT/flow``) and call ``on_hop(hop)`` for every new hop.

    Run :meth:`run` as a task on the caller's event loop and cancel it to stop. ``on_state(text)`` says when the
    stream opens or fails (the text is for a screen: no secret, the stream carries none).
    """

    def __init__(
        self,
        url: str,
        on_hop: Callable[[Hop], None],
        on_state: Callable[[str], None] | None = None,
        *,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
        connect_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.on_hop = on_hop
        self.on_state = on_state
        self.retry_delays = retry_delays
        self.connect_timeout = connect_timeout
        self.invalid = 0
        """Events that were not hops (dropped)."""
        self.received = 0
        """Hops handed to ``on_hop``."""
        self.connected = False
        self._seen: deque[Hop] = deque(maxlen=_SEEN)
        self._seen_set: set[Hop] = set()

    async def run(self) -> None:
        """Follow the stream until cancelled, opening it again after each failure."""
        attempt = 0
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout, sock_read=None)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                try:
                    await self._follow(session)
                    problem = "the flow stream ended"
                except asyncio.CancelledError:
                    raise
                except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                    problem = f"the flow stream failed: {str(exc).strip() or type(exc).__name__}"
                if self.connected:
                    attempt = 0
                self.connected = False
                self._state(problem)
                await asyncio.sleep(self.retry_delays[min(attempt, len(self.retry_delays) - 1)])
                attempt += 1

    async def _follow(self, session: aiohttp.ClientSession) -> None:
        async with session.get(self.url, headers={"Accept": "text/event-stream"}) as response:
            if response.status != 200:
                raise ValueError(f"{self.url} answered {response.status}")
            self.connected = True
            self._state("following the flow stream")
            decoder = SseDecoder(max_event_size=2 * MAX_DATAGRAM)
            async for chunk in response.content.iter_any():
                for payload in decoder.feed(chunk):  # ValueError for an oversized event: the stream is dropped
                    self._take(payload)

    def _take(self, payload: bytes) -> None:
        try:
            hop = Hop.from_json(payload)
        except InvalidHop:
            self.invalid += 1
            return
        if hop in self._seen_set:
            return
        if len(self._seen) == self._seen.maxlen:
            self._seen_set.discard(self._seen[0])
        self._seen.append(hop)
        self._seen_set.add(hop)
        self.received += 1
        self.on_hop(hop)

    def _state(self, text: str) -> None:
        if self.on_state is not None:
            with contextlib.suppress(Exception):
                self.on_state(text)
