"""Modal screens: the name prompt (the sample's ``prompt()`` loop) and the help screen (F1)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from .names import INVALID_PROMPT, NAME_PROMPT, is_valid_name

__all__ = ["HelpScreen", "NamePrompt"]


class NamePrompt(ModalScreen[str]):
    """Ask for the chat name with ``default`` filled in; dismisses with an accepted name.

    Like the sample, an invalid answer clears the field and asks again with ``Invalid input. Enter your name:``.
    """

    def __init__(self, default: str) -> None:
        super().__init__()
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical(id="name-dialog"):
            yield Label(NAME_PROMPT, id="name-question")
            yield Input(value=self.default, id="name-input", select_on_focus=True)
            with Horizontal(id="name-buttons"):
                yield Button("OK", id="name-ok", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#name-input", Input).focus()

    @on(Input.Submitted, "#name-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._answer(event.value)

    @on(Button.Pressed, "#name-ok")
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self._answer(self.query_one("#name-input", Input).value)

    def _answer(self, name: str) -> None:
        if is_valid_name(name):
            self.dismiss(name)
            return
        self.query_one("#name-question", Label).update(INVALID_PROMPT)
        field = self.query_one("#name-input", Input)
        field.value = ""
        field.focus()


HELP_TEXT = """\
SignalR Chatroom — the ASP.NET sample's chat, through Azure SignalR Service and API Management.

Keys
  Enter      broadcast the message to everyone (empty input is not sent)
  ctrl+e     echo: only you get the message back, with " (echo from server)"
  ctrl+t     choose the transport: WebSockets, ServerSentEvents, LongPolling, SSE→LongPolling
  ctrl+o     choose the hub protocol: JSON or MessagePack (shown after the transport in the status)
  F12        show or hide the network trace (negotiate, redirect, connect, polls, sends)
  F11        show or hide the Flow view: the newest message hop by hop across Client, App server,
             APIM, Service and Other clients, with each hop's status and latency. A click on a chat
             line (or alt+↑/↓) replays that message's journey; alt+↓ past the newest goes live again.
             The server hops come from the local demo (chat-demo); against Azure only your own show
  ctrl+r     reconnect
  F5         resend the messages shown as not delivered (each waits for the hub's completion)
  F2         probe this connection: each transport through the app server's redirect (and APIM), whether
             it works, the cause of each failure and the fix; the chat stays connected meanwhile. The
             first F2 starts a probe, later ones show the latest (r in it probes again, Escape closes)
  ctrl+p     command palette (switch transport or protocol, toggle trace or flow, clear messages, probe)
  F1         this help          ctrl+q   quit

How a connection is made
  1. POST <app server>/chat/negotiate → a redirect to <ClientEndpoint>/client/?hub=chat… with an
     access token.
  2. POST <ClientEndpoint>/client/negotiate → connection id and transports.
  3. Connect on <ClientEndpoint>/client/ with the chosen transport.
  The status bar shows the host you really talk to: the gateway (APIM) when ClientEndpoint points
  at it.

Behind the service (the status bar's "mode")
  Default     the app server keeps WebSocket server connections open to the service; your messages
              reach the hub through them and its replies go back the same way. Only the connection
              string is needed.
  Serverless  the service POSTs each message to the app server's /upstream URL; the hub replies
              through the service's REST API. The service must be able to reach the app server.

Hub protocol (what the messages are written in; the app server and the service speak both)
  JSON         text; every transport carries it.
  MessagePack  binary and smaller. Not over ServerSentEvents: an SSE stream carries only text, so
               with MessagePack use WebSockets or LongPolling (SSE→LongPolling goes straight to
               LongPolling).
  The trace (F12) shows each frame's protocol and size in bytes.

APIM serves either WebSockets (profile websocket) or SSE/LongPolling (profile sse-lp) on client/,
never both.

Press Escape or F1 to close."""


class HelpScreen(ModalScreen[None]):
    """Keys and a short explanation of the connection path; Escape or F1 closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,f1,q", "dismiss_help", "Close help")]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog"):
            yield Static(Text(HELP_TEXT), id="help-text")

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
