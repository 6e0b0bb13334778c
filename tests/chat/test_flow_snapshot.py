"""Screen snapshots of the Flow view at 80 and 130 columns: one Serverless broadcast over LongPolling through APIM.

Compared as in ``test_snapshot.py`` (the character grid of the stored SVG; ``CHAT_UPDATE_SNAPSHOTS=1`` accepts a
deliberate change). The journey is made by hand with fixed times, so every latency on screen is the same each run.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from chat.app import ChatApp
from chat.messages import HopArrived
from flow.hops import Hop
from signalr.client import TransportChoice
from tests.support.tui import seen, wait_until

from .conftest import FIXED_TIME
from .fake_client import FakeHub
from .test_flow_app import FlowStream, flow_stream  # noqa: F401  (pytest finds fixtures by name)
from .test_snapshot import check_snapshot

FLOW = "5d41402abc4b2a76"
T0 = FIXED_TIME.timestamp()
CONNECTION = "Qv3zJ0gH5YbXk2w1n9Lr4A"


def journey() -> list[Hop]:
    """One broadcast by bob in Serverless mode, LongPolling through APIM, as every role reports it."""
    lp = {"transport": "LongPolling", "mode": "serverless"}
    return [
        Hop.make("client", "client", "apim", "send", "broadcastMessage #4 (POST, 71 B)", at=T0 + 0.0000,
                 flow_id=FLOW, connection_id=CONNECTION, bytes=71, **lp),
        Hop.make("apim", "client", "service", "relay", "POST /client/?hub=chat&id=… → 200 (Host rewritten)",
                 at=T0 + 0.0031, status=200, duration_ms=2.9, connection_id=CONNECTION),
        Hop.make("service", "client", "service", "invoke", "Invocation broadcastMessage #4", at=T0 + 0.0030,
                 flow_id=FLOW, connection_id=CONNECTION, **lp),
        Hop.make("service", "service", "app", "upstream", "POST /upstream/chat/messages/broadcastMessage",
                 at=T0 + 0.0121, status=200, duration_ms=8.6, flow_id=FLOW, mode="serverless"),
        Hop.make("app", "app", "service", "rest", "POST /api/v1/hubs/chat (send to all)", at=T0 + 0.0102,
                 status=202, duration_ms=3.4, flow_id=FLOW, mode="serverless"),
        Hop.make("service", "service", "others", "fan-out", "broadcastMessage to 3 connections (json 2, messagepack 1)",
                 at=T0 + 0.0105, count=3, flow_id=FLOW, mode="serverless"),
        Hop.make("service", "service", "apim", "poll", "poll answered: 1 message (118 B)", at=T0 + 0.0112,
                 status=200, flow_id=FLOW, connection_id=CONNECTION, **lp),
        Hop.make("apim", "apim", "client", "relay", "GET /client/?hub=chat&id=… → 200", at=T0 + 0.0116,
                 status=200, duration_ms=0.4, connection_id=CONNECTION),
        Hop.make("client", "apim", "client", "deliver", "broadcastMessage arrived back, 12.1 ms after it was sent",
                 at=T0 + 0.0121, flow_id=FLOW, connection_id=CONNECTION, **lp),
    ]  # fmt: skip


@pytest.mark.parametrize(("width", "height"), [(80, 34), (130, 40)])
async def test_flow_view_matches_the_stored_snapshot(
    make_app: Callable[..., ChatApp],
    hub: FakeHub,
    flow_stream: FlowStream,  # noqa: F811
    width: int,
    height: int,
) -> None:
    hub.clock = FIXED_TIME.timestamp
    app = make_app(
        name="bob",
        transport=TransportChoice.LONG_POLLING,
        gateway_profile="sse-lp",
        service_mode="serverless",
        flow_url=flow_stream.url,
    )
    async with app.run_test(size=(width, height)) as pilot:
        await wait_until(pilot, lambda: seen(app, "bob JOINED"))
        await wait_until(pilot, lambda: flow_stream.opened == 1, what="the flow stream")
        hops = journey()
        app.post_message(HopArrived(hops[0], ("bob", "hi all")))
        for hop in hops[1:]:
            flow_stream.push(b"data: " + hop.to_json() + b"\r\n\r\n")
        await wait_until(pilot, lambda: len(getattr(app.journeys.get(FLOW), "hops", ())) == len(hops))
        app.replay(FLOW)
        await wait_until(pilot, lambda: app._replay_shown is None and len(app.flow_panel.hops) == len(hops))
        await pilot.pause(0.2)
        check_snapshot(f"flow_view_{width}.svg", app.export_screenshot(title="chat flow"))
