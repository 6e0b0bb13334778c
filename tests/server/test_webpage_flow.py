"""The web page's Flow diagram in headless Chromium: the journey of the page's latest message, drawn with Mermaid.

Two ways to feed the page hops:

- a *front* (a small aiohttp proxy in this test) passes the page, its scripts and negotiate through to a real
  ``chat-server`` and serves ``GET /flow/info`` and ``GET /flow`` itself, with hops the test writes: hostile labels,
  other messages' hops and malformed events, checked one by one;
- ``chat-demo --no-tui``, the whole local stack streaming real hops, on SignalR (WebSockets, LongPolling) and Web
  PubSub: the diagram shows the five lifelines and the arrows of that message's journey.

Assertions are on what the page renders (texts in the SVG, the flow id it computed) and on what the app server sent.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from flow.hops import Hop
from flow.ids import flow_id
from flow.journey import JourneyBook
from flow.mermaid import arrow_text
from tests.support.browser import (
    CHROMIUM_INSTALLED,
    DriverFactory,
    connected_status,
    entries,
    screenshot,
    text_of,
    until,
)
from tests.support.processes import Process, script
from tests.support.stack import Stack, start_stack

pytestmark = pytest.mark.skipif(
    not CHROMIUM_INSTALLED,
    reason="Chromium is not installed (Debian packages chromium and chromium-driver; `make test` installs them)",
)

LIFELINE_NAMES = ["Client", "App server", "APIM", "Service", "Other clients"]
NO_LOCAL_STACK = "Server hops need the local stack (chat-demo)"
# Only these headers of the app server's answers reach the page (the page's own CSP among them).
_PASSED_HEADERS = ("Content-Type", "Content-Security-Policy", "Referrer-Policy", "X-Content-Type-Options")


class FlowFront:
    """A loopback HTTP front for a ``chat-server``: ``/flow/info`` and ``/flow`` are its own (a stream of the hops
    :meth:`push` is given), everything else is passed to the app server as it is. It runs its own event loop in a
    thread: the browser's blocking calls (``driver.get``) must not stop it."""

    def __init__(self, backend: str) -> None:
        self.backend = backend.rstrip("/")
        self.streams: list[asyncio.Queue[str | None]] = []
        self.subscriptions = 0
        self.enabled = True
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="flow-front", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> FlowFront:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/flow/info", self._info)
        app.router.add_get("/flow", self._flow)
        app.router.add_route("*", "/{tail:.*}", self._pass)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/"

    async def _close(self) -> None:
        for queue in self.streams:
            queue.put_nowait(None)
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def push(self, event: str) -> None:
        """Write ``event`` (a hop's JSON, or anything) as one ``data:`` event to every open stream."""

        def put() -> None:
            for queue in self.streams:
                queue.put_nowait(event)

        self._loop.call_soon_threadsafe(put)

    async def _info(self, request: web.Request) -> web.Response:
        if not self.enabled:
            return web.json_response({"error": "flow is off"}, status=404)
        return web.json_response({"enabled": True, "udp": "127.0.0.1:9"})

    async def _flow(self, request: web.Request) -> web.StreamResponse:
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.streams.append(queue)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        self.subscriptions += 1
        try:
            while (event := await queue.get()) is not None:
                await response.write(b"".join(b"data: " + line.encode() + b"\n" for line in event.split("\n")) + b"\n")
        finally:
            self.streams.remove(queue)
        return response

    async def _pass(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "accept")}
        async with self._session.request(
            request.method, self.backend + request.path_qs, data=body, headers=headers
        ) as answer:
            data = await answer.read()
            passed = {k: v for k, v in answer.headers.items() if k in _PASSED_HEADERS}
            if request.path == "/":  # the page of an app server that streams hops
                data = re.sub(rb'data-flow="[^"]*"', b'data-flow="on"', data)
            return web.Response(status=answer.status, body=data, headers=passed)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    running = start_stack(cwd=tmp_path)
    yield running
    running.stop()


@pytest.fixture
def front(stack: Stack) -> Iterator[FlowFront]:
    started = FlowFront(stack.server.url).start()
    yield started
    started.close()


def hop(flow: str | None, source: str, target: str, kind: str, label: str, **more: Any) -> str:
    """A hop's JSON as the flow stream carries it (contract §1)."""
    fields: dict[str, Any] = {
        "at": more.pop("at", None),
        "role": more.pop("role", "service"),
        "source": source,
        "target": target,
        "kind": kind,
        "label": label,
        "service": more.pop("service", "signalr"),
        "flow_id": flow,
        **more,
    }
    return json.dumps({k: v for k, v in fields.items() if v is not None})


def svg_texts(driver: WebDriver) -> list[str]:
    """The texts of the rendered diagram, one per SVG text element, whitespace folded."""
    found = driver.execute_script(
        "const svg = document.querySelector('#flow-diagram svg');"
        "return svg ? Array.from(svg.querySelectorAll('text')).map(t => t.textContent) : null;"
    )
    return [" ".join(str(t).split()) for t in found] if found is not None else []


def flow_data(driver: WebDriver, key: str) -> str | None:
    value = driver.find_element(By.ID, "flow").get_attribute(f"data-{key}")
    return None if value is None else str(value)


async def sent_flow_id(driver: WebDriver, message_id: str) -> str:
    """The flow id the page computed for its message ``message_id``, once it has; checked against flow.ids."""
    computed: str = await until(
        lambda: flow_data(driver, "message-id") == message_id and flow_data(driver, "flow-id"), "the page's flow id"
    )
    connection_id = flow_data(driver, "connection-id")
    assert connection_id, "the page knows its connection id"
    assert computed == flow_id(connection_id, message_id)
    return computed


async def test_the_page_draws_its_own_message_and_nothing_else(
    stack: Stack, front: FlowFront, browser: DriverFactory, tmp_path: Path
) -> None:
    page = browser()
    page.get(front.url + "?name=alice&transport=websockets")
    await connected_status(page, timeout=20)
    await until(lambda: front.subscriptions == 1, "the page to subscribe to /flow")
    await until(lambda: page.find_element(By.ID, "flow").is_displayed(), "the flow panel")
    assert text_of(page, "flow-note") == "Send a message to see its journey."

    hostile = "<b>hi</b>; #1 %% end"
    page.find_element(By.ID, "message").send_keys(hostile + "\n")
    mine = await sent_flow_id(page, "0")  # the first invoke of the connection is invocation "0"
    await until(lambda: ("mine", f"alice {hostile}") in entries(page), "alice's own message")

    at = await asyncio.to_thread(lambda: float(page.execute_script("return Date.now() / 1000")))
    evil_label = "<img src=x onerror=alert(1)>; participant evil\nNote over client: #35; %% x"
    for event in (
        "not json",
        json.dumps({"at": at}),
        json.dumps([1, 2]),
        hop(mine, "client", "nowhere", "invoke", "unknown lifeline", at=at),
        hop(mine, "service", "app", "teleport", "unknown kind", at=at),
        hop(mine, "service", "app", "invoke", "x" * 9000, at=at),
        hop("0123456789abcdef", "service", "others", "fan-out", "NOT MINE", at=at + 0.001, count=9),
        hop(mine, "service", "service", "invoke", "invocation broadcastMessage", at=at + 0.002),
        upstream := hop(
            mine, "service", "app", "upstream", "POST /upstream", status=200, duration_ms=3.14, at=at + 0.003
        ),
        upstream,  # a stream that starts again replays hops the page has: drawn once
        hop(mine, "app", "service", "rest", evil_label, role="app", status=202, duration_ms=2.5, at=at + 0.004),
        hop(mine, "service", "others", "fan-out", "broadcastMessage to all", count=3, at=at + 0.005),
    ):
        front.push(event)

    await until(lambda: any("POST /upstream" in t for t in svg_texts(page)), "the diagram with the server's hops")
    await until(lambda: any("to all" in t for t in svg_texts(page)), "the last hop drawn")
    texts = svg_texts(page)
    for name in LIFELINE_NAMES:
        assert texts.count(name) == 2, (name, texts)  # each lifeline's box at the top and at the bottom
    joined = "\n".join(texts)
    assert "broadcastMessage #0 (invoke)" in joined  # the page's own send
    assert f"alice: {hostile}" in texts  # the title: the chat line, as text
    assert texts.count("POST /upstream · 200 · 3.1 ms") == 1
    assert "invocation broadcastMessage" in joined
    assert "broadcastMessage to all · ×3" in joined
    assert "broadcastMessage arrived back, " in joined and "completion of #0, " in joined
    # The hostile label is text in one arrow: no element, no extra participant or note, nothing cut at ";" or "#".
    assert "<img src=x onerror=alert(1)>; participant evil Note over client: #35; %% x · 202 · 2.5 ms" in texts
    assert page.find_elements(By.CSS_SELECTOR, "#flow img, #flow b, #messages b") == []
    assert "evil" not in LIFELINE_NAMES and texts.count("evil") == 0
    # Not this message's, or not a hop: left out.
    assert "NOT MINE" not in joined and "unknown" not in joined and "xxxxxxxx" not in joined
    page.set_window_size(960, 1100)
    screenshot(page, tmp_path, "chatroom-flow-fake")

    # The next message is invocation "1": a new flow id, a new diagram without the first one's server hops.
    page.find_element(By.ID, "message").send_keys("second\n")
    second = await sent_flow_id(page, "1")
    assert second != mine
    await until(
        lambda: any("broadcastMessage #1 (invoke)" in t for t in svg_texts(page)), "the second message's diagram"
    )
    await until(lambda: any("arrived back" in t for t in svg_texts(page)), "the second message back")
    assert not any("POST /upstream" in t for t in svg_texts(page))
    front.push(hop(second, "service", "others", "fan-out", "second fan-out", count=1, at=at + 5))
    await until(lambda: any("second fan-out · ×1" in t for t in svg_texts(page)), "the second message's fan-out")

    # Echo is invocation "2"; it comes back to its caller with the server's suffix, and that is its arrival.
    page.find_element(By.ID, "message").send_keys("ping")
    page.find_element(By.ID, "echo").click()
    await sent_flow_id(page, "2")
    await until(lambda: any(t.startswith("echo arrived back, ") for t in svg_texts(page)), "the echo back")
    texts = svg_texts(page)
    assert "echo #2 (invoke)" in texts and "alice: ping" in texts
    assert not any("second fan-out" in t for t in texts)


async def test_without_a_flow_stream_the_page_says_where_server_hops_come_from(
    stack: Stack, browser: DriverFactory
) -> None:
    page = browser()
    page.get(stack.server.url + "?name=bob&transport=websockets")
    await connected_status(page, timeout=20)
    note = await until(lambda: page.find_element(By.ID, "flow-note").is_displayed() and text_of(page, "flow-note"), "")
    assert note.startswith(NO_LOCAL_STACK), note
    page.find_element(By.ID, "message").send_keys("plain\n")
    await until(lambda: ("mine", "bob plain") in entries(page), "bob's message")
    assert page.find_elements(By.CSS_SELECTOR, "#flow-diagram svg") == []
    assert flow_data(page, "flow-id") is None


async def test_a_flood_of_hops_is_drawn_bounded_and_the_chat_goes_on(front: FlowFront, browser: DriverFactory) -> None:
    """More hops for one message than the page keeps or a diagram can show: the stream's last 2000 hops are kept, of
    those the first 60 (by when they began) are drawn, and the page still chats and draws the next message."""
    page = browser()
    page.get(front.url + "?name=flo&transport=websockets")
    await connected_status(page, timeout=20)
    await until(lambda: front.subscriptions == 1, "the page to subscribe to /flow")
    page.find_element(By.ID, "message").send_keys("many\n")
    mine = await sent_flow_id(page, "0")
    await until(lambda: any("completion of #0" in t for t in svg_texts(page)), "the page's own hops")
    at = await asyncio.to_thread(lambda: float(page.execute_script("return Date.now() / 1000")))
    for i in range(2500):
        front.push(hop(mine, "service", "others", "fan-out", f"copy {i}", count=1, at=at + i / 1000))
    # Hops 0-499 went out of the page's 2000; 3 of the 60 arrows are the page's own hops, 57 are copies 500-556.
    await until(lambda: any(t.startswith("copy 556 ") for t in svg_texts(page)), "the flood drawn", timeout=30)
    await until(lambda: page.find_element(By.ID, "flow-diagram").get_attribute("data-hops") == "60", "60 arrows")
    copies = [t for t in svg_texts(page) if t.startswith("copy ")]
    assert copies == [f"copy {i} · ×1" for i in range(500, 557)]
    assert page.execute_script("return document.querySelectorAll('#flow-diagram svg').length") == 1

    page.find_element(By.ID, "message").send_keys("after the flood\n")
    await until(lambda: ("mine", "flo after the flood") in entries(page), "the next message")
    await sent_flow_id(page, "1")
    await until(lambda: any("broadcastMessage #1 (invoke)" in t for t in svg_texts(page)), "the next diagram")


async def test_without_the_diagram_library_the_page_says_how_to_get_it(
    front: FlowFront, browser: DriverFactory
) -> None:
    page = browser()
    page.execute_cdp_cmd("Network.enable", {})
    page.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/lib/mermaid.min.js"]})
    page.get(front.url + "?name=lib&transport=websockets")
    await connected_status(page, timeout=20)
    page.find_element(By.ID, "message").send_keys("no library\n")
    await until(lambda: "diagram library is missing" in text_of(page, "flow-note"), "the library note")
    assert text_of(page, "flow-note") == (
        "The diagram library is missing: run make node in the project directory, then reload this page."
    )
    await until(lambda: ("mine", "lib no library") in entries(page), "the chat still works")


async def test_a_flow_info_that_answers_404_gives_the_same_note(front: FlowFront, browser: DriverFactory) -> None:
    front.enabled = False
    page = browser()
    page.get(front.url + "?name=cy&transport=websockets")
    await connected_status(page, timeout=20)
    note = await until(lambda: page.find_element(By.ID, "flow-note").is_displayed() and text_of(page, "flow-note"), "")
    assert note.startswith(NO_LOCAL_STACK), note
    assert front.subscriptions == 0


# ---- The whole local stack: chat-demo --no-tui ----------------------------------------------------------------------


@pytest.fixture
def chat_demo() -> Iterator[Callable[..., dict[str, Any]]]:
    """Start ``chat-demo --no-tui [args]``; returns its JSON line. Stopped at teardown."""
    started: list[Process] = []

    def start(*args: str) -> dict[str, Any]:
        # chat-demo picks free ports, which another program on this machine may take before a server binds them:
        # that one failure is tried again, twice at most.
        for attempt in range(3):
            process = Process([script("chat-demo"), "--no-tui", *args])
            started.append(process)
            try:
                info: dict[str, Any] = json.loads(process.readline(timeout=60))
            except EOFError as exc:
                if "address already in use" not in str(exc) or attempt == 2:
                    raise
                continue
            return info
        raise AssertionError("unreachable")

    yield start
    for process in started:
        process.stop()


async def stream_hops(flow_url: str, quiet: float = 0.7, limit: float = 10) -> list[Hop]:
    """The hops ``GET /flow`` replays (its last 200), read until it has been quiet for ``quiet`` seconds."""
    hops: list[Hop] = []
    timeout = aiohttp.ClientTimeout(total=limit + 5)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(flow_url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        deadline = asyncio.get_running_loop().time() + limit
        while asyncio.get_running_loop().time() < deadline:
            try:
                line = await asyncio.wait_for(response.content.readline(), quiet)
            except TimeoutError:
                break
            if line.startswith(b"data: "):
                hops.append(Hop.from_json(line[len(b"data: ") :].rstrip(b"\r\n")))
    return hops


@pytest.mark.parametrize(
    ("demo_args", "query", "message_id", "transport"),
    [
        (("--transport", "websockets"), "&transport=websockets", "0", "WebSockets"),
        (("--transport", "longpolling", "--service-mode", "serverless"), "&transport=longpolling", "0", "LongPolling"),
        (("--transport", "websockets"), "&transport=websockets&protocol=messagepack", "0", "WebSockets"),
        (("--service", "webpubsub"), "", "2", "WebSockets"),  # ackId 1 is the JOINED line's
    ],
    ids=["signalr-websockets-default", "signalr-longpolling-serverless", "signalr-messagepack", "webpubsub"],
)
async def test_the_page_draws_the_journey_the_local_stack_reports(
    chat_demo: Callable[..., dict[str, Any]],
    browser: DriverFactory,
    tmp_path: Path,
    demo_args: tuple[str, ...],
    query: str,
    message_id: str,
    transport: str,
    request: pytest.FixtureRequest,
) -> None:
    info = chat_demo(*demo_args)
    assert info["flow_url"] == info["web_url"] + "flow"
    page = browser()
    page.set_window_size(960, 1200)
    page.get(info["web_url"] + "?name=webby" + query)
    await connected_status(page, timeout=30)
    await until(lambda: text_of(page, "flow-note") == "Send a message to see its journey.", "the flow panel")

    page.find_element(By.ID, "message").send_keys("where do I go? <b>;#</b>\n")
    mine = await sent_flow_id(page, message_id)
    await until(lambda: ("mine", "webby where do I go? <b>;#</b>") in entries(page), "the message back", timeout=20)

    # The journey as the collector has it: the service's and the app server's hops with this message's flow id, and
    # the gateway's hops of that time (they carry no flow id).
    hops: list[Hop] = []
    relays: list[Hop] = []
    for _ in range(20):
        streamed = await stream_hops(info["flow_url"])
        hops = [h for h in streamed if h.flow_id == mine]
        if {h.kind for h in hops} >= {"invoke", "fan-out"} and any(h.role == "app" for h in hops):
            first, last = min(h.started for h in hops), max(h.at for h in hops)
            relays = [
                h
                for h in streamed
                if h.role == "apim" and h.flow_id is None and h.kind == "relay" and first - 0.5 <= h.at <= last + 2
            ]
            break
        await asyncio.sleep(0.5)
    described = [(h.role, h.kind, h.label) for h in hops]
    assert {"invoke", "fan-out"} <= {h.kind for h in hops}, described
    # The service hands the message to the app server, and the app server's send comes back to the service.
    assert any(h.source == "service" and h.target == "app" for h in hops), described
    assert any(h.source == "app" and h.target == "service" for h in hops), described
    assert {h.service for h in hops} == {"webpubsub" if "--service" in demo_args else "signalr"}
    assert relays, "the gateway relayed the message"

    # Every arrow flow/journey.py draws of them (a hop both ends report once, from its sender) is an arrow of the
    # page's diagram, with the text flow/mermaid.py gives it; a receiver's second report of a hop is not drawn.
    book = JourneyBook()
    for h in hops:
        book.add(h)
    journey = book.get(mine)
    assert journey is not None
    drawn = journey.arrows()
    assert len(drawn) < len(hops), "the service and the app server each report the hops between them"
    expected = {" ".join(arrow_text(h).split()) for h in drawn}
    left_out = {" ".join(arrow_text(h).split()) for h in hops} - expected
    await until(lambda: expected <= set(svg_texts(page)), "every hop of the journey in the diagram", timeout=15)
    assert not left_out & set(svg_texts(page)), left_out
    texts = svg_texts(page)
    for name in LIFELINE_NAMES:
        assert texts.count(name) == 2, (name, texts)
    assert "webby: where do I go? <b>;#</b>" in texts  # the title
    assert any(t.startswith(f"broadcastMessage #{message_id} (") for t in texts)  # the page's own send
    assert any(t.startswith("broadcastMessage arrived back, ") for t in texts)
    facts = next(t for t in texts if f"flow {mine}" in t)
    assert transport in facts, facts
    assert {" ".join(arrow_text(h).split()) for h in relays} & set(texts), "a gateway relay drawn"
    assert page.find_elements(By.CSS_SELECTOR, "#flow b, #messages b") == []
    screenshot(page, tmp_path, f"chatroom-flow-{request.node.callspec.id}")
