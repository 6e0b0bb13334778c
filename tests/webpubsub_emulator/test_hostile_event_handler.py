"""Hostile event-handler answers (huge body, bad JSON, wrong content type, timeout, refused connection, no abuse
protection): the client gets a clear error or ack, and the emulator keeps serving everyone else."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from tests.support.processes import free_port
from tests.support.wps_emulator import WebPubSubEmulator, start_webpubsub_emulator

from .helpers import JSON, RawClient, client_url, service

HUGE = b"x" * (2 * 1024 * 1024)


class HostileHandler:
    """An aiohttp event handler whose answers are chosen by the connect query ``mode`` or the user event's name."""

    def __init__(self) -> None:
        self.allow = True
        self.options = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "OPTIONS":
            self.options += 1
            if not self.allow:
                return web.Response(status=200)  # no WebHook-Allowed-Origin: delivery not allowed
            return web.Response(headers={"WebHook-Allowed-Origin": "*"})
        event = request.match_info["event"]
        body = await request.read()
        if event == "connect":
            mode = json.loads(body).get("query", {}).get("mode", [""])[0]
            if mode == "badjson":
                return web.Response(body=b"{not json", content_type="application/json")
            if mode == "huge":
                return web.Response(body=HUGE, content_type="application/json")
            if mode == "badfields":
                return web.json_response({"userId": 42, "groups": "not-a-list"})
            if mode == "slow":
                await asyncio.sleep(5)
            if mode == "crash":
                return web.Response(status=503, text="upstream down")
            return web.Response(status=204)
        if event == "huge":
            return web.Response(body=HUGE, content_type="text/plain")
        if event == "wrongtype":
            return web.Response(body=b"\x89PNG", content_type="image/png")
        if event == "badjson":
            return web.Response(body=b"[1,", content_type="application/json")
        if event == "slow":
            await asyncio.sleep(5)
        return web.Response(status=204)


@pytest.fixture
async def hostile() -> AsyncIterator[tuple[WebPubSubEmulator, HostileHandler]]:
    handler = HostileHandler()
    app = web.Application()
    app.router.add_route("*", "/{event}", handler.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    emulator = start_webpubsub_emulator(
        "--event-handler-timeout", "1", event_handler=f"http://127.0.0.1:{port}/{{event}}"
    )
    try:
        yield emulator, handler
    finally:
        emulator.stop()
        await runner.cleanup()


async def _handshake(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(url, protocols=(JSON,)):
                return 101, ""
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status, exc.message


async def _status_and_text(url: str) -> tuple[int, str]:
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "MDEyMzQ1Njc4OWFiY2RlZg==",
    }
    async with aiohttp.ClientSession() as session:
        async with session.get(url.replace("ws://", "http://"), headers=headers) as response:
            return response.status, await response.text()


async def test_hostile_connect_answers_refuse_the_client_with_a_clear_500(
    hostile: tuple[WebPubSubEmulator, HostileHandler],
) -> None:
    emulator, _ = hostile
    expectations = {
        "badjson": "not JSON",
        "huge": "larger than",
        "badfields": "userId",
        "slow": "no answer in time",
        "crash": "answered 503",
    }
    for mode, needle in expectations.items():
        status, text = await _status_and_text(client_url(emulator, user_id="u") + f"&mode={mode}")
        assert status == 500 and needle in text, (mode, status, text)
        assert emulator.access_key not in text
    # Still serving: a well-behaved connect goes through.
    client = await RawClient.connect(client_url(emulator, user_id="fine"), JSON)
    await client.close()


async def test_hostile_user_event_answers_are_invocation_failed_acks(
    hostile: tuple[WebPubSubEmulator, HostileHandler],
) -> None:
    emulator, _ = hostile
    client = await RawClient.connect(client_url(emulator, user_id="u", roles=["webpubsub.joinLeaveGroup"]), JSON)
    other = await RawClient.connect(client_url(emulator, user_id="other"), JSON)
    try:
        expectations = {"huge": "larger than", "wrongtype": "image/png", "badjson": "JSON", "slow": "in time"}
        for ack_id, (event, needle) in enumerate(expectations.items(), start=1):
            await client.send({"type": "event", "event": event, "dataType": "text", "data": "x", "ackId": ack_id})
            if event == "slow":  # the other connections are not held up meanwhile
                service(emulator).send_to_user("other", "meanwhile", content_type="text/plain")
                assert (await other.wait_for(lambda m: m.get("data") == "meanwhile", timeout=0.9))["from"] == "server"
            ack = await client.ack(ack_id)
            assert ack["success"] is False and ack["error"]["name"] == "InvocationFailed", ack
            assert needle in ack["error"]["message"], ack
        # The connection still works after each failure.
        await client.send({"type": "joinGroup", "group": "g", "ackId": 99})
        assert (await client.ack(99))["success"] is True
        # Without an ackId a failed event ends the connection, with the reason (concept-ack).
        await client.send({"type": "event", "event": "wrongtype", "dataType": "text", "data": "x"})
        closed = await client.wait_closed()
        assert closed.data == 1008
        assert "InvocationFailed" in client.messages()[-1]["message"]
    finally:
        await client.close()
        await other.close()


async def test_abuse_protection_refusal_is_not_cached(hostile: tuple[WebPubSubEmulator, HostileHandler]) -> None:
    emulator, handler = hostile
    handler.allow = False
    status, text = await _status_and_text(client_url(emulator, user_id="u"))
    assert status == 500 and "abuse protection" in text
    handler.allow = True
    client = await RawClient.connect(client_url(emulator, user_id="u"), JSON)
    await client.close()
    count = handler.options
    client = await RawClient.connect(client_url(emulator, user_id="u"), JSON)
    await client.close()
    assert handler.options == count  # the allowed result is remembered


async def test_unreachable_event_handler() -> None:
    closed_port = free_port()
    with start_webpubsub_emulator(event_handler=f"http://127.0.0.1:{closed_port}/{{event}}") as emulator:
        status, text = await _status_and_text(client_url(emulator, user_id="u"))
        assert status == 500 and "unreachable" in text
        assert service(emulator).user_exists("u") is False
