"""The codec against the official JS client's own protocol code (``@azure/web-pubsub-client``'s
``WebPubSubJsonProtocol`` / ``WebPubSubJsonReliableProtocol``, run by Node through ``js/codec_peer.mjs``): every
request the JS client writes decodes here to the same request, and every response encoded here parses there to the
same message. Binary data crosses the test boundary as ``{"$bytes": base64}`` (an ArrayBuffer in JS).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from webpubsub.subprotocol import (
    Ack,
    AckError,
    Connected,
    DataType,
    Disconnected,
    GroupMessage,
    JoinGroup,
    LeaveGroup,
    PingRequest,
    Pong,
    Request,
    Response,
    SendEvent,
    SendToGroup,
    SequenceAck,
    ServerMessage,
    decode_request,
    decode_response,
    encode_response,
)

ROOT = Path(__file__).resolve().parents[2]
PEER = Path(__file__).with_name("js") / "codec_peer.mjs"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules/@azure/web-pubsub-client").is_dir(),
    reason="needs node and node_modules/@azure/web-pubsub-client (make node)",
)


def run_peer(protocol: str, write: list[dict[str, Any]], parse: list[str]) -> dict[str, Any]:
    payload = json.dumps({"protocol": protocol, "write": write, "parse": parse})
    done = subprocess.run(
        ["node", str(PEER)], input=payload, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def b64(data: bytes) -> dict[str, str]:
    return {"$bytes": base64.b64encode(data).decode()}


BLOB = bytes(range(256))

# What the JS client's methods hand to writeMessage, and the request that must come out here.
JS_REQUESTS: list[tuple[dict[str, Any], Request]] = [
    ({"kind": "joinGroup", "group": "room", "ackId": 1}, JoinGroup("room", 1)),
    ({"kind": "leaveGroup", "group": "room", "ackId": 2}, LeaveGroup("room", 2)),
    (
        {"kind": "sendToGroup", "group": "room", "ackId": 3, "noEcho": True, "dataType": "json", "data": {"a": [1]}},
        SendToGroup("room", DataType.JSON, {"a": [1]}, 3, True),
    ),
    (
        {"kind": "sendToGroup", "group": "room", "noEcho": False, "dataType": "text", "data": "héllo"},
        SendToGroup("room", DataType.TEXT, "héllo", None, False),
    ),
    (
        {"kind": "sendToGroup", "group": "room", "ackId": 4, "noEcho": False, "dataType": "binary", "data": b64(BLOB)},
        SendToGroup("room", DataType.BINARY, BLOB, 4, False),
    ),
    (
        {"kind": "sendEvent", "event": "broadcastMessage", "ackId": 5, "dataType": "json", "data": {"name": "n"}},
        SendEvent("broadcastMessage", DataType.JSON, {"name": "n"}, 5),
    ),
    ({"kind": "sendEvent", "event": "e", "dataType": "binary", "data": b64(b"")}, SendEvent("e", DataType.BINARY, b"")),
    ({"kind": "sequenceAck", "sequenceId": 0}, SequenceAck(0)),
    ({"kind": "sequenceAck", "sequenceId": 2**53 - 1}, SequenceAck(2**53 - 1)),
    ({"kind": "ping"}, PingRequest()),
]


@pytest.mark.parametrize("protocol", ["json", "reliable"])
def test_requests_the_js_client_writes_decode_here(protocol: str) -> None:
    result = run_peer(protocol, [js for js, _ in JS_REQUESTS], [])
    assert result["name"] == (
        "json.reliable.webpubsub.azure.v1" if protocol == "reliable" else "json.webpubsub.azure.v1"
    )
    for frame, (_, expected) in zip(result["written"], JS_REQUESTS, strict=True):
        assert decode_request(frame) == expected, frame


RESPONSES: list[Response] = [
    Ack(1, True),
    Ack(2, False, AckError("Forbidden", "No permission to join group 'room'.")),
    Ack(3, False, AckError("Duplicate", "Message with ack-id: 3 has been processed")),
    GroupMessage("room", DataType.JSON, {"name": "alice", "message": "hi"}, "alice", 7),
    GroupMessage("room", DataType.TEXT, "plain", None, None),
    GroupMessage("room", DataType.BINARY, BLOB, "bob", 8),
    ServerMessage(DataType.JSON, {"target": "echo"}, 9),
    ServerMessage(DataType.TEXT, "Hello World"),
    ServerMessage(DataType.BINARY, b"\x00\xff"),
    Connected("alice", "conn-1", "reconnect-me"),
    Connected(None, "conn-2"),
    Disconnected("The connection is removed."),
    Disconnected(None),
    Pong(),
]


def expected_js(response: Response) -> dict[str, Any]:
    """The fields the JS client's parseMessages must produce for ``response``."""
    match response:
        case Ack():
            fields: dict[str, Any] = {"kind": "ack", "ackId": response.ack_id, "success": response.success}
            if response.error is not None:
                fields["error"] = {"name": response.error.name, "message": response.error.message}
            return fields
        case GroupMessage():
            data = b64(response.data) if response.data_type is DataType.BINARY else response.data
            fields = {"kind": "groupData", "group": response.group, "dataType": response.data_type.value, "data": data}
            if response.from_user_id is not None:
                fields["fromUserId"] = response.from_user_id
            if response.sequence_id is not None:
                fields["sequenceId"] = response.sequence_id
            return fields
        case ServerMessage():
            data = b64(response.data) if response.data_type is DataType.BINARY else response.data
            fields = {"kind": "serverData", "dataType": response.data_type.value, "data": data}
            if response.sequence_id is not None:
                fields["sequenceId"] = response.sequence_id
            return fields
        case Connected():
            fields = {"kind": "connected", "connectionId": response.connection_id}
            if response.user_id is not None:
                fields["userId"] = response.user_id
            if response.reconnection_token is not None:
                fields["reconnectionToken"] = response.reconnection_token
            return fields
        case Disconnected():
            fields = {"kind": "disconnected"}
            if response.message is not None:
                fields["message"] = response.message
            return fields
        case Pong():
            return {"kind": "pong"}
    raise AssertionError(response)


@pytest.mark.parametrize("protocol", ["json", "reliable"])
def test_responses_encoded_here_parse_in_the_js_client(protocol: str) -> None:
    result = run_peer(protocol, [], [encode_response(r) for r in RESPONSES])
    for parsed, response in zip(result["parsed"], RESPONSES, strict=True):
        assert (parsed is not None and "error" not in parsed) or isinstance(response, Ack), parsed
        expected = expected_js(response)
        assert {k: parsed.get(k) for k in expected} == expected, (parsed, response)
        extra = set(parsed) - set(expected) - {"type", "from", "event", "stream"}
        assert not extra, (extra, parsed)


def test_what_the_js_client_skips_this_codec_skips_too() -> None:
    skipped = [
        '{"type":"system","event":"somethingNew"}',
        '{"type":"message","from":"elsewhere","dataType":"json","data":1}',
        '{"type":"message","from":"group","group":"g","dataType":"xml","data":"<a/>"}',
        '{"type":"somethingNew"}',
    ]
    result = run_peer("reliable", [], skipped)
    assert result["parsed"] == [None] * len(skipped)
    assert [decode_response(frame) for frame in skipped] == [None] * len(skipped)
