"""Textual messages the connection side posts to the UI.

The callbacks registered on :class:`signalr.client.HubConnection` only wrap what they receive into these messages and
post them; every widget update happens in the message handlers on the UI's event loop. Each message carries the
``generation`` of the connection that produced it, so the app can drop late events from a connection it has already
replaced (a transport switch or a reconnect starts a new generation). The probe's messages carry the number of
their run instead, for the same reason.
"""

from __future__ import annotations

import time

from textual.message import Message

from flow.hops import Hop
from signalr.client import ConnectionState, TraceEvent

from .probe import ProbeReport, StepResult

__all__ = [
    "ConnectionFailed",
    "FlowStateChanged",
    "HopArrived",
    "MessageArrived",
    "ProbeFinished",
    "ProbeStepDone",
    "StateChanged",
    "TraceRecorded",
]


class MessageArrived(Message):
    """A hub invocation for the chat: ``target`` is ``broadcastMessage`` or ``echo``, with ``(sender, text)``."""

    def __init__(self, generation: int, target: str, sender: str, text: str, at: float | None = None) -> None:
        super().__init__()
        self.generation = generation
        self.target = target
        self.sender = sender
        self.text = text
        self.at = time.time() if at is None else at


class StateChanged(Message):
    """The connection moved from ``old`` to ``new`` (connecting, connected, reconnecting, ...)."""

    def __init__(self, generation: int, old: ConnectionState, new: ConnectionState) -> None:
        super().__init__()
        self.generation = generation
        self.old = old
        self.new = new


class TraceRecorded(Message):
    """One network step reported by the client's trace hook (already redacted by the client)."""

    def __init__(self, generation: int, event: TraceEvent) -> None:
        super().__init__()
        self.generation = generation
        self.event = event


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
