"""The Flow view on the real stack: ``chat-demo`` turns hop events on in every server, the terminal chat follows
chat-server's ``/flow`` stream, and one broadcast is drawn hop by hop across client, APIM, service and app server —
differently for each mode, transport and service — and recorded as Markdown with Mermaid diagrams."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
from pathlib import Path

import pytest

from chat.app import ChatApp
from flow.hops import Hop
from signalr.client import TransportChoice
from tests.support.processes import Process, script
from tests.support.tui import seen, wait_until

from .conftest import DemoFactory

SIZE = (130, 44)
PARSE_MERMAID = Path(__file__).parents[1] / "flow" / "js" / "parse_mermaid.mjs"
CASES = [
    pytest.param(
        [],
        TransportChoice.WEBSOCKETS,
        {"server-connection"},
        "Azure SignalR Service · Default mode · WebSockets through APIM",
        id="default-websockets",
    ),
    pytest.param(
        ["--service-mode", "serverless", "--profile", "sse-lp"],
        TransportChoice.LONG_POLLING,
        {"upstream", "rest"},
        "Azure SignalR Service · Serverless mode · LongPolling through APIM",
        id="serverless-longpolling",
    ),
    pytest.param(
        ["--service-mode", "serverless", "--profile", "sse-lp"],
        TransportChoice.SERVER_SENT_EVENTS,
        {"upstream", "rest"},
        "Azure SignalR Service · Serverless mode · ServerSentEvents through APIM",
        id="serverless-sse",
    ),
    pytest.param(
        ["--service", "webpubsub"],
        TransportChoice.WEBSOCKETS,
        {"upstream", "rest"},
        "Azure Web PubSub · event handler · WebSocket through APIM",
        id="webpubsub",
    ),
]


def _facts(app: ChatApp) -> str:
    return str(app.flow_panel.query_one("#flow-facts").render())


@pytest.mark.parametrize(("args", "transport", "behind", "facts"), CASES)
async def test_one_broadcast_is_drawn_hop_by_hop_and_recorded(
    chat_demo: DemoFactory,
    tmp_path: Path,
    args: list[str],
    transport: TransportChoice,
    behind: set[str],
    facts: str,
) -> None:
    record = tmp_path / "journeys.md"
    demo, info = chat_demo("--record", str(record), *args)
    assert info["flow_url"] == info["web_url"] + "flow"
    service = "webpubsub" if info["service"] == "webpubsub" else None
    app = ChatApp(
        info["chat_url"],
        transport,
        name="termy",
        gateway_profile=info["profile"],
        service_mode=info.get("service_mode"),
        service=service,
        flow_url=info["flow_url"],
    )
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: seen(app, "termy JOINED"), timeout=20, what="the chat to join")
        await wait_until(pilot, lambda: app.flow_feed is not None and app.flow_feed.connected, what="the flow stream")
        await pilot.press("f11")
        await pilot.press(*"watch me travel", "enter")
        await wait_until(pilot, lambda: seen(app, "termy (you): watch me travel"), timeout=10)

        def journey_kinds() -> set[str]:
            journey = app.journeys.for_message("termy", "watch me travel")
            return {hop.kind for hop in journey.hops} if journey is not None else set()

        wanted = {"send", "relay", "invoke", "fan-out", "deliver"} | behind
        await wait_until(pilot, lambda: wanted <= journey_kinds(), timeout=10, what=f"the hops {wanted}")
        journey = app.journeys.for_message("termy", "watch me travel")
        assert journey is not None and journey.flow_id is not None
        # The client's send is drawn before the service received it (a LongPolling poll that was already waiting
        # and carried the broadcast back began earlier still, and is drawn first).
        kinds = [hop.kind for hop in journey.hops]
        assert kinds.index("send") < kinds.index("invoke") < kinds.index("fan-out") < kinds.index("deliver"), kinds
        roles = {hop.role.value for hop in journey.hops}
        assert roles == {"client", "apim", "service", "app"}, roles
        # Every hop that carries a flow id carries this message's: the client, the service and the app server
        # computed or passed on the same id.
        assert {hop.flow_id for hop in journey.hops if hop.flow_id is not None} == {journey.flow_id}
        timed = [hop for hop in journey.hops if hop.kind in behind and hop.duration_ms is not None]
        if behind != {"server-connection"}:
            assert timed, "the upstream POST and the REST call are timed"

        await wait_until(pilot, lambda: app.shown_journey() is journey, what="the view to follow the message")
        # One arrow per hop: a hop both ends report (upstream, REST, server connection) is drawn once.
        await wait_until(pilot, lambda: len(app.flow_panel.hops) == len(journey.arrows()), what="the view to draw it")
        assert len(journey.arrows()) < len(journey.hops)
        rows = app.flow_panel.plain_rows
        assert sum(1 for row in rows if "▶" in row or "◀" in row) == len(journey.arrows())
        assert facts in _facts(app)
        assert "watch me travel" not in "\n".join(rows)  # hops carry no message text
        for hop in journey.hops:
            assert Hop.from_json(hop.to_json()) == hop
            assert not re.search(r"access_token=|AccessKey=|Signature=|sig=|eyJ[\w-]{10,}\.", hop.label), hop.label

        # Selecting the line replays the same journey.
        await pilot.press(*"and me", "enter")
        await wait_until(pilot, lambda: app.journeys.for_message("termy", "and me") is not None, timeout=10)
        await wait_until(pilot, lambda: app.shown_journey() is app.journeys.for_message("termy", "and me"))
        assert app.show_journey_of("termy", "watch me travel")
        assert app.shown_journey() is journey
        await pilot.press("ctrl+q")

    demo.signal(signal.SIGTERM)
    assert demo.popen.wait(30) == 0
    err = demo.stderr()
    assert f"flow recording: {record}" in err
    text = record.read_text()
    assert text.startswith("# chat-demo: ")
    assert text.count("```mermaid\nsequenceDiagram") >= 2
    assert f"flow `{journey.flow_id}`" in text
    # The npm mermaid package parses every recorded diagram (as GitHub and slide tools would draw them).
    blocks = re.findall(r"```mermaid\n(.*?)```", text, re.S)
    node = shutil.which("node")
    assert node is not None and PARSE_MERMAID.exists()
    parser = await asyncio.create_subprocess_exec(
        node, str(PARSE_MERMAID), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(parser.communicate(json.dumps(blocks).encode()), 60)
    assert parser.returncode == 0
    results = json.loads(out)
    assert len(results) == len(blocks) and all(result["ok"] for result in results), results


def test_a_recording_that_cannot_be_written_stops_the_demo_before_it_starts(tmp_path: Path) -> None:
    process = Process([script("chat-demo"), "--no-tui", "--record", str(tmp_path / "missing" / "x.md")])
    assert process.popen.wait(30) == 1
    err = process.stderr()
    process.stop()
    assert "chat-demo: error: cannot write the recording" in err and "Traceback" not in err
