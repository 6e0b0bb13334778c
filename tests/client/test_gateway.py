"""Through the real ``apim-gateway`` (the APIM stand-in): what each profile serves, and what the user is told."""

from __future__ import annotations

import pytest

from signalr.client import (
    GatewayRouteNotFound,
    SubscriptionKeyRejected,
    TransportChoice,
    TransportFailed,
)
from tests.client.conftest import SUBSCRIPTION_KEY, AppServerFactory, Gateway, GatewayFactory
from tests.client.inbox import connect

OTHER_PROFILE = "APIM is configured for the other profile (websocket vs sse-lp)"


async def _echo_round_trip(url: str, choice: TransportChoice, **options: object) -> list[str]:
    connection, inbox = connect(url, transport=choice, **options)
    await connection.start()
    try:
        await connection.send("echo", "gw", "via apim")
        assert await inbox.next() == ("echo", ("gw", "via apim (echo from server)"))
        return [connection.transport_name or "", connection.connected_url or ""]
    finally:
        await connection.stop()


async def test_websocket_profile_serves_websockets(gateway_ws: Gateway, app_server: AppServerFactory) -> None:
    _, hub = await app_server(gateway_ws.url)
    transport, connected = await _echo_round_trip(hub, TransportChoice.WEBSOCKETS)
    assert transport == "WebSockets"
    assert connected.startswith(f"{gateway_ws.url}/client/?hub=chat&asrs.op=%2Fchat")
    # Server side: the gateway relayed the socket, which closed normally (the client's Close message may make the
    # service close first; the exact close frame the client sends is checked in test_scripted_servers).
    await gateway_ws.log_line(r"websocket closed: (client|backend) closed with 1000")


@pytest.mark.parametrize(
    ("choice", "named"),
    [
        (TransportChoice.SERVER_SENT_EVENTS, "ServerSentEvents"),
        (TransportChoice.LONG_POLLING, "LongPolling"),
        (TransportChoice.SSE_THEN_LONG_POLLING, "ServerSentEvents or LongPolling"),
    ],
    ids=lambda v: getattr(v, "value", v),
)
async def test_websocket_profile_refuses_sse_and_long_polling_with_an_explanation(
    gateway_ws: Gateway, app_server: AppServerFactory, choice: TransportChoice, named: str
) -> None:
    _, hub = await app_server(gateway_ws.url)
    connection, inbox = connect(hub, transport=choice)
    with pytest.raises(GatewayRouteNotFound) as caught:
        await connection.start()
    host = gateway_ws.host
    assert str(caught.value).startswith(f"the gateway at {host} has no API for {named} on client/ — {OTHER_PROFILE}")
    assert connection.state.value == "Disconnected"
    # The 404 came from the gateway's connect URL, after a successful negotiate through it.
    connects = [e for e in inbox.trace if e.kind == "connect"]
    assert connects and all(e.status == 404 and e.host == host for e in connects)


@pytest.mark.parametrize("choice", [c for c in TransportChoice if c.family == "sse-lp"], ids=lambda c: c.value)
async def test_sse_lp_profile_serves_sse_and_long_polling(
    gateway_sse_lp: Gateway, app_server: AppServerFactory, choice: TransportChoice
) -> None:
    _, hub = await app_server(gateway_sse_lp.url)
    transport, connected = await _echo_round_trip(hub, choice)
    assert transport == ("LongPolling" if choice is TransportChoice.LONG_POLLING else "ServerSentEvents")
    assert connected.startswith(f"{gateway_sse_lp.url}/client/?hub=chat")


async def test_sse_lp_profile_refuses_websockets_without_falling_back(
    gateway_sse_lp: Gateway, app_server: AppServerFactory
) -> None:
    _, hub = await app_server(gateway_sse_lp.url)
    connection, inbox = connect(hub, transport=TransportChoice.WEBSOCKETS)
    with pytest.raises(TransportFailed) as caught:
        await connection.start()
    message = str(caught.value)
    assert "instead of 101 Switching Protocols" in message
    assert "sse-lp profile has only an HTTP API on client/" in message
    assert "no fallback from WebSockets" in message
    # Exactly one connect attempt, a WebSocket one: no silent fallback to SSE or LongPolling.
    assert [(e.kind, e.method) for e in inbox.trace if e.kind == "connect"] == [("connect", "WS")]


async def test_long_polling_stop_sends_delete_through_the_gateway(
    gateway: GatewayFactory, app_server: AppServerFactory
) -> None:
    with_delete = gateway("sse-lp", "--with-delete")
    without = gateway("sse-lp")
    for running, expected in ((with_delete, "service had already closed"), (without, "no DELETE operation")):
        _, hub = await app_server(running.url)
        connection, inbox = connect(hub, transport=TransportChoice.LONG_POLLING)
        await connection.start()
        await connection.stop()  # a gateway 404 on DELETE is not an error (apim.md §6)
        deletes = [e for e in inbox.trace if e.method == "DELETE"]
        assert len(deletes) == 1 and deletes[0].status == 404 and expected in deletes[0].detail, deletes
        assert connection.state.value == "Disconnected"
    # Server side: with the DELETE operation the gateway forwarded it; without, APIM's own 404 answered it.
    await with_delete.log_line(r"DELETE /client/.*connect-delete")
    await without.log_line(r"DELETE /client/.*OperationNotFound")


async def test_buffered_sse_fails_fast_and_sse_lp_falls_back_to_long_polling(
    gateway: GatewayFactory, app_server: AppServerFactory
) -> None:
    buffered = gateway("sse-lp", "--buffer-sse")
    _, hub = await app_server(buffered.url)
    connection, _ = connect(hub, transport=TransportChoice.SERVER_SENT_EVENTS, sse_open_timeout=1.0)
    with pytest.raises(TransportFailed, match="buffering the stream"):
        await connection.start()

    fallback, inbox = connect(hub, transport=TransportChoice.SSE_THEN_LONG_POLLING, sse_open_timeout=1.0)
    await fallback.start()
    try:
        assert fallback.transport_name == "LongPolling"
        await fallback.send("echo", "fb", "after fallback")
        assert await inbox.next() == ("echo", ("fb", "after fallback (echo from server)"))
    finally:
        await fallback.stop()
    # Both attempts are traced: SSE connect (failed), the fallback note, a fresh negotiate, then the LP connect.
    steps = [(e.kind, e.method) for e in inbox.trace if e.kind in ("negotiate", "connect", "error")]
    assert steps[:6] == [
        ("negotiate", "POST"),  # app server
        ("negotiate", "POST"),  # the gateway → service
        ("connect", "SSE"),
        ("error", ""),
        ("negotiate", "POST"),  # a fresh connection for LongPolling
        ("connect", "GET"),
    ]
    assert "falling back to LongPolling" in inbox.trace[[e.kind for e in inbox.trace].index("error")].detail


@pytest.mark.parametrize(
    ("profile", "choice"),
    [("websocket", TransportChoice.WEBSOCKETS), ("sse-lp", TransportChoice.SERVER_SENT_EVENTS),
     ("sse-lp", TransportChoice.LONG_POLLING)],
    ids=["ws", "sse", "lp"],
)  # fmt: skip
async def test_subscription_key_header_reaches_every_request(
    gateway: GatewayFactory, app_server: AppServerFactory, profile: str, choice: TransportChoice
) -> None:
    flags = ["--subscription-key", SUBSCRIPTION_KEY] + (["--with-delete"] if profile == "sse-lp" else [])
    running = gateway(profile, *flags)
    _, hub = await app_server(running.url)
    headers = {"Ocp-Apim-Subscription-Key": SUBSCRIPTION_KEY}
    await _echo_round_trip(hub, choice, headers=headers)

    for key, phrase in ((None, "missing"), ("wrong-key", "invalid")):
        connection, inbox = connect(hub, transport=choice, headers={"Ocp-Apim-Subscription-Key": key} if key else {})
        with pytest.raises(SubscriptionKeyRejected) as caught:
            await connection.start()
        assert str(caught.value).startswith("missing or invalid subscription key (Ocp-Apim-Subscription-Key)")
        assert f"Access denied due to {phrase} subscription key" in str(caught.value)
        assert all(SUBSCRIPTION_KEY not in repr(e) for e in inbox.trace)


async def test_trace_never_shows_tokens_or_keys(gateway: GatewayFactory, app_server: AppServerFactory) -> None:
    running = gateway("sse-lp", "--subscription-key", SUBSCRIPTION_KEY, "--with-delete")
    server, hub = await app_server(running.url)
    for choice in (TransportChoice.SERVER_SENT_EVENTS, TransportChoice.LONG_POLLING):
        connection, inbox = connect(hub, transport=choice, headers={"Ocp-Apim-Subscription-Key": SUBSCRIPTION_KEY})
        await connection.start()
        await connection.send("echo", "x", "y")
        await inbox.next()
        await connection.stop()
        text = repr(inbox.trace)
        assert SUBSCRIPTION_KEY not in text
        assert "eyJ" not in text  # no JWT, no fragment of one
        sse_gets = [e for e in inbox.trace if e.method == "SSE" and e.kind == "connect"]
        assert all("access_token=***" in e.url for e in sse_gets)
        assert {e.host for e in inbox.trace if e.kind in ("connect", "send", "close")} == {running.host}
    assert server.requests
