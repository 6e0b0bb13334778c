"""The event handler: abuse protection first, then signed CloudEvents for connect (blocking: its answer sets the user,
groups, roles and state, or refuses the client before the upgrade), connected, disconnected and user events (the
answer goes back to the caller), checked by an independent receiver: the official ``@azure/web-pubsub-express``
``WebPubSubEventHandler`` under Node (``js/event_handler.mjs``), and the ``ce-signature`` HMAC recomputed here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.processes import Process, free_port
from tests.support.wps_emulator import WebPubSubEmulator, start_webpubsub_emulator

from .helpers import JSON, RELIABLE, RawClient, client_url, eventually, service

NODE_HANDLER = Path(__file__).parent / "js" / "event_handler.mjs"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


class NodeHandler:
    """The Node event handler process and every line it reported."""

    def __init__(self, allowed_endpoint: str) -> None:
        self.process = Process(["node", str(NODE_HANDLER), "chat", allowed_endpoint])
        first = json.loads(self.process.readline(20))
        self.port = int(first["port"])
        self.lines: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        while True:
            try:
                line = self.process.readline(0.01)
            except TimeoutError:
                return self.lines
            self.lines.append(json.loads(line))

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        return [line for line in self.poll() if "event" in line and (name is None or line["event"] == name)]

    def requests(self) -> list[dict[str, Any]]:
        return [line for line in self.poll() if "method" in line]

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[WebPubSubEmulator, NodeHandler]]:
    port = free_port()
    handler = NodeHandler(f"http://127.0.0.1:{port}")
    try:
        template = f"http://127.0.0.1:{handler.port}/eventhandler/{{event}}"
        with start_webpubsub_emulator(port=port, event_handler=template) as emulator:
            yield emulator, handler
    finally:
        handler.stop()


def _signature_ok(header: str, connection_id: str, key: str) -> bool:
    expected = "sha256=" + hmac.new(key.encode(), connection_id.encode(), hashlib.sha256).hexdigest()
    return expected in [part.strip() for part in header.split(",")]


async def test_events_of_a_connection_in_order_signed_and_answered(
    stack: tuple[WebPubSubEmulator, NodeHandler],
) -> None:
    emulator, handler = stack
    client = await RawClient.connect(client_url(emulator, user_id="alice") + "&note=hello", RELIABLE)
    cid = client.connection_id
    try:
        await eventually(lambda: handler.events("connected"), what="the connected event")
        await client.send({"type": "event", "event": "echo", "dataType": "json", "data": {"a": [1, 2]}, "ackId": 1})
        assert (await client.ack(1))["success"] is True
        reply = await client.wait_for(lambda m: m.get("type") == "message")
        assert reply == {
            "sequenceId": 1,
            "type": "message",
            "from": "server",
            "dataType": "json",
            "data": {"a": [1, 2]},
        }
        await client.send({"type": "event", "event": "echo", "dataType": "text", "data": "txt", "ackId": 2})
        await client.send({"type": "event", "event": "echo", "dataType": "binary", "data": "AAEC", "ackId": 3})
        await client.send({"type": "event", "event": "silent", "dataType": "text", "data": "-", "ackId": 4})
        await client.send({"type": "event", "event": "fail", "dataType": "text", "data": "-", "ackId": 5})
        failed = await client.ack(5)
        assert failed["success"] is False and failed["error"]["name"] == "InvocationFailed"
        assert "400" in failed["error"]["message"]
        replies = [m for m in client.messages() if m.get("type") == "message"]
        assert [(m["dataType"], m["data"]) for m in replies] == [
            ("json", {"a": [1, 2]}),
            ("text", "txt"),
            ("binary", "AAEC"),
        ]
        await client.send({"type": "event", "event": "echo", "dataType": "text", "data": "again", "ackId": 1})
        duplicate = await client.wait_for(
            lambda m: m.get("type") == "ack" and m.get("error", {}).get("name") == "Duplicate"
        )
        assert duplicate["ackId"] == 1
    finally:
        await client.close()
    await eventually(lambda: handler.events("disconnected"), what="the disconnected event")
    mine = [e for e in handler.events() if e["context"]["connectionId"] == cid]
    assert [e["event"] for e in mine] == ["connect", "connected", *["user"] * 5, "disconnected"]
    connect = mine[0]
    assert connect["claims"]["sub"] == ["alice"]
    assert connect["query"]["note"] == ["hello"] and "access_token" not in connect["query"]
    assert connect["subprotocols"] == [RELIABLE]
    assert "authorization" not in [h.lower() for h in connect["headers"]]
    assert [(e["dataType"], e["data"]) for e in mine[2:5]] == [
        ("json", {"a": [1, 2]}),
        ("text", "txt"),
        ("binary", "AAEC"),
    ]
    for event in mine:
        assert event["context"]["hub"] == "chat"
        assert event["context"]["userId"] == "alice"
        assert event["context"]["origin"] == f"127.0.0.1:{emulator.port}"
        assert _signature_ok(event["context"]["signature"], cid, emulator.access_key)
    # Abuse protection: one OPTIONS, on the template's validate URL, before any event, never repeated.
    requests = handler.requests()
    options = [r for r in requests if r["method"] == "OPTIONS"]
    assert len(options) == 1 and options[0]["url"] == "/eventhandler/validate"
    assert requests[0]["method"] == "OPTIONS"
    assert options[0]["origin"] == f"127.0.0.1:{emulator.port}"
    for request in requests[1:]:
        assert request["method"] == "POST"
        assert _signature_ok(request["signature"], request["connectionId"], emulator.access_key)
        assert not _signature_ok(request["signature"], request["connectionId"], "another key")


async def test_connect_answer_sets_user_groups_roles_and_state(stack: tuple[WebPubSubEmulator, NodeHandler]) -> None:
    emulator, handler = stack
    client = await RawClient.connect(client_url(emulator, user_id="token-user") + "&mode=assign", JSON)
    try:
        assert client.connected["userId"] == "assigned-user"
        rest = service(emulator)
        assert rest.user_exists("assigned-user") and not rest.user_exists("token-user")
        assert rest.group_exists("from-handler")
        await client.send({"type": "sendToGroup", "group": "from-handler", "dataType": "text", "data": "x", "ackId": 1})
        assert (await client.ack(1))["success"] is True
        await client.send({"type": "sendToGroup", "group": "elsewhere", "dataType": "text", "data": "x", "ackId": 2})
        assert (await client.ack(2))["error"]["name"] == "Forbidden"
        await client.send({"type": "event", "event": "state", "dataType": "text", "data": "-", "ackId": 3})
        await client.ack(3)
        await client.send({"type": "event", "event": "silent", "dataType": "text", "data": "-", "ackId": 4})
        await client.ack(4)
        states = [
            e["context"]["states"]
            for e in handler.events("user")
            if e["context"]["connectionId"] == client.connection_id
        ]
        assert states == [{"color": "blue"}, {"color": "blue", "seen": True}]
    finally:
        await client.close()


async def test_connect_refused_by_the_handler_gets_its_status_before_the_upgrade(
    stack: tuple[WebPubSubEmulator, NodeHandler],
) -> None:
    emulator, _ = stack
    async with aiohttp.ClientSession() as session:
        url = client_url(emulator, user_id="x").replace("ws://", "http://") + "&mode=refuse"
        headers = {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(),
        }
        async with session.get(url, headers=headers) as response:
            assert response.status == 401
            assert await response.text() == "not you"
    assert not service(emulator).user_exists("x")


async def test_simple_client_frames_are_message_events(stack: tuple[WebPubSubEmulator, NodeHandler]) -> None:
    emulator, handler = stack
    client = await RawClient.connect(client_url(emulator, user_id="simple"), None)
    try:
        await client.ws.send_str("hello")
        reply = await client.next_frame()
        assert (reply.type, reply.data) == (aiohttp.WSMsgType.TEXT, "got hello")
        await client.ws.send_bytes(b"\x00\xff")
        reply = await client.next_frame()
        assert reply.data == "got binary"
        events = [e for e in handler.events("user") if e["context"]["userId"] == "simple"]
        assert [(e["name"], e["dataType"], e["data"]) for e in events] == [
            ("message", "text", "hello"),
            ("message", "binary", "AP8="),
        ]
    finally:
        await client.close()
