"""Journeys: the hops of one chat message, grouped by flow id, in the order they began.

A :class:`JourneyBook` takes every hop (:meth:`JourneyBook.add`) and files it:

- a hop with a flow id joins that message's :class:`Journey`;
- a hop without one (the gateway relays frames and knows no flow id) joins the journey that is *open in time* when it
  happened: the journey of its connection (the sender's connection id, which a ``send``/``invoke``/``upstream``/
  ``server-connection`` hop of the journey carried) if there is one, else any journey, the newest that began at most
  :data:`LEAD` seconds after the hop and, for a hop towards the clients, whose last hop ended at most :data:`LINGER`
  seconds before it; a hop on its way in (a client's frame or request) must be within :data:`LEAD` seconds of the
  journey's start, so a client's next message never joins its previous one. A hop that arrives before any such
  journey (the gateway reports the relay of the sender's frame before the service reports the invocation) waits for
  its connection's journey; once a later hop shows it waited :data:`LEAD` seconds, it joins the newest journey open
  at its time, if any;
- connection set-up (``negotiate``, ``redirect``, ``connect``, ``upgrade``) and hops no journey claims stay
  *connection hops* (:meth:`JourneyBook.connection_hops`).

The book is bounded (:data:`MAX_JOURNEYS` journeys, the oldest forgotten first; :data:`MAX_HOPS` hops a journey).
Hops carry no chat text: whoever knows a message's text (the client that sent or received it) registers it with
:meth:`JourneyBook.label_message`, and :meth:`JourneyBook.for_message` finds the journey of a chat line from it.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field

from .hops import Hop, Lifeline

__all__ = ["CONNECTION_KINDS", "LEAD", "LINGER", "MAX_HOPS", "MAX_JOURNEYS", "SENDER_KINDS", "Journey", "JourneyBook"]

# Seconds a hop without a flow id may precede the first hop of the journey it belongs to.
LEAD = 0.5
# Seconds after a journey's last hop during which a hop without a flow id still joins it.
LINGER = 2.0
MAX_JOURNEYS = 500
# The most hops a journey keeps; later ones are only counted (Journey.more).
MAX_HOPS = 2000
# Hops that set a connection up: they never join a message's journey.
CONNECTION_KINDS = frozenset({"negotiate", "redirect", "connect", "upgrade"})
# Hops whose connection id is the sender's: a journey is "of" the connections these name (a ``deliver`` hop names a
# recipient, whose next message must not look like this one).
SENDER_KINDS = frozenset({"send", "invoke", "upstream", "server-connection"})
_OUTBOUND = frozenset({Lifeline.CLIENT, Lifeline.OTHERS})
_MAX_LOOSE = 500
# How many of the newest journeys a hop without a flow id is matched against (a broadcast to many clients through the
# gateway is one such hop per recipient: each costs at most this many checks).
_SCAN = 64


@dataclass(eq=False)
class Journey:
    """One message's hops, ordered by when each began (:attr:`Hop.started`; arrival order among equals).

    ``flow_id`` is the message's flow id (None only for a connection's set-up hops). ``name`` and ``text`` are the
    chat line, when a client registered it. Read it; only the book changes it.
    """

    flow_id: str | None
    hops: list[Hop] = field(default_factory=list)
    name: str | None = None
    text: str | None = None
    connection_ids: set[str] = field(default_factory=set)
    # The greatest ``at`` among the hops: when the journey last moved.
    last_at: float = 0.0
    # Hops past :data:`MAX_HOPS` that were counted, not kept (a broadcast to thousands of clients through the gateway).
    more: int = 0
    _keys: list[float] = field(default_factory=list, repr=False)

    @property
    def started(self) -> float | None:
        """When its first hop began, or None while it has none."""
        return self.hops[0].started if self.hops else None

    @property
    def duration_ms(self) -> float | None:
        """From the first hop's start to the last hop's end, in ms (None with no hop)."""
        if not self.hops:
            return None
        return max(0.0, (self.last_at - self.hops[0].started) * 1000)

    @property
    def service(self) -> str | None:
        """The service its hops name (``signalr`` or ``webpubsub``), or None with no hop."""
        return self.hops[0].service if self.hops else None

    def facts(self) -> dict[str, list[str]]:
        """The distinct modes, transports and services its hops name, each in order of first appearance."""
        out: dict[str, list[str]] = {"service": [], "mode": [], "transport": []}
        for hop in self.hops:
            for key, value in (("service", hop.service), ("mode", hop.mode), ("transport", hop.transport)):
                if value is not None and value not in out[key]:
                    out[key].append(value)
        return out

    def arrows(self) -> list[Hop]:
        """The hops to draw, one arrow per hop, in order.

        A hop both of its ends report (the service's upstream POST and the app server's receipt of it, the app
        server's REST call and the service's receipt, a server-connection message and its receipt) is drawn once, from
        the sender's report, which timed it: per arrow and kind, as many receiver reports are left out as there are
        sender reports. A hop towards the other clients that names the sender's own connection (the answer to its
        LongPolling poll) is drawn to the client.
        """
        sent = Counter(_arrow(hop) for hop in self.hops if hop.role.value == hop.source.value)
        drawn: list[Hop] = []
        for hop in self.hops:
            key = _arrow(hop)
            if hop.role.value == hop.target.value != hop.source.value and sent[key] > 0:
                sent[key] -= 1
                continue
            if hop.target is Lifeline.OTHERS and hop.kind != "fan-out" and hop.connection_id in self.connection_ids:
                hop = dataclasses.replace(hop, target=Lifeline.CLIENT)
            drawn.append(hop)
        return drawn

    def _insert(self, hop: Hop) -> None:
        self.last_at = max(self.last_at, hop.at)
        if len(self.hops) >= MAX_HOPS:
            self.more += 1
            return
        key = hop.started
        index = bisect.bisect_right(self._keys, key)
        self._keys.insert(index, key)
        self.hops.insert(index, hop)
        if hop.connection_id is not None and hop.flow_id is not None and hop.kind in SENDER_KINDS:
            self.connection_ids.add(hop.connection_id)

    def _takes(self, hop: Hop) -> bool:
        """Whether ``hop`` (no flow id) happened while this journey was open: an inbound hop (a client's frame or
        request on its way in) near the journey's start, an outbound one (towards clients) up to LINGER seconds after
        its last hop."""
        started = self.started
        if started is None or hop.at < started - LEAD:
            return False
        if hop.target in _OUTBOUND:
            return hop.at <= self.last_at + LINGER
        return hop.at <= started + LEAD


def _arrow(hop: Hop) -> tuple[Lifeline, Lifeline, str]:
    return hop.source, hop.target, hop.kind


class JourneyBook:
    """Files hops into journeys (see the module's text). Not thread-safe: call it from one thread (the event loop).

    ``max_journeys`` bounds the journeys kept; the oldest go first.
    """

    def __init__(self, max_journeys: int = MAX_JOURNEYS) -> None:
        if max_journeys < 1:
            raise ValueError("max_journeys must be at least 1")
        self._max = max_journeys
        self._journeys: OrderedDict[str, Journey] = OrderedDict()
        self._messages: dict[tuple[str, str], str] = {}
        # Hops without a flow id that no journey claimed yet (they may still be claimed for LEAD seconds).
        self._waiting: deque[Hop] = deque()
        self._connection_hops: deque[Hop] = deque(maxlen=_MAX_LOOSE)

    def __len__(self) -> int:
        return len(self._journeys)

    def journeys(self) -> list[Journey]:
        """Every journey kept, oldest first."""
        return list(self._journeys.values())

    def get(self, flow_id: str) -> Journey | None:
        """The journey of ``flow_id``, or None."""
        return self._journeys.get(flow_id)

    def latest(self) -> Journey | None:
        """The newest journey (the last one a hop or a label opened), or None."""
        return next(reversed(self._journeys.values()), None)

    def for_message(self, name: str, text: str) -> Journey | None:
        """The journey of the newest message ``text`` by ``name`` registered with :meth:`label_message`, or None."""
        flow = self._messages.get((name, text))
        return self._journeys.get(flow) if flow is not None else None

    def label_message(self, flow_id: str, name: str, text: str) -> Journey:
        """Say that ``flow_id`` is the chat line ``text`` by ``name`` (opens the journey if no hop did yet)."""
        journey = self._journey(flow_id)
        journey.name, journey.text = name, text
        self._messages[(name, text)] = flow_id
        return journey

    def connection_hops(self, connection_id: str | None = None) -> list[Hop]:
        """Hops no journey took (connection set-up, stray frames), oldest first; only ``connection_id``'s if given."""
        self._settle(float("inf"))
        return [h for h in self._connection_hops if connection_id is None or h.connection_id == connection_id]

    def add(self, hop: Hop) -> Journey | None:
        """File ``hop``; returns the journey it joined (None: a connection hop, or one waiting for its journey)."""
        self._settle(hop.at)
        if hop.flow_id is not None:
            journey = self._journey(hop.flow_id)
            fresh = not journey.hops
            journey._insert(hop)
            if fresh or hop.connection_id is not None:
                self._claim_waiting(journey)
            return journey
        if hop.kind in CONNECTION_KINDS:
            self._connection_hops.append(hop)
            return None
        open_journey = self._open_journey_for(hop)
        if open_journey is not None:
            open_journey._insert(hop)
            return open_journey
        self._waiting.append(hop)
        return None

    def _journey(self, flow_id: str) -> Journey:
        found = self._journeys.get(flow_id)
        if found is not None:
            return found
        journey = Journey(flow_id)
        self._journeys[flow_id] = journey
        while len(self._journeys) > self._max:
            _, old = self._journeys.popitem(last=False)
            if old.name is not None and old.text is not None:
                if self._messages.get((old.name, old.text)) == old.flow_id:
                    del self._messages[(old.name, old.text)]
        return journey

    def _open_journey_for(self, hop: Hop) -> Journey | None:
        """The journey open in time at ``hop.at`` that ``hop`` belongs to: its connection's first, else any; newest
        first."""
        fallback: Journey | None = None
        for journey in itertools.islice(reversed(self._journeys.values()), _SCAN):
            if not journey._takes(hop):
                continue
            if hop.connection_id is not None and hop.connection_id in journey.connection_ids:
                return journey
            if fallback is None:
                fallback = journey
        return fallback

    def _claim_waiting(self, journey: Journey) -> None:
        """Give ``journey`` the waiting hops of its connections (or of no known connection) it is open for. A waiting
        hop of another connection keeps waiting for that connection's journey (see :meth:`_settle`)."""
        if not self._waiting:
            return
        kept: deque[Hop] = deque()
        for hop in self._waiting:
            if journey._takes(hop) and (hop.connection_id is None or hop.connection_id in journey.connection_ids):
                journey._insert(hop)
            else:
                kept.append(hop)
        self._waiting = kept

    def _settle(self, now: float) -> None:
        """Waiting hops older than LEAD seconds before ``now`` can no longer meet their connection's journey: they join
        the newest journey open when they happened, if any, else they are connection hops."""
        while self._waiting and (self._waiting[0].at < now - LEAD or len(self._waiting) > _MAX_LOOSE):
            hop = self._waiting.popleft()
            journey = self._open_journey_for(hop)
            if journey is not None:
                journey._insert(hop)
            else:
                self._connection_hops.append(hop)
