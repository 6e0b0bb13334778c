"""One broadcast, watched hop by hop: the whole stack runs with hop events on (every server ``--flow-to`` the UDP
port ``chat-server --flow-port`` collects on), a client sends one chat message, and ``GET /flow`` (Server-Sent Events)
must show that message's journey — the gateway's relay, the service's invoke, the upstream POST or the server
connection to the app server, the app server's REST call or service message back, the service's fan-out to every
client and the gateway's relays down — in order, each hop of the service and the app server with the flow id the
contract derives from the client's connection id and invocation id (SignalR) or ackId (Web PubSub), with timings, and
no secret anywhere in the stream's text. Then ``chat-demo --record FILE`` writes journeys the npm ``mermaid`` package
parses.

SignalR: WebSockets, ServerSentEvents and LongPolling, each through the gateway profile that serves it (``websocket``,
``sse-lp``), in Serverless and in Default mode (docs/architecture.md §3 draws both paths); Web PubSub: the official
JavaScript client through the ``webpubsub`` profile. One stack per mode and profile (module scope); the transports are
the client's choice. Every gateway requires a subscription key, so the stream is checked for it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from flow.hops import Hop, Lifeline, Role
from flow.ids import flow_id
from flow.journey import Journey, JourneyBook
from signalr.client import HubConnection, TransportChoice
from tests.support.mermaid import mermaid_blocks, parse_mermaid_async
from tests.support.processes import Process, free_port, script
from tests.support.stack import ChatServer, start_chat_server, start_emulator, start_gateway, upstream_template
from tests.support.wps_emulator import start_webpubsub_emulator
from tests.support.wps_jspeer import WpsJsPeer
from tests.support.wps_server import start_webpubsub_chat_server

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 10.0
# After the client connected: the connection's own set-up hops (upgrade, connect, the connected event upstream) are
# over before the message is sent, so nothing of them lands near the message's journey.
SETTLE = 0.6
# After the service's fan-out: the gateway's relays down to the clients come a moment later.
TAIL = 0.5
SUBSCRIPTION_HEADER = "Ocp-Apim-Subscription-Key"

TRANSPORTS = {
    "WebSockets": (TransportChoice.WEBSOCKETS, "websocket"),
    "ServerSentEvents": (TransportChoice.SERVER_SENT_EVENTS, "sse-lp"),
    "LongPolling": (TransportChoice.LONG_POLLING, "sse-lp"),
}


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago (for ``chat-server --flow-port``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the stacks --------------------------------------------------------------------------------------------------


@dataclass
class FlowStack:
    """A running stack with hop events on: where clients start, where the hops are served, what must stay secret."""

    mode: str | None
    profile: str
    start_url: str
    """SignalR: the hub URL (``…/chat``); Web PubSub: the app server's negotiate URL."""
    flow_url: str
    access_key: str
    subscription_key: str
    server: ChatServer | None = None
    stoppers: list[Callable[[], int]] = field(default_factory=list)

    def stop(self) -> None:
        for stop in reversed(self.stoppers):
            stop()


@contextlib.contextmanager
def signalr_stack(mode: str, profile: str) -> Iterator[FlowStack]:
    """``signalr-emulator``, ``apim-gateway --profile <profile>`` (subscription key required) and ``chat-server``
    in ``mode``; the servers publish to the UDP port the app server collects on."""
    udp = free_udp_port()
    flow_to = ["--flow-to", f"127.0.0.1:{udp}"]
    key = secrets.token_hex(16)
    server_port = free_port()
    mode_args = ["--service-mode", mode]
    if mode == "serverless":
        mode_args += ["--upstream", upstream_template(server_port)]
    emulator = start_emulator(*mode_args, *flow_to)
    stack = FlowStack(mode, profile, "", "", emulator.access_key, key, stoppers=[emulator.stop])
    try:
        gateway = start_gateway(emulator.base, "--profile", profile, "--subscription-key", key, *flow_to)
        stack.stoppers.append(gateway.stop)
        connection_string = emulator.connection_string_to(gateway.url)
        server = start_chat_server(connection_string, "--service-mode", mode, "--flow-port", str(udp), port=server_port)
        stack.stoppers.append(server.stop)
        if mode == "default":
            server.wait_for_server_connections()
        stack.server = server
        stack.start_url = server.hub_url
        stack.flow_url = server.url + "flow"
        yield stack
    finally:
        stack.stop()


@contextlib.contextmanager
def webpubsub_stack() -> Iterator[FlowStack]:
    """``webpubsub-emulator`` (event handler: the app server), ``apim-gateway --profile webpubsub`` (subscription key
    required) and ``chat-server --service webpubsub``, with hop events on."""
    udp = free_udp_port()
    flow_to = ["--flow-to", f"127.0.0.1:{udp}"]
    key = secrets.token_hex(16)
    server_port = free_port()
    handler = f"http://127.0.0.1:{server_port}/eventhandler"
    emulator = start_webpubsub_emulator(*flow_to, event_handler=handler)
    stack = FlowStack(None, "webpubsub", "", "", emulator.access_key, key, stoppers=[emulator.stop])
    try:
        gateway = start_gateway(emulator.endpoint, "--profile", "webpubsub", "--subscription-key", key, *flow_to)
        stack.stoppers.append(gateway.stop)
        server = start_webpubsub_chat_server(
            emulator.connection_string_to(gateway.url), "--flow-port", str(udp), port=server_port
        )
        stack.stoppers.append(server.stop)
        stack.start_url = server.negotiate_url
        stack.flow_url = server.url + "/flow"
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def flow_stack(request: pytest.FixtureRequest) -> Iterator[FlowStack]:
    """One stack per parameter, ``(mode, profile)``; pytest groups the tests that share one."""
    mode, profile = request.param
    with signalr_stack(mode, profile) as stack:
        yield stack


@pytest.fixture(scope="module")
def wps_stack() -> Iterator[FlowStack]:
    with webpubsub_stack() as stack:
        yield stack


# --- the hop stream ----------------------------------------------------------------------------------------------


class FlowStream:
    """``GET /flow`` read as a peer reads it: the raw text (for the secret check) and the hops its events carry."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.raw = ""
        self.hops: list[Hop] = []
        self.invalid: list[str] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, url: str) -> AsyncIterator[FlowStream]:
        async with aiohttp.ClientSession() as session:
            response = await session.get(url, timeout=aiohttp.ClientTimeout(total=None, sock_connect=TIMEOUT))
            assert response.status == 200, f"GET {url}: {response.status} {await response.text()}"
            assert response.headers["Content-Type"].startswith("text/event-stream")
            stream = cls(response)
            try:
                yield stream
            finally:
                stream._task.cancel()
                with contextlib.suppress(BaseException):
                    await stream._task
                response.close()

    async def _read(self) -> None:
        pending = ""
        async for chunk in self.response.content.iter_any():
            text = chunk.decode("utf-8")
            self.raw += text
            pending += text
            *events, pending = pending.split("\n\n")
            for event in events:
                for line in event.split("\n"):
                    if line.startswith("data: "):
                        try:
                            self.hops.append(Hop.from_json(line[6:].encode()))
                        except ValueError as exc:
                            self.invalid.append(f"{exc}: {line[:200]}")
            self._changed.set()

    async def until(self, done: Callable[[list[Hop]], bool], what: str, timeout: float = TIMEOUT) -> None:
        """Wait (bounded) until ``done(hops)``; the failure shows every hop seen."""
        deadline = time.monotonic() + timeout
        while not done(self.hops):
            left = deadline - time.monotonic()
            if left <= 0:
                shown = "\n".join(_show(h) for h in self.hops[-60:])
                raise AssertionError(f"no {what} on /flow within {timeout} s; hops seen:\n{shown}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)


def _show(hop: Hop) -> str:
    return (
        f"{hop.at:.4f} {hop.role.value:>7} {hop.kind:<17} {hop.source.value}→{hop.target.value} "
        f"flow={hop.flow_id} conn={hop.connection_id} st={hop.status} ms={hop.duration_ms} n={hop.count} "
        f"{hop.label!r}"
    )


# --- the expected journeys ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One hop the journey must have: who reports it, its kind and the lifeline it goes to; ``flow`` whether it must
    carry the message's flow id (the gateway's do not: it reads no message)."""

    role: Role
    kind: str
    target: Lifeline
    flow: bool = True

    def matches(self, hop: Hop) -> bool:
        return hop.role is self.role and hop.kind == self.kind and hop.target is self.target

    def __str__(self) -> str:
        return f"{self.role.value} {self.kind} →{self.target.value}"


RELAY_UP = Step(Role.APIM, "relay", Lifeline.SERVICE, flow=False)
INVOKE = Step(Role.SERVICE, "invoke", Lifeline.SERVICE)
FAN_OUT = Step(Role.SERVICE, "fan-out", Lifeline.OTHERS)
RELAY_DOWN = Step(Role.APIM, "relay", Lifeline.CLIENT, flow=False)

SERVERLESS = (
    RELAY_UP,
    INVOKE,
    Step(Role.SERVICE, "upstream", Lifeline.APP),
    Step(Role.APP, "upstream", Lifeline.APP),
    Step(Role.APP, "rest", Lifeline.SERVICE),
    FAN_OUT,
)
DEFAULT = (
    RELAY_UP,
    INVOKE,
    Step(Role.SERVICE, "server-connection", Lifeline.APP),
    Step(Role.APP, "server-connection", Lifeline.APP),
    Step(Role.APP, "server-connection", Lifeline.SERVICE),
    FAN_OUT,
)
WEBPUBSUB = SERVERLESS
# Hops whose duration is the point of them: a request and its answer.
TIMED = {"upstream", "rest"}


def in_order(journey: Journey, steps: tuple[Step, ...]) -> list[Hop]:
    """The hops of ``journey`` that match ``steps`` one by one, in the journey's order (each step the first match
    after the previous one's). Fails naming the first step it cannot find."""
    found: list[Hop] = []
    position = 0
    for step in steps:
        for index in range(position, len(journey.hops)):
            if step.matches(journey.hops[index]):
                found.append(journey.hops[index])
                position = index + 1
                break
        else:
            shown = "\n".join(_show(h) for h in journey.hops)
            raise AssertionError(f"journey lacks '{step}' after {[str(s) for s in steps[: len(found)]]}:\n{shown}")
    return found


def check_relays_down(journey: Journey, fan_out: Hop, recipients: list[str]) -> None:
    """The gateway relayed the message down to every recipient (by connection id), after the service's fan-out:
    each relay ended after the fan-out began, and the journey draws it after the fan-out (a LongPolling poll too,
    though the poll began long before the message)."""
    at = journey.hops.index(fan_out)
    for connection in recipients:
        relays = [h for h in journey.hops if RELAY_DOWN.matches(h) and h.connection_id == connection]
        assert relays, f"no relay down to {connection} in the journey:\n" + "\n".join(_show(h) for h in journey.hops)
        assert any(h.at >= fan_out.started for h in relays), [_show(h) for h in relays]
        drawn_after = [h for h in relays if journey.hops.index(h) > at]
        assert drawn_after, f"the relay down to {connection} is drawn before the fan-out: {[_show(h) for h in relays]}"


def check_journey(
    stream: FlowStream,
    hops: list[Hop],
    flow: str,
    steps: tuple[Step, ...],
    *,
    sender: str,
    recipients: list[str],
    window: tuple[float, float],
    forbidden: list[str],
    transport: str | None,
    mode: str | None,
    service: str,
) -> Journey:
    """Everything the journey of the message ``flow`` must be, from ``hops`` (the stream's hops as they were once the
    message had arrived everywhere: what a viewer saw then; the clients' goodbyes come later); returns it. The secret
    check reads the stream's whole text, goodbyes included."""
    assert stream.invalid == [], stream.invalid
    book = JourneyBook()
    for hop in hops:
        book.add(hop)
    journey = book.get(flow)
    assert journey is not None, f"no journey {flow}; flow ids seen: {sorted({str(h.flow_id) for h in hops})}"
    found = in_order(journey, steps)

    # Correlated end to end: every hop of the service and the app server carries the flow id the client computes; the
    # gateway's relay up is the sender's, by connection id.
    for step, hop in zip(steps, found, strict=True):
        if step.flow:
            assert hop.flow_id == flow, _show(hop)
    relay_up = found[steps.index(RELAY_UP)]
    assert relay_up.connection_id == sender, _show(relay_up)
    fan_out = found[steps.index(FAN_OUT)]
    assert fan_out.count == len(recipients), _show(fan_out)
    check_relays_down(journey, fan_out, recipients)
    assert {h.role for h in journey.hops if h.flow_id == flow} >= {Role.SERVICE, Role.APP}

    # Timings: each hop ended within the test's window; requests and their answers carry how long they took.
    started, ended = window
    for hop in journey.hops:
        assert started <= hop.at <= ended, f"hop outside the message's time: {_show(hop)}"
        assert hop.service == service, _show(hop)
        if hop.mode is not None:
            assert hop.mode == mode, _show(hop)
        if hop.transport is not None and transport is not None:
            assert hop.transport == transport, _show(hop)
    for hop in found:
        if hop.kind in TIMED:
            assert hop.duration_ms is not None and 0 <= hop.duration_ms <= (ended - started) * 1000, _show(hop)
        if (hop.kind in TIMED and hop.role is not Role.APP) or hop.kind == "rest":
            # The service's POST to the app server and the app server's REST call: the answer's status.
            assert hop.status is not None and 200 <= hop.status < 300, _show(hop)

    # No secret in anything the stream carried.
    for secret in forbidden:
        assert secret not in stream.raw, f"a secret ({secret[:4]}…) is in the /flow stream"
    assert "eyJ" not in stream.raw, "a JWT is in the /flow stream"
    return journey


def client_secrets(connection: HubConnection) -> list[str]:
    """The access token and the connection token a connected client holds (read from inside the client: they are
    exactly what must never ride a hop)."""
    conn = connection._conn
    assert conn is not None and conn._context is not None and conn.transport is not None
    found = [conn._context.access_token or ""]
    query = parse_qs(urlsplit(conn.transport._url).query)
    found += query.get("id", [])
    assert all(found) and len(found) == 2, "the client holds no access token or connection token"
    return found


# --- SignalR -----------------------------------------------------------------------------------------------------


CASES = [
    pytest.param((mode, TRANSPORTS[transport][1]), transport, id=f"{mode}-{transport}")
    for mode in ("serverless", "default")
    for transport in TRANSPORTS
]


@pytest.mark.parametrize(("flow_stack", "transport"), CASES, indirect=["flow_stack"])
async def test_signalr_broadcast_journey(flow_stack: FlowStack, transport: str) -> None:
    stack = flow_stack
    choice = TRANSPORTS[transport][0]
    headers = {SUBSCRIPTION_HEADER: stack.subscription_key}
    received: dict[str, asyncio.Queue[tuple[str, str]]] = {"alice": asyncio.Queue(), "bob": asyncio.Queue()}
    clients: dict[str, HubConnection] = {}
    text = f"one hop at a time over {transport} {secrets.token_hex(4)}"
    async with FlowStream.open(stack.flow_url) as stream:
        try:
            for name, queue in received.items():
                client = HubConnection(stack.start_url, transport=choice, headers=headers, reconnect_delays=None)
                client.on("broadcastMessage", lambda who, what, q=queue: q.put_nowait((who, what)))
                clients[name] = client
                await asyncio.wait_for(client.start(), TIMEOUT)
                assert client.transport_name == transport
            await asyncio.sleep(SETTLE)
            alice = clients["alice"]
            sender = alice.connection_id  # None again once the client stopped
            recipients = [str(c.connection_id) for c in clients.values()]
            assert sender is not None
            flow = flow_id(sender, "0")  # HubConnection numbers its invocations from "0"
            started = time.time()
            await asyncio.wait_for(alice.invoke("broadcastMessage", "alice", text), TIMEOUT)
            for queue in received.values():
                assert await asyncio.wait_for(queue.get(), TIMEOUT) == ("alice", text)
            await stream.until(
                lambda hops: any(h.flow_id == flow and h.kind == "fan-out" for h in hops), "fan-out of the message"
            )
            await asyncio.sleep(TAIL)
            ended = time.time()
            seen = list(stream.hops)
            forbidden = [stack.access_key, stack.subscription_key, *client_secrets(alice)]
        finally:
            for client in clients.values():
                await client.stop()
    steps = SERVERLESS if stack.mode == "serverless" else DEFAULT
    check_journey(
        stream,
        seen,
        flow,
        steps,
        sender=sender,
        recipients=recipients,
        window=(started, ended),
        forbidden=forbidden,
        transport=transport,
        mode=stack.mode,
        service="signalr",
    )


# --- Web PubSub --------------------------------------------------------------------------------------------------


async def negotiated_url(negotiate: str, subscription_key: str) -> str:
    """The client access URL the app server hands out, with the gateway's subscription key as its query parameter
    (the official JS client sends no headers but the URL's)."""
    async with aiohttp.ClientSession() as session:
        async with session.post(negotiate, timeout=aiohttp.ClientTimeout(TIMEOUT)) as answer:
            assert answer.status == 200, await answer.text()
            body = await answer.json()
    return f"{body['url']}&subscription-key={subscription_key}"


async def test_webpubsub_broadcast_journey(wps_stack: FlowStack) -> None:
    stack = wps_stack
    text = f"one hop at a time on Web PubSub {secrets.token_hex(4)}"
    peers: list[WpsJsPeer] = []
    async with FlowStream.open(stack.flow_url) as stream:
        try:
            urls = [await negotiated_url(stack.start_url, stack.subscription_key) for _ in range(2)]
            for url in urls:
                peers.append(await WpsJsPeer.start(url=url, protocol="reliable"))
            await asyncio.sleep(SETTLE)
            sender = peers[0].connection_id
            recipients = [str(p.connection_id) for p in peers]
            assert sender is not None
            started = time.time()
            ack = await peers[0].send_event("broadcastMessage", {"name": "alice", "message": text})
            flow = flow_id(sender, ack["ackId"])
            for peer in peers:
                assert await peer.next_data() == {"name": "alice", "message": text, "target": "broadcastMessage"}
            await stream.until(
                lambda hops: any(h.flow_id == flow and h.kind == "fan-out" for h in hops), "fan-out of the message"
            )
            await asyncio.sleep(TAIL)
            ended = time.time()
            seen = list(stream.hops)
        finally:
            for peer in peers:
                await peer.stop()
    tokens = [parse_qs(urlsplit(url).query)["access_token"][0] for url in urls]
    check_journey(
        stream,
        seen,
        flow,
        WEBPUBSUB,
        sender=sender,
        recipients=recipients,
        window=(started, ended),
        forbidden=[stack.access_key, stack.subscription_key, *tokens],
        transport=None,
        mode=None,
        service="webpubsub",
    )


# --- chat-demo --record --------------------------------------------------------------------------------------------


async def test_chat_demo_record_writes_mermaid_that_parses(tmp_path: Path) -> None:
    record = tmp_path / "journeys.md"
    demo = Process([script("chat-demo"), "--no-tui", "--record", str(record)])
    try:
        info: dict[str, Any] = json.loads(demo.readline(timeout=60))
        assert info["flow_url"] == info["chat_url"].removesuffix("chat") + "flow", info
        text = f"for the slides {secrets.token_hex(4)}"
        async with FlowStream.open(info["flow_url"]) as stream:
            client = HubConnection(info["chat_url"], reconnect_delays=None)
            got: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
            client.on("broadcastMessage", lambda who, what: got.put_nowait((who, what)))
            try:
                await asyncio.wait_for(client.start(), TIMEOUT)
                await asyncio.sleep(SETTLE)
                assert client.connection_id is not None
                flow = flow_id(client.connection_id, "0")
                await asyncio.wait_for(client.invoke("broadcastMessage", "carol", text), TIMEOUT)
                assert await asyncio.wait_for(got.get(), TIMEOUT) == ("carol", text)
                await stream.until(
                    lambda hops: any(h.flow_id == flow and h.kind == "fan-out" for h in hops), "the fan-out"
                )
                await asyncio.sleep(TAIL)
            finally:
                await client.stop()
        demo.signal(signal.SIGINT)
        assert demo.popen.wait(20) == 0, demo.stderr()
    finally:
        demo.stop()
    assert str(record) in demo.stderr() or record.name in demo.stderr(), demo.stderr()[-2000:]
    markdown = record.read_text(encoding="utf-8")
    blocks = mermaid_blocks(markdown)
    assert blocks, markdown[:2000]
    results = await parse_mermaid_async(blocks)
    assert all(r["ok"] for r in results), [r.get("error") for r in results if not r["ok"]]
    ours = [r for r in results if any(flow in n["text"] for n in r["notes"])]
    assert len(ours) == 1, f"no diagram (or several) for flow {flow}"
    diagram = ours[0]
    assert [a[0] for a in diagram["actors"]] == [line.value for line in Lifeline]
    arrows = [(m["from"], m["to"]) for m in diagram["messages"]]
    assert ("service", "others") in arrows and ("apim", "service") in arrows, arrows
    assert "eyJ" not in markdown and "AccessKey=" not in markdown
