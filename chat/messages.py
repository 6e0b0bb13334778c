"""Textual messages the connection side posts to the UI.

The callbacks registered on :class:`signalr.client.HubConnection` only wrap what they receive into these messages and
post them; every widget update happens in the message handlers on the UI's event loop. Each message carries the
``generation`` of the connection that produced it, so the app can drop late events from a connection it has already
replaced (a transport switch or a reconnect starts a new generation). The probe's messages carry the number of
their run instead, for the same reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from textual.message import Message

from flow.hops import Hop
from signalr.client import ConnectionState, TraceEvent

from .probe import ProbeReport, StepResult

__all__ = [
    "Arrival",
    "ConnectionFailed",
    "FlowStateChanged",
    "HopArrived",
    "MessagesArrived",
    "ProbeFinished",
    "ProbeStepDone",
    "StateChanged",
    "TraceRecorded",
]


@dataclass(frozen=True, slots=True)
class Arrival:
    """A hub invocation for the chat: ``target`` is ``broadcastMessage`` or ``echo``, with ``(sender, text)``."""

    generation: int
    target: str
    sender: str
    text: str
    at: float = field(default_factory=time.time)


class MessagesArrived(Message):
    """Hub invocations for the chat, in the order they arrived: one message for a whole burst.

    The app keeps adding arrivals to the newest of these until it posts any other message (so nothing overtakes a state
    change or a note), and handles them together: a busy room costs one dispatch per turn of the UI's loop, not one
    per chat message.
    """

    def __init__(self, arrivals: list[Arrival]) -> None:
        super().__init__()
        self.arrivals = arrivals


class StateChanged(Message):
    """The connection moved from ``old`` to ``new`` (connecting, connected, reconnecting, ...)."""

    def __init__(self, generation: int, old: ConnectionState, new: ConnectionState) -> None:
        super().__init__()
        self.generation = generation
        self.old = old
        self.new = new


class TraceRecorded(Message):
    """One network step reported by the client's trace hook (already redacted by the client), and in ``events`` the
    steps reported after it until it was handled (the app adds them to the message still waiting), oldest first."""

    def __init__(self, generation: int, event: TraceEvent) -> None:
        super().__init__()
        self.generation = generation
        self.event = event
        self.events = [event]


class ConnectionFailed(Message):
    """``start()`` failed (``during_start``) or the connection closed for good; ``error`` is the reason, if any."""

    def __init__(self, generation: int, error: BaseException | None, during_start: bool) -> None:
        super().__init__()
        self.generation = generation
        self.error = error
        self.during_start = during_start


class ProbeStepDone(Message):
    """A step of probe run ``run`` ended (``chat.probe``'s ``on_step``); its strings are already redacted."""

    def __init__(self, run: int, step: StepResult) -> None:
        super().__init__()
        self.run = run
        self.step = step


class ProbeFinished(Message):
    """Probe run ``run`` ended: its ``report``, or ``error`` (a one-line reason) when it produced none."""

    def __init__(self, run: int, report: ProbeReport | None, error: str | None = None) -> None:
        super().__init__()
        self.run = run
        self.report = report
        self.error = error


class HopArrived(Message):
    """One hop of a journey: from the flow stream, or the chat's own (``message`` is the ``(name, text)`` of the chat
    line it belongs to, when the chat knows it)."""

    def __init__(self, hop: Hop, message: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.hop = hop
        self.message = message


class FlowStateChanged(Message):
    """The flow stream opened or failed; ``text`` says which (for the Flow view's note)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
