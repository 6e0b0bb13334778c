"""``ChatApp``: the Textual chat client of the Chatroom sample, over a :class:`chat.connection.ChatConnection`:
:class:`chat.service_connection.ServiceConnection` by default, a SignalR ``HubConnection`` that goes on over Azure
Web PubSub when the app server answers for Web PubSub.

The connection lives in ``@work`` workers (exclusive group ``connection``), so negotiating, redirecting and
connecting never block the UI. The client's callbacks only post Textual messages (``chat.messages``); the handlers
below turn them into lines, status and trace rows. The UI never sees protocol bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from datetime import datetime
from functools import partial
from typing import Any, ClassVar
from urllib.parse import urlsplit

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Header, Input, Select, Static

from flow.hops import Hop, Lifeline
from flow.journey import Journey, JourneyBook
from signalr.client import ConnectionState, TraceEvent, TransportChoice
from signalr.hub_protocol import HubProtocol
from signalr.json_protocol import JSON
from signalr.redact import SECRET_HEADERS, redact_text, redact_url
from webpubsub.subprotocol import RELIABLE_JSON_SUBPROTOCOL

from .client_hops import ClientSide, deliver_hop, send_hop
from .connection import ChatConnection, ConnectionFactory, webpubsub_protocol_of
from .flow_feed import FlowFeed
from .flow_view import OUTSIDE_THE_DEMO, FlowContext, FlowPanel, diagram_order, message_span_ms
from .messages import (
    Arrival,
    ConnectionFailed,
    FlowStateChanged,
    HopArrived,
    MessagesArrived,
    ProbeFinished,
    ProbeStepDone,
    StateChanged,
    TraceRecorded,
)
from .names import SYSTEM_SENDER, random_default_name
from .probe import DEFAULT_TIMEOUT, SUBSCRIPTION_KEY_HEADER, ProbeOptions, StepResult, run_probe, summary_line
from .probe_panel import ProbeRun, ProbeScreen
from .protocol_choice import PROTOCOL_NAMES, carries, protocol_label, protocol_named, why_not
from .screens import HelpScreen, NamePrompt
from .service_connection import ServiceConnection
from .webpubsub_connection import TRANSPORT_NAME as WEBPUBSUB_TRANSPORT
from .widgets import (
    ChatLine,
    ChatLog,
    LineKind,
    ProtocolSelector,
    StatusBar,
    StatusInfo,
    TracePanel,
    TransportSelector,
)

__all__ = ["NOT_CONNECTED", "ChatApp", "describe_error", "freeze_startup_heap", "host_of"]

STOP_TIMEOUT = 5.0
"""Longest wait for a clean ``stop()`` before the app moves on (quit, transport switch)."""
NOT_CONNECTED = "Cannot send data if the connection is not in the 'Connected' State."
"""What the sample shows when a send is attempted without a connection (the JS client's message)."""
HUB_TARGETS = ("broadcastMessage", "echo")
# What happens behind the service, by service mode: the trace shows it once per connection.
SERVICE_PATHS = {
    "default": "Default mode: the service hands each message to the app server over its server connections "
    "(WebSockets the app server opened); the hub's replies come back the same way",
    "serverless": "Serverless mode: the service POSTs each invocation to the app server's /upstream webhook; the hub "
    "replies through the service's REST API",
    "webpubsub": "Web PubSub: each chat message is a user event the service POSTs to the app server's /eventhandler "
    "(CloudEvents over HTTP); the app server replies through the service's REST API (send to all, to a connection)",
}
WEBPUBSUB = "webpubsub"
SIGNALR_ONLY = "the transport and hub protocol choices are SignalR's"
ECHO_SUFFIX = " (echo from server)"
"""What the hub appends to an echoed message (docs/protocol.md §5)."""
MAX_IN_FLIGHT = 256
# How long a message may wait for the hub's completion before the chat calls it undelivered.
DELIVERY_TIMEOUT = 15.0
REPLAY_STEP = 0.12
"""Seconds between two hops when the Flow view replays a selected message's journey."""
"""Sent messages remembered for round-trip timing; older ones are forgotten (a peer may never echo them back)."""


def freeze_startup_heap() -> None:
    """Leave every object made so far (the modules, classes and functions imported) out of the cyclic garbage
    collector's full collections; call it once, before the app runs.

    Under a busy room the screen's updates leave reference cycles behind (Textual's layout and cropped strips), so a
    full collection comes every second or so; without this each one walks the ~80,000 objects of the imports too, a
    stall of tens of milliseconds that the keyboard feels. The objects stay alive as they were (they are never garbage).
    """
    gc.collect()
    gc.freeze()


def host_of(url: str) -> str:
    """``host:port`` of ``url`` (the port only when the URL names one)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port is not None else host


def _endpoint(url: str) -> tuple[str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    default = {"http": 80, "ws": 80, "https": 443, "wss": 443}.get(parts.scheme.lower())
    return (parts.hostname or "").lower(), port if port is not None else default


def describe_error(error: BaseException | None) -> str:
    """A one-line reason for ``error``: its message, or its type when the message is empty."""
    if error is None:
        return "the server closed the connection"
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


class ChatApp(App[None]):
    """The chat. Pass ``name`` to skip the name prompt, ``headers`` for every HTTP request (subscription key).

    ``gateway_profile``/``profile_switcher``/``strict_apim`` are for the local demo: when the user picks a transport
    whose family the gateway's APIM profile does not serve, the app awaits ``profile_switcher(family)`` before it
    reconnects, unless ``strict_apim`` is set (then it connects anyway so the failure can be seen).
    ``service_mode`` (``default`` or ``serverless``, when known) is shown in the status bar and the trace, so the path a
    message takes behind the service is visible.
    ``protocol`` is the hub protocol to speak (JSON or MessagePack); the user can switch it, as the transport. A
    transport that cannot carry it (ServerSentEvents for MessagePack) is not offered; the caller must not pass one.
    ``connection_factory`` builds the connection (tests inject their own); ``clock`` stamps the lines.
    ``probe_timeout`` bounds each wait of "Probe this connection" (F2), as ``chat probe --timeout`` does.
    ``flow_url`` is the app server's hop stream (``…/flow``, served in the local demo): the Flow view (F11) then draws
    every hop of a message's journey; without it, only the chat's own hops, and a sentence saying why. ``journeys`` is
    the book the hops go into (``chat-demo --record`` shares it with its recorder); a new one by default.
    ``service`` is ``webpubsub`` when the caller knows the app server answers for Azure Web PubSub (the demo); the app
    also learns it from the connection (the negotiate answer). On Web PubSub there is one transport (a WebSocket) and
    one subprotocol: the transport and protocol selectors are disabled and the status bar names the subprotocol.
    """

    CSS_PATH = "app.tcss"
    TITLE = "SignalR Chatroom"
    # Under 100 columns the Send and Echo buttons give way to the message field (Enter and ctrl+e still work).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]  # noqa: RUF012 (Textual declares an instance attribute)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+e", "echo", "Echo", priority=True),
        Binding("ctrl+t", "choose_transport", "Transport", priority=True),
        Binding("ctrl+o", "choose_protocol", "Protocol", priority=True),
        Binding("f12", "toggle_trace", "Trace", priority=True),
        Binding("f11", "toggle_flow", "Flow", priority=True),
        Binding("alt+up", "flow_previous", "Previous journey", show=False, priority=True),
        Binding("alt+down", "flow_next", "Next journey", show=False, priority=True),
        Binding("ctrl+r", "reconnect", "Reconnect", priority=True),
        Binding("f5", "resend", "Resend", priority=True),
        Binding("f1", "help", "Help"),
        Binding("f2", "probe", "Probe", show=False),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]
    _MAIN_ONLY = frozenset(
        {
            "echo",
            "choose_transport",
            "choose_protocol",
            "toggle_trace",
            "toggle_flow",
            "flow_previous",
            "flow_next",
            "reconnect",
            "help",
            "clear",
            "resend",
            "probe",
        }
    )

    def __init__(
        self,
        url: str,
        transport: TransportChoice,
        name: str | None = None,
        headers: Mapping[str, str] | None = None,
        connection_factory: ConnectionFactory = ServiceConnection,
        gateway_profile: str | None = None,
        profile_switcher: Callable[[str], Awaitable[None]] | None = None,
        strict_apim: bool = False,
        *,
        service_mode: str | None = None,
        clock: Callable[[], datetime] = datetime.now,
        default_name: str | None = None,
        protocol: HubProtocol = JSON,
        probe_timeout: float = DEFAULT_TIMEOUT,
        service: str | None = None,
        flow_url: str | None = None,
        journeys: JourneyBook | None = None,
    ) -> None:
        super().__init__()
        self.hub_url = url
        self.transport = transport
        self.protocol = protocol
        self.user_name = name
        self.headers = dict(headers or {})
        self.connection_factory = connection_factory
        self.gateway_profile = gateway_profile
        self.profile_switcher = profile_switcher
        self.strict_apim = strict_apim
        self.service_mode = service_mode
        self.service = service
        """``webpubsub`` once the app is on Azure Web PubSub (given, or learned from the connection)."""
        self.webpubsub_protocol: str | None = RELIABLE_JSON_SUBPROTOCOL if service == WEBPUBSUB else None
        """The Web PubSub subprotocol of the connection, once on Web PubSub."""
        self.clock = clock
        self.default_name = default_name or random_default_name()
        self.connection: ChatConnection | None = None
        self._generation = 0
        self._reported_failure = -1
        self._outbox: asyncio.Queue[tuple[str, tuple[str, str]]] = asyncio.Queue()
        self._secrets = [v for k, v in self.headers.items() if k.lower() in SECRET_HEADERS and v]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ui_thread = threading.get_ident()
        self._in_flight: dict[tuple[str, str], float] = {}
        # Messages of the user that did not reach the hub, in the order they were typed, until F5 resends them.
        self.undelivered: list[tuple[str, tuple[str, str]]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._switch_task: asyncio.Task[None] | None = None
        self._round_trip_ms: float | None = None
        self.probe_timeout = probe_timeout
        self.probe_run: ProbeRun | None = None
        """The latest probe of this connection (running or ended), ``None`` before the first."""
        self.flow_url = flow_url
        self.journeys = journeys if journeys is not None else JourneyBook()
        """Every hop seen (the stream's and the chat's own), grouped into journeys (shared with a recorder)."""
        self.flow_pinned: str | None = None
        """The flow id of the journey the Flow view replays (a selected line), ``None`` while it follows the newest."""
        self.flow_feed: FlowFeed | None = None
        self._flow_state = OUTSIDE_THE_DEMO if flow_url is None else "connecting to the flow stream…"
        self._flow_keys: dict[tuple[str, str], tuple[str, str]] = {}
        self._sending: tuple[str, tuple[str, str]] | None = None
        self._sending_since = 0.0
        self._flow_redraw_due = False
        self._replay_shown: int | None = None
        # The messages still waiting in the queue that later hub messages and trace steps are added to (one dispatch
        # per burst); None when the next one must be posted.
        self._arrivals: list[Arrival] | None = None
        self._traces: TraceRecorded | None = None

    # ----------------------------------------------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        yield Header()
        yield StatusBar(id="status")
        yield ChatLog(id="chat-log")
        yield TracePanel(id="trace", clean=self._clean_trace)
        yield FlowPanel(id="flow")
        with Horizontal(id="compose-bar"):
            yield Input(placeholder="Message — Enter broadcasts, ctrl+e echoes", id="message")
            yield Button("Send", id="send", variant="primary")
            yield Button("Echo", id="echo")
            yield TransportSelector(self.transport, self.protocol, id="transport")
            yield ProtocolSelector(self.protocol, id="protocol")
            yield Static("", id="service-label")  # in the selectors' place on Web PubSub
        yield Footer()

    @property
    def chat_log(self) -> ChatLog:
        return self.query_one("#chat-log", ChatLog)

    @property
    def trace_panel(self) -> TracePanel:
        return self.query_one("#trace", TracePanel)

    @property
    def flow_panel(self) -> FlowPanel:
        return self.query_one("#flow", FlowPanel)

    @property
    def status_bar(self) -> StatusBar:
        return self.query_one("#status", StatusBar)

    def on_mount(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._ui_thread = threading.get_ident()
        self.trace_panel.display = False
        self.flow_panel.display = False
        if self.flow_url is not None:
            self._follow_flow(self.flow_url)
        self._title_trace()
        self.sub_title = self._subtitle()
        if self.service == WEBPUBSUB:
            self._show_service()
        self._refresh_status()
        self.set_interval(1.0, self._refresh_status)
        self._send_loop()
        if not self.is_headless:
            # A terminal app gets SIGTERM from `kill` or a closing terminal: leave the chat cleanly, exit 0.
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    self._loop.add_signal_handler(sig, self._quit_soon)
        if self.user_name is None:
            self.push_screen(NamePrompt(self.default_name), self._name_chosen)
        else:
            self._connect()
        self.query_one("#message", Input).focus()

    def _subtitle(self) -> str:
        who = self.user_name or "…"
        return f"{who} @ {redact_url(self.hub_url)}"

    def _name_chosen(self, name: str | None) -> None:
        if not name:
            return
        self.user_name = name
        self.sub_title = self._subtitle()
        self._connect()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Chat keys act on the chat screen only; on the name prompt and the help screen they do nothing.
        if action in self._MAIN_ONLY and isinstance(self.screen, ModalScreen):
            return False
        # On Web PubSub there is no transport or hub protocol to choose (the footer leaves those keys out).
        return not (self.service == WEBPUBSUB and action in ("choose_transport", "choose_protocol"))

    # ----------------------------------------------------------------------------------------------- lines

    def show_line(self, kind: LineKind, text: str, sender: str = "") -> None:
        """Add a local line (note or error) to the message view (a no-op once the app is shutting down)."""
        with contextlib.suppress(NoMatches):
            self.chat_log.add(ChatLine(kind, self.clock(), sender, self._scrub(text)))

    def _note(self, text: str) -> None:
        self.show_line(LineKind.NOTE, text)

    def _error(self, text: str) -> None:
        self.show_line(LineKind.ERROR, text)

    def _scrub(self, text: str) -> str:
        """``text`` without secrets: token/key patterns and the literal values of our secret headers."""
        text = redact_text(text)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    # ----------------------------------------------------------------------------------------------- connection

    def _on_ui_thread(self) -> bool:
        return threading.get_ident() == self._ui_thread or self._loop is None

    def _post(self, message: Message) -> None:
        """Post from whatever thread the client calls back on (the UI loop's own thread is the common case).

        Hub messages that arrive after this one go into a new :class:`MessagesArrived`, so none overtakes it.
        """
        if self._on_ui_thread():
            self._arrivals = None
            self.post_message(message)
        else:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._post, message)

    def _arrive(self, arrival: Arrival) -> None:
        """Queue a hub message for the chat: into the :class:`MessagesArrived` still waiting, else a new one."""
        if not self._on_ui_thread():
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._arrive, arrival)
            return
        if self._arrivals is None:
            batch = [arrival]
            if self.post_message(MessagesArrived(batch)):  # not while the app closes
                self._arrivals = batch
        else:
            self._arrivals.append(arrival)

    def _hub_message(self, generation: int, target: str, *arguments: Any) -> None:
        # The sample's callback: (name, message); nothing is shown for a falsy message (§5).
        sender = arguments[0] if arguments else ""
        message = arguments[1] if len(arguments) > 1 else None
        if not message:
            return
        self._arrive(Arrival(generation, target, _as_text(sender), _as_text(message), self.clock().timestamp()))

    def _record_trace(self, event: TraceEvent) -> None:
        """Queue a trace step for the panel: into the :class:`TraceRecorded` still waiting, else a new one."""
        if not self._on_ui_thread():
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._record_trace, event)
            return
        waiting = self._traces
        if waiting is None:
            message = TraceRecorded(self._generation, event)
            if self.post_message(message):  # not while the app closes
                self._traces = message
        else:
            waiting.events.append(event)

    def _trace(self, event: TraceEvent) -> None:
        self._record_trace(event)
        sending = self._sending
        if sending is not None and event.kind == "send":
            self._own_send(event, sending)

    def _own_send(self, event: TraceEvent, sending: tuple[str, tuple[str, str]]) -> None:
        """The frame of the message being sent left: its hop, with the flow id every role computes for it."""
        found = send_hop(event, self._client_side(), self._sending_since)
        if found is None:
            return
        hop, flow, target = found
        if target != sending[0]:
            return
        self._sending = None  # one message, one send hop (a frame sent again after a reconnect is not the message)
        sender, text = sending[1]
        key = (sender, text + ECHO_SUFFIX if target == "echo" else text)
        self._flow_keys[key] = (flow, target)
        while len(self._flow_keys) > MAX_IN_FLIGHT:
            self._flow_keys.pop(next(iter(self._flow_keys)))
        self._post(HopArrived(hop, key))

    @work(exclusive=True, group="connection", exit_on_error=False)
    async def _connect(self) -> None:
        """Replace the current connection by a new one with the chosen transport, switching the demo gateway first."""
        await self._drop_connection()
        choice, protocol = self.transport, self.protocol
        problem = why_not(choice, protocol)
        if problem is not None:
            self._error(f"Cannot connect: {problem}")
            return
        # Web PubSub has one WebSocket API at the gateway: no SignalR profile to switch to.
        on_webpubsub = WEBPUBSUB in (self.service, self.gateway_profile)
        if self.gateway_profile is not None and not on_webpubsub and choice.family != self.gateway_profile:
            if self.profile_switcher is not None and not self.strict_apim:
                self._note(
                    "APIM serves either WebSockets or SSE/LongPolling on client/, never both: "
                    f"switching the local gateway to the {choice.family} profile"
                )
                try:
                    await self._switch_profile(choice.family)
                except Exception as exc:
                    self._error(f"Could not switch the gateway to the {choice.family} profile: {describe_error(exc)}")
                    return
            else:
                self._note(
                    f"The gateway serves APIM profile {self.gateway_profile}, which has no API for {choice.label} "
                    "on client/ — connecting anyway to show the failure (the gateway is not switched)"
                )
        self._generation += 1
        generation = self._generation
        self._in_flight.clear()
        self._round_trip_ms = None
        connection = self.connection_factory(
            self.hub_url, transport=choice, headers=self.headers or None, trace=self._trace, protocol=protocol
        )
        for target in HUB_TARGETS:
            connection.on(target, partial(self._hub_message, generation, target))
        connection.on_state_change(lambda old, new: self._post(StateChanged(generation, old, new)))
        connection.on_close(lambda error: self._post(ConnectionFailed(generation, error, during_start=False)))
        self.connection = connection
        if on_webpubsub:
            self._note(f"Connecting to {redact_url(self.hub_url)} (Azure Web PubSub)…")
        else:
            self._note(f"Connecting to {redact_url(self.hub_url)} with {choice.label} and {protocol_label(protocol)}…")
        self._refresh_status()
        try:
            await connection.start()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._post(ConnectionFailed(generation, exc, during_start=True))
            return
        self._learn_service(connection)
        self._refresh_status()
        used = connection.transport_name or choice.label
        connected = connection.connected_url
        where = f"{host_of(connected)} {self._host_label(connected)}" if connected else "?"
        self._note(f"Connected with {used} and {self._protocol_label()} to {where}")
        self._trace_service_path()
        self._outbox.put_nowait(("broadcastMessage", (SYSTEM_SENDER, f"{self.user_name} JOINED")))

    def _learn_service(self, connection: ChatConnection) -> None:
        """After a start: whether the app server answered for Web PubSub, and the UI to match (either way)."""
        subprotocol = webpubsub_protocol_of(connection)
        before = (self.service, self.webpubsub_protocol)
        if subprotocol is not None:
            self.service, self.webpubsub_protocol = WEBPUBSUB, subprotocol
        elif self.service == WEBPUBSUB:
            self.service, self.webpubsub_protocol = None, None  # the app server answers for SignalR again
        if (self.service, self.webpubsub_protocol) != before:
            self._show_service()

    def _show_service(self) -> None:
        """On Web PubSub the selectors do not apply: disable them and say why; on SignalR they are back."""
        on_webpubsub = self.service == WEBPUBSUB
        self.title = "Web PubSub Chatroom" if on_webpubsub else self.TITLE
        reason = self._webpubsub_reason() if on_webpubsub else None
        for label in self.query("#service-label").results(Static):
            label.update(f"Web PubSub · {self.webpubsub_protocol or RELIABLE_JSON_SUBPROTOCOL}")
            label.tooltip = reason
            label.display = on_webpubsub
        for selector in self.query("#transport, #protocol").results(Select):
            selector.disabled = on_webpubsub
            selector.display = not on_webpubsub
            if on_webpubsub:
                selector.tooltip = reason
            elif isinstance(selector, TransportSelector):
                selector.set_protocol(self.protocol)  # its own tooltip again
            else:
                selector.tooltip = ProtocolSelector.TOOLTIP
        self._title_trace()
        self.refresh_bindings()

    def _webpubsub_reason(self) -> str:
        subprotocol = self.webpubsub_protocol or "its JSON subprotocol"
        return f"Azure Web PubSub: one WebSocket speaking {subprotocol}; {SIGNALR_ONLY}"

    def _protocol_label(self) -> str:
        """The protocol as the status bar and the notes name it: the hub protocol, or the Web PubSub subprotocol."""
        if self.service == WEBPUBSUB:
            return self.webpubsub_protocol or "Web PubSub"
        return protocol_label(self.protocol)

    def _refuse_on_webpubsub(self) -> bool:
        """On Web PubSub, say that a transport or protocol choice does not apply; ``True`` when refused."""
        if self.service != WEBPUBSUB:
            return False
        self._note(f"Not switched: {self._webpubsub_reason()}")
        return True

    async def _switch_profile(self, family: str) -> None:
        """Have the demo gateway serve ``family``; one switch at a time, and never abandoned halfway.

        A newer transport pick cancels the connection worker, but not a gateway restart in progress (the demo would
        lose track of a half-started gateway process): the switch runs as its own task, and a later worker waits for
        it before deciding whether another switch is needed.
        """
        assert self.profile_switcher is not None
        while self._switch_task is not None and not self._switch_task.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._switch_task)
        if self.gateway_profile == family:
            return
        self._switch_task = self._keep(self._run_switch(self.profile_switcher, family))
        await asyncio.shield(self._switch_task)

    async def _run_switch(self, switcher: Callable[[str], Awaitable[None]], family: str) -> None:
        await switcher(family)
        self.gateway_profile = family
        self._refresh_status()

    def _keep(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coroutine`` as a task the app keeps until it ends (awaited again at exit)."""
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._background.discard(finished)
            if not finished.cancelled():
                finished.exception()  # retrieved: whoever awaited it has reported it

        task.add_done_callback(done)
        return task

    async def _drop_connection(self) -> None:
        """Stop the current connection (bounded wait); its late events are ignored from now on.

        The stop runs as its own task, so cancelling the caller (a newer transport pick) never leaves a connection
        half-closed with its sockets open.
        """
        connection, self.connection = self.connection, None
        self._generation += 1
        if connection is None:
            return
        stopping = self._keep(self._stop(connection))
        with contextlib.suppress(Exception):
            await asyncio.shield(stopping)
        self._refresh_status()

    @staticmethod
    async def _stop(connection: ChatConnection) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(connection.stop(), STOP_TIMEOUT)

    @work(group="sender", exit_on_error=False)
    async def _send_loop(self) -> None:
        """Deliver queued messages one at a time, in order (one worker: messages never overtake each other).

        Each is an invocation whose completion says the hub took it; a message the hub never took is shown as not
        delivered and kept for F5, so nothing the user typed is lost without them seeing it.
        """
        while True:
            target, arguments = await self._outbox.get()
            connection = self.connection
            if connection is None or connection.state is not ConnectionState.CONNECTED:
                # The sample shows the client's refusal (this text) as a _BROADCAST_ line; here it is an error line.
                self._undelivered(target, arguments, NOT_CONNECTED)
                continue
            started = time.monotonic()
            self._expect_return(target, arguments, started)  # the broadcast may come back before the completion
            self._sending = (target, arguments)  # the trace of its frame names the invocation id: the flow id
            self._sending_since = time.time()
            try:
                await connection.invoke(target, *arguments, timeout=DELIVERY_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._undelivered(target, arguments, describe_error(exc))
            finally:
                self._sending = None

    def _undelivered(self, target: str, arguments: tuple[str, str], reason: str) -> None:
        """Say that a message did not reach the hub, and keep it for :meth:`action_resend`."""
        sender, text = arguments
        if sender == SYSTEM_SENDER:
            self._error(reason)  # the JOINED notice is the chat's own, not something the user typed
            return
        self.undelivered.append((target, arguments))
        what = "Echo" if target == "echo" else "Message"
        self._error(f'{what} not delivered: "{self._scrub(text)}" — {reason} — press F5 to resend')

    def action_resend(self) -> None:
        """Queue every undelivered message again, in the order it was typed."""
        if not self.undelivered:
            self._note("Nothing to resend: every message reached the hub")
            return
        pending, self.undelivered = self.undelivered, []
        self._note(f"Resending {len(pending)} message(s)…")
        for item in pending:
            self._outbox.put_nowait(item)

    def _expect_return(self, target: str, arguments: tuple[str, str], started: float) -> None:
        """Remember when a message left, to time its way back (our own broadcast, or the echo) for the status bar."""
        sender, text = arguments
        key = (sender, text + ECHO_SUFFIX if target == "echo" else text)
        self._in_flight[key] = started
        while len(self._in_flight) > MAX_IN_FLIGHT:
            self._in_flight.pop(next(iter(self._in_flight)))

    def send_broadcast(self, text: str) -> None:
        """Queue ``broadcastMessage(name, text)``; empty text is not sent (the sample's Send button)."""
        if text:
            self._outbox.put_nowait(("broadcastMessage", (self.user_name or "", text)))

    def send_echo(self, text: str) -> None:
        """Queue ``echo(name, text)``; sent even when empty, like the sample's Echo button."""
        self._outbox.put_nowait(("echo", (self.user_name or "", text)))

    # ----------------------------------------------------------------------------------------------- handlers

    def on_messages_arrived(self, message: MessagesArrived) -> None:
        if message.arrivals is self._arrivals:
            self._arrivals = None  # later ones go into a new message
        try:
            chat_log = self.chat_log
        except NoMatches:  # late messages while the app shuts down
            return
        for arrival in message.arrivals:
            if arrival.generation == self._generation:
                self._show_arrival(arrival, chat_log)

    def _show_arrival(self, arrival: Arrival, chat_log: ChatLog) -> None:
        started = self._in_flight.pop((arrival.sender, arrival.text), None)
        if started is not None:
            # Client → gateway → service → upstream → app server → REST → service → client: the chat's round trip.
            self._round_trip_ms = (time.monotonic() - started) * 1000.0
            self._refresh_status()
        flow = self._flow_keys.pop((arrival.sender, arrival.text), None)
        if flow is not None:
            rtt = self._round_trip_ms if started is not None else None
            hop = deliver_hop(flow[0], flow[1], self._client_side(), rtt, time.time())
            if hop is not None:
                self.on_hop_arrived(HopArrived(hop))
        at = datetime.fromtimestamp(arrival.at)
        chat_log.add(ChatLine.from_hub(arrival.sender, self._scrub(arrival.text), self.user_name, at))

    def on_state_changed(self, message: StateChanged) -> None:
        if message.generation != self._generation:
            return
        self._refresh_status()
        # The client reconnects by itself (negotiating again through the app server); say so in the chat.
        if message.new is ConnectionState.RECONNECTING and message.old is ConnectionState.CONNECTED:
            self._error("Connection lost — reconnecting…")
        elif message.new is ConnectionState.CONNECTED and message.old is ConnectionState.RECONNECTING:
            connection = self.connection
            used = connection.transport_name if connection else None
            where = host_of(connection.connected_url) if connection and connection.connected_url else "?"
            self._note(f"Reconnected with {used or self.transport.label} to {where}")

    def on_trace_recorded(self, message: TraceRecorded) -> None:
        # Every connection's steps are kept, also the close of one just replaced: the trace is a log.
        if message is self._traces:
            self._traces = None  # later steps go into a new message
        with contextlib.suppress(NoMatches):  # the close of a connection stopped while the app shuts down
            panel = self.trace_panel
            for event in message.events:
                panel.record(event)

    def _clean_trace(self, event: TraceEvent) -> TraceEvent:
        """``event`` as the trace panel shows it: no secrets, neither patterns nor the values of our secret headers."""
        return dataclasses.replace(event, url=self._scrub(redact_url(event.url)), detail=self._scrub(event.detail))

    # ----------------------------------------------------------------------------------------------- flow

    @work(group="flow", exit_on_error=False)
    async def _follow_flow(self, url: str) -> None:
        """Follow the app server's hop stream for as long as the app runs (it reconnects by itself)."""
        feed = self.flow_feed = FlowFeed(
            url, lambda hop: self._post(HopArrived(hop)), lambda text: self._post(FlowStateChanged(text))
        )
        await feed.run()

    def _client_side(self) -> ClientSide:
        """What the chat's own hops say of its connection: id, transport, where it goes, service and mode."""
        connection = self.connection
        connected = connection.connected_url if connection is not None else None
        label = self._host_label(connected) if connected else ("via gateway" if self.gateway_profile else "")
        # A ClientEndpoint other than the service's own host is how APIM is put in front of the service.
        lifelines = {"(app server)": Lifeline.APP, "via gateway": Lifeline.APIM, "via ClientEndpoint": Lifeline.APIM}
        towards = lifelines.get(label, Lifeline.SERVICE)
        return ClientSide(
            connection_id=connection.connection_id if connection is not None else None,
            transport=connection.transport_name if connection is not None else None,
            towards=towards,
            service=WEBPUBSUB if self.service == WEBPUBSUB else "signalr",
            mode=self.service_mode,
        )

    def on_hop_arrived(self, message: HopArrived) -> None:
        """Keep the hop in its journey; the Flow view follows it (or goes on replaying the selected line)."""
        hop = message.hop
        self.journeys.add(hop)
        if message.message is not None and hop.flow_id is not None:
            self.journeys.label_message(hop.flow_id, *message.message)
        self._schedule_flow_redraw()

    def on_flow_state_changed(self, message: FlowStateChanged) -> None:
        self._flow_state = message.text
        self._schedule_flow_redraw()

    def _schedule_flow_redraw(self) -> None:
        """Redraw the Flow view soon (a burst of hops costs one redraw); nothing while it is hidden."""
        if self._flow_redraw_due:
            return
        with contextlib.suppress(NoMatches):
            if self.flow_panel.display:
                self._flow_redraw_due = True
                self.set_timer(0.05, self.refresh_flow)

    def shown_journey(self) -> Journey | None:
        """The journey the Flow view draws: the selected line's, else the newest."""
        if self.flow_pinned is not None:
            return self.journeys.get(self.flow_pinned)
        return self.journeys.latest()

    def flow_context(self) -> FlowContext:
        """The chat's own connection, for the facts the hops do not say."""
        connection = self.connection
        transport = connection.transport_name if connection is not None else None
        side = self._client_side()
        return FlowContext(
            service=side.service,
            mode=self.service_mode,
            transport=transport or (None if self.service == WEBPUBSUB else self.transport.label),
            via_gateway=side.towards is Lifeline.APIM,
        )

    def refresh_flow(self) -> None:
        """Draw the shown journey in the Flow view now (when the view is shown)."""
        self._flow_redraw_due = False
        try:
            panel = self.flow_panel
        except NoMatches:
            return
        if not panel.display:
            return
        journey = self.shown_journey()
        hops: list[Hop] = diagram_order(journey.arrows()) if journey is not None else []
        if self._replay_shown is not None:
            hops = hops[: self._replay_shown]
        panel.show(hops, self._flow_caption(journey), self.flow_context(), self._flow_note())

    def _flow_caption(self, journey: Journey | None) -> str:
        if journey is None:
            return "Live · no message yet: send one and watch its hops"
        flow_id = journey.flow_id or "?"
        if journey.name is not None and journey.text is not None:
            line = f' "{self._scrub(journey.text)[:60]}" by {journey.name[:32]}'
        else:
            line = " a message this chat did not send"
        span = message_span_ms(journey.hops)
        took = f" in {span:.1f} ms" if span is not None else ""
        how = "Replaying" if self.flow_pinned is not None else "Live"
        return f"{how} · {len(journey.arrows())} hops{took} ·{line} · flow {flow_id}"

    def _flow_note(self) -> str:
        keys = "alt+↓ back to live" if self.flow_pinned is not None else "click a line or alt+↑: replay"
        return f"{self._flow_state} · {keys}"

    def action_toggle_flow(self) -> None:
        panel = self.flow_panel
        panel.display = not panel.display
        if panel.display:
            self.refresh_flow()

    def show_journey_of(self, sender: str, text: str) -> bool:
        """Replay the journey of the chat line ``(sender, text)`` in the Flow view; ``False`` when none is known."""
        journey = self.journeys.for_message(sender, text)
        if journey is None or journey.flow_id is None:
            return False
        self.replay(journey.flow_id)
        return True

    def replay(self, flow_id: str | None) -> None:
        """Show the journey ``flow_id`` hop by hop (``None``: follow the newest message again)."""
        self.flow_pinned = flow_id
        self.flow_panel.display = True
        self._replay_shown = 0 if flow_id is not None else None
        self.refresh_flow()
        if flow_id is not None:
            self.set_timer(REPLAY_STEP, partial(self._replay_step, flow_id))

    def _replay_step(self, flow_id: str) -> None:
        if self.flow_pinned != flow_id or self._replay_shown is None:
            return
        journey = self.journeys.get(flow_id)
        total = len(journey.arrows()) if journey is not None else 0
        self._replay_shown += 1
        if self._replay_shown >= total:
            self._replay_shown = None  # the whole journey: new hops of it show at once from now on
        else:
            self.set_timer(REPLAY_STEP, partial(self._replay_step, flow_id))
        self.refresh_flow()

    def _journey_lines(self) -> list[str]:
        """Flow ids of the chat lines whose journey is known, top to bottom (each once)."""
        seen: list[str] = []
        for line in self.chat_log.records:
            journey = self.journeys.for_message(line.sender, line.text)
            if journey is not None and journey.flow_id is not None and journey.flow_id not in seen:
                seen.append(journey.flow_id)
        return seen

    def action_flow_previous(self) -> None:
        """Replay the journey of the chat line above the one shown (the newest one first)."""
        flows = self._journey_lines()
        if not flows:
            self._note("No journey to replay yet: send a message (the chat knows the journeys of its own messages)")
            return
        index = flows.index(self.flow_pinned) if self.flow_pinned in flows else len(flows)
        self.replay(flows[max(0, index - 1)])

    def action_flow_next(self) -> None:
        """Replay the journey of the chat line below the one shown; past the newest, follow new messages again."""
        flows = self._journey_lines()
        if self.flow_pinned not in flows:
            self.replay(None)
            return
        index = flows.index(self.flow_pinned) + 1
        self.replay(flows[index] if index < len(flows) else None)

    @on(ChatLog.Selected)
    def _line_selected(self, event: ChatLog.Selected) -> None:
        line = event.line
        if not self.show_journey_of(line.sender, line.text):
            self.flow_panel.display = True
            self.refresh_flow()
            self.notify(
                "No journey known for this line: the chat follows the journeys of its own messages",
                title="Flow",
                timeout=4,
            )

    def on_connection_failed(self, message: ConnectionFailed) -> None:
        if message.generation != self._generation or message.generation == self._reported_failure:
            return
        self._reported_failure = message.generation
        reason = describe_error(message.error)
        if message.during_start:
            self._error(f"Could not connect: {reason} — press ctrl+r to retry")
        else:
            self._error(f"Connection closed: {reason} — press ctrl+r to reconnect")
        self._refresh_status()

    @on(Input.Submitted, "#message")
    def _message_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value:
            self.send_broadcast(event.value)
            event.input.value = ""

    @on(Button.Pressed, "#send")
    def _send_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        field = self.query_one("#message", Input)
        if field.value:
            self.send_broadcast(field.value)
            field.value = ""
        field.focus()

    @on(Button.Pressed, "#echo")
    def _echo_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_echo()

    @on(Select.Changed, "#transport")
    def _transport_picked(self, event: Select.Changed) -> None:
        value = event.value
        if value != event.select.value:
            return  # a stale echo of an earlier programmatic change (palette, rapid picks): the selector moved on
        if isinstance(value, TransportChoice) and value != self.transport:
            self.switch_transport(value)
            # Back to typing: Enter on the selector would open it again instead of sending.
            self.query_one("#message", Input).focus()

    @on(Select.Changed, "#protocol")
    def _protocol_picked(self, event: Select.Changed) -> None:
        value = event.value
        if value != event.select.value:
            return  # a stale echo of an earlier programmatic change
        if isinstance(value, str) and value != self.protocol.name:
            self.switch_protocol(protocol_named(value))
            self.query_one("#message", Input).focus()

    # ----------------------------------------------------------------------------------------------- actions

    def switch_transport(self, choice: TransportChoice) -> None:
        """Use ``choice`` from now on and reconnect with it (the selector follows).

        A transport that cannot carry the current hub protocol is refused with the reason on screen.
        """
        if self._refuse_on_webpubsub():
            return
        problem = why_not(choice, self.protocol)
        if problem is not None:
            others = [protocol_label(p) for p in map(protocol_named, PROTOCOL_NAMES) if carries(choice, p)]
            instead = f", or {' or '.join(others)} (ctrl+o)" if others else ""
            self._error(f"Still {self.transport.label}: {problem}{instead}")
            choice = self.transport  # the selector goes back to the transport in use
        else:
            self.transport = choice
            self._reconnect_with_choices()
        for selector in self.query("#transport").results(TransportSelector):
            if selector.value != choice:
                selector.value = choice

    def switch_protocol(self, protocol: HubProtocol) -> None:
        """Speak ``protocol`` from now on and reconnect with it (the selectors follow).

        Refused with the reason on screen when the current transport cannot carry it (MessagePack over
        ServerSentEvents): the user picks another transport first.
        """
        if self._refuse_on_webpubsub():
            return
        problem = why_not(self.transport, protocol)
        if problem is not None:
            self._error(f"Still {protocol_label(self.protocol)}: {problem} first (ctrl+t)")
            protocol = self.protocol
        else:
            self.protocol = protocol
            for transports in self.query("#transport").results(TransportSelector):
                transports.set_protocol(protocol)
            self._title_trace()
            self._reconnect_with_choices()
        for selector in self.query("#protocol").results(ProtocolSelector):
            if selector.value != protocol.name:
                selector.value = protocol.name

    def _reconnect_with_choices(self) -> None:
        self._refresh_status()
        if self.user_name is not None:
            self._connect()

    def action_echo(self) -> None:
        # ctrl+e is a priority binding, so it can overtake keys typed just before it that still wait in the input's
        # queue (fast typing, a paste, tmux send-keys): read the input only after it has handled them.
        self.query_one("#message", Input).call_later(self._echo_input)

    def _echo_input(self) -> None:
        field = self.query_one("#message", Input)
        self.send_echo(field.value)
        field.value = ""
        field.focus()

    def action_toggle_trace(self) -> None:
        panel = self.trace_panel
        panel.display = not panel.display
        if panel.display:
            panel.redraw()

    def action_choose_transport(self) -> None:
        if self._refuse_on_webpubsub():
            return
        selector = self.query_one("#transport", TransportSelector)
        selector.focus()
        selector.action_show_overlay()

    def action_choose_protocol(self) -> None:
        if self._refuse_on_webpubsub():
            return
        selector = self.query_one("#protocol", ProtocolSelector)
        selector.focus()
        selector.action_show_overlay()

    def action_reconnect(self) -> None:
        if self.user_name is not None:
            self._connect()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_clear(self) -> None:
        self.chat_log.clear_messages()

    # ----------------------------------------------------------------------------------------------- probe

    def probe_options(self) -> ProbeOptions:
        """What "Probe this connection" probes: the chat's hub URL, with the chat's subscription key if it has one
        (the probe sends it as a server-side client does, and never shows it)."""
        wanted = SUBSCRIPTION_KEY_HEADER.lower()
        key = next((value for name, value in self.headers.items() if name.lower() == wanted and value), None)
        return ProbeOptions(url=self.hub_url, subscription_key=key, timeout=self.probe_timeout)

    def action_probe(self) -> None:
        """F2: show the latest probe (running or ended); the first time, start one."""
        if self.probe_run is None:
            self.start_probe()
        else:
            self._show_probe()

    def start_probe(self) -> None:
        """Probe the chat's connection in a worker and show the panel; while a probe runs, only show that one.

        The probe makes connections of its own: the chat's connection is left alone and keeps working.
        """
        run = self.probe_run
        if run is None or run.done:
            number = run.number + 1 if run is not None else 1
            run = self.probe_run = ProbeRun(number, self.probe_options(), self.clock())
            self._run_probe(run)
        self._show_probe()

    def _show_probe(self) -> None:
        run = self.probe_run
        if run is None:
            return
        if isinstance(self.screen, ProbeScreen):
            self.screen.show_run(run)
        else:
            self.push_screen(ProbeScreen(run, self._scrub, self.start_probe))

    @work(exclusive=True, group="probe", exit_on_error=False)
    async def _run_probe(self, run: ProbeRun) -> None:
        """Run the probe on the UI's event loop (it is asyncio throughout); each step and the end become messages."""
        number = run.number

        def on_step(step: StepResult) -> None:
            self._post(ProbeStepDone(number, step))

        try:
            report = await run_probe(run.options, on_step=on_step)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a fault of the probe itself (network trouble is in the report)
            self._post(ProbeFinished(number, None, describe_error(exc)))
            return
        self._post(ProbeFinished(number, report))

    def on_probe_step_done(self, message: ProbeStepDone) -> None:
        run = self.probe_run
        if run is None or message.run != run.number:
            return
        run.steps.append(message.step)
        self._refresh_probe_screen()

    def on_probe_finished(self, message: ProbeFinished) -> None:
        run = self.probe_run
        if run is None or message.run != run.number:
            return
        run.finish(message.report, None if message.error is None else self._scrub(message.error))
        self._refresh_probe_screen()
        shown = any(isinstance(screen, ProbeScreen) for screen in self.screen_stack)
        hint = "" if shown else " — F2 shows the verdict"
        if message.report is not None:
            self._note(f"Probe done in {run.elapsed_s:.1f} s: {summary_line(message.report)}{hint}")
        else:
            self._error(f"The probe stopped: {run.error}{hint}")

    def _refresh_probe_screen(self) -> None:
        run = self.probe_run
        if run is None:
            return
        for screen in self.screen_stack:
            if isinstance(screen, ProbeScreen):
                screen.show_run(run)

    async def action_quit(self) -> None:
        """Close the connection cleanly (bounded), then exit."""
        self.workers.cancel_group(self, "connection")
        self.workers.cancel_group(self, "probe")
        self.workers.cancel_group(self, "flow")
        await self._drop_connection()
        self.exit()

    async def on_unmount(self) -> None:
        # However the app ends (quit, a crash, a signal, a test leaving run_test): close the connection cleanly,
        # and let stops and gateway switches still in progress finish (each is bounded).
        await self._drop_connection()
        if self._background:
            await asyncio.wait(set(self._background), timeout=STOP_TIMEOUT + 5)

    def _quit_soon(self) -> None:
        self.call_later(self.action_quit)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for choice in TransportChoice if self.service != WEBPUBSUB else ():
            if carries(choice, self.protocol):
                yield SystemCommand(
                    f"Transport: {choice.label}",
                    f"Reconnect using {choice.label} (APIM profile {choice.family})",
                    partial(self.switch_transport, choice),
                )
        for protocol in map(protocol_named, PROTOCOL_NAMES if self.service != WEBPUBSUB else ()):
            label = protocol_label(protocol)
            yield SystemCommand(
                f"Protocol: {label}",
                f"Reconnect speaking the {label} hub protocol ({protocol.transfer_format.value.lower()})",
                partial(self.switch_protocol, protocol),
            )
        yield SystemCommand(
            "Toggle network trace", "Show or hide the network trace panel (F12)", self.action_toggle_trace
        )
        yield SystemCommand(
            "Toggle flow view",
            "Show or hide the hop-by-hop sequence diagram of the newest message (F11; alt+↑/↓ replays earlier ones)",
            self.action_toggle_flow,
        )
        yield SystemCommand("Clear messages", "Remove all lines from the message view", self.action_clear)
        yield SystemCommand("Reconnect", "Drop the connection and connect again (ctrl+r)", self.action_reconnect)
        yield SystemCommand(
            "Probe this connection",
            "Try every transport through the app server's redirect (and APIM): what works, why not, and the fix "
            "(F2 shows the latest probe)",
            self.start_probe,
        )

    # ----------------------------------------------------------------------------------------------- status

    def _host_label(self, connected_url: str) -> str:
        """Whose host ``connected_url`` is: the app server, the gateway (APIM), the service, or the redirect target."""
        if _endpoint(connected_url) == _endpoint(self.hub_url):
            return "(app server)"
        name = host_of(connected_url).lower()
        if self.gateway_profile is not None or ".azure-api.net" in name:
            return "via gateway"
        if ".service.signalr.net" in name or ".webpubsub.azure.com" in name:
            return "(service, direct)"
        return "via ClientEndpoint"

    def _trace_service_path(self) -> None:
        """One trace row saying how the service reaches the hub in this mode (the hops the client cannot see)."""
        path = SERVICE_PATHS.get(WEBPUBSUB if self.service == WEBPUBSUB else self.service_mode or "")
        if path is not None:
            self._trace(TraceEvent("mode", "", "", "", None, None, None, path, time.time()))

    def _title_trace(self) -> None:
        """The trace panel's title names the hub protocol its frames are in."""
        kind = self.protocol.transfer_format.value.lower()
        title = f"Web PubSub {self._protocol_label()} (text)" if self.service == WEBPUBSUB else None
        with contextlib.suppress(NoMatches):
            self.trace_panel.border_title = f"Network trace · {title or f'{protocol_label(self.protocol)} ({kind})'}"

    def _refresh_status(self) -> None:
        connection = self.connection
        protocol = self._protocol_label()
        if connection is None:
            info = StatusInfo(
                transport=WEBPUBSUB_TRANSPORT if self.service == WEBPUBSUB else None,
                wanted=self.transport,
                profile=self.gateway_profile,
                mode=self.service_mode,
                protocol=protocol,
            )
        else:
            connected = connection.connected_url
            info = StatusInfo(
                state=connection.state,
                transport=connection.transport_name,
                connection_id=connection.connection_id,
                host=host_of(connected) if connected else None,
                host_label=self._host_label(connected) if connected else "",
                rtt_ms=self._round_trip_ms if self._round_trip_ms is not None else connection.last_rtt_ms,
                profile=self.gateway_profile,
                wanted=self.transport,
                mode=self.service_mode,
                protocol=protocol,
            )
        with contextlib.suppress(Exception):
            self.status_bar.show(info)
