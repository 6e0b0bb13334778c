"""The Web PubSub JSON subprotocol codec: every example of the public references, exact wire text, round trips,
the official Python client's own protocol code as the peer on both sides, and malformed, oversized and hostile input.

References (the examples below are theirs; where a reference writes a comment or a trailing comma inside its JSON,
the example here is the same object written as valid JSON):

- REQ: https://github.com/MicrosoftDocs/azure-docs/blob/main/articles/azure-web-pubsub/includes/reference-json-requests.md
- JSON: https://learn.microsoft.com/azure/azure-web-pubsub/reference-json-webpubsub-subprotocol
- RELIABLE: https://learn.microsoft.com/azure/azure-web-pubsub/reference-json-reliable-webpubsub-subprotocol
- CLIENTS: https://learn.microsoft.com/azure/azure-web-pubsub/howto-develop-reliable-clients
- ACK: https://learn.microsoft.com/azure/azure-web-pubsub/concept-ack
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from azure.messaging.webpubsubclient.models import _models as sdk  # the official client's protocol code

from webpubsub.subprotocol import (
    JSON_SUBPROTOCOL,
    MAX_DEPTH,
    MAX_ID,
    RELIABLE_JSON_SUBPROTOCOL,
    SUBPROTOCOLS,
    Ack,
    AckError,
    Connected,
    DataType,
    Disconnected,
    GroupMessage,
    InvalidMessage,
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
    describe,
    encode_request,
    encode_response,
)

PNG = bytes([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0xFF])
B64 = base64.b64encode(PNG).decode()


def test_names() -> None:
    assert JSON_SUBPROTOCOL == "json.webpubsub.azure.v1"
    assert RELIABLE_JSON_SUBPROTOCOL == "json.reliable.webpubsub.azure.v1"
    assert SUBPROTOCOLS == (JSON_SUBPROTOCOL, RELIABLE_JSON_SUBPROTOCOL)
    assert [t.value for t in DataType] == ["json", "text", "binary"]
    assert issubclass(InvalidMessage, ValueError)


# ---------------------------------------------------------------------------------------------------------------------
# The references' examples.

REQUEST_EXAMPLES: list[tuple[str, str, Request]] = [
    ("REQ join groups", '{"type": "joinGroup", "group": "<group_name>", "ackId": 1}', JoinGroup("<group_name>", 1)),
    ("REQ leave groups", '{"type": "leaveGroup", "group": "<group_name>", "ackId": 1}', LeaveGroup("<group_name>", 1)),
    (
        "REQ publish, format",
        '{"type": "sendToGroup", "group": "<group_name>", "ackId": 1, "noEcho": true, "dataType": "json", "data": {}}',
        SendToGroup("<group_name>", DataType.JSON, {}, 1, True),
    ),
    (
        "REQ publish, case 1 text",
        '{"type": "sendToGroup", "group": "<group_name>", "dataType": "text", "data": "text data", "ackId": 1}',
        SendToGroup("<group_name>", DataType.TEXT, "text data", 1),
    ),
    (
        "REQ publish, case 2 json (no ackId)",
        '{"type": "sendToGroup", "group": "<group_name>", "dataType": "json", "data": {"hello": "world"}}',
        SendToGroup("<group_name>", DataType.JSON, {"hello": "world"}),
    ),
    (
        "REQ publish, case 3 binary",
        f'{{"type": "sendToGroup", "group": "<group_name>", "dataType": "binary", "data": "{B64}", "ackId": 1}}',
        SendToGroup("<group_name>", DataType.BINARY, PNG, 1),
    ),
    (
        "REQ event, case 1 text",
        '{"type": "event", "event": "<event_name>", "ackId": 1, "dataType": "text", "data": "text data"}',
        SendEvent("<event_name>", DataType.TEXT, "text data", 1),
    ),
    (
        "REQ event, case 2 json",
        '{"type": "event", "event": "<event_name>", "ackId": 1, "dataType": "json", "data": {"hello": "world"}}',
        SendEvent("<event_name>", DataType.JSON, {"hello": "world"}, 1),
    ),
    (
        "REQ event, case 3 binary",
        f'{{"type": "event", "event": "<event_name>", "ackId": 1, "dataType": "binary", "data": "{B64}"}}',
        SendEvent("<event_name>", DataType.BINARY, PNG, 1),
    ),
    (
        "REQ: 'If dataType isn't specified, it defaults to json'",
        '{"type": "sendToGroup", "group": "g", "data": [1, 2]}',
        SendToGroup("g", DataType.JSON, [1, 2]),
    ),
    ("REQ: noEcho is optional", '{"type":"sendToGroup","group":"g","dataType":"text","data":"x"}', None),
    ("CLIENTS sample sequence ack", '{"type": "sequenceAck", "sequenceId": 1}', SequenceAck(1)),
    (
        "CLIENTS sample group send",
        '{"type": "sendToGroup", "group": "group1", "dataType": "text", "data": "text data", "ackId": 1}',
        SendToGroup("group1", DataType.TEXT, "text data", 1),
    ),
    ("ping (the official JS client's keep-alive)", '{"type":"ping"}', PingRequest()),
]


@pytest.mark.parametrize(("name", "text", "expected"), REQUEST_EXAMPLES, ids=[e[0] for e in REQUEST_EXAMPLES])
def test_request_examples(name: str, text: str, expected: Request | None) -> None:
    message = decode_request(text)
    if expected is None:
        expected = SendToGroup("g", DataType.TEXT, "x", None, False)
    assert message == expected
    assert decode_request(text.encode("utf-8")) == expected  # a binary frame holding UTF-8 says the same
    assert decode_request(encode_request(message)) == message


RESPONSE_EXAMPLES: list[tuple[str, str, Response]] = [
    (
        "JSON ack format",
        '{"type": "ack", "ackId": 1, "success": false, '
        '"error": {"name": "Forbidden|InternalServerError|Duplicate", "message": "<error_detail>"}}',
        Ack(1, False, AckError("Forbidden|InternalServerError|Duplicate", "<error_detail>")),
    ),
    ("CLIENTS sample ack", '{"type": "ack", "ackId": 1, "success": true}', Ack(1, True)),
    (
        "ACK format",
        '{"type": "ack", "ackId": 1, "success": false, '
        '"error": {"name": "Forbidden|InternalServerError|Duplicate|InvocationFailed", "message": "<error_detail>"}}',
        Ack(1, False, AckError("Forbidden|InternalServerError|Duplicate|InvocationFailed", "<error_detail>")),
    ),
    (
        "CLIENTS InternalServerError ack",
        '{"type": "ack", "ackId": 1, "success": false, '
        '"error": {"name": "InternalServerError", "message": "Internal server error"}}',
        Ack(1, False, AckError("InternalServerError", "Internal server error")),
    ),
    (
        "CLIENTS Duplicate ack",
        '{"type": "ack", "ackId": 1, "success": false, '
        '"error": {"name": "Duplicate", "message": "Message with ack-id: 1 has been processed"}}',
        Ack(1, False, AckError("Duplicate", "Message with ack-id: 1 has been processed")),
    ),
    (
        "JSON message from a group",
        '{"type": "message", "from": "group", "group": "<group_name>", "dataType": "json", "data": {}, '
        '"fromUserId": "abc"}',
        GroupMessage("<group_name>", DataType.JSON, {}, "abc"),
    ),
    (
        "JSON message from the server",
        '{"type": "message", "from": "server", "dataType": "json", "data": {}}',
        ServerMessage(DataType.JSON, {}),
    ),
    (
        "JSON case 1 text",
        '{"type": "message", "from": "server", "dataType": "text", "data": "Hello World"}',
        ServerMessage(DataType.TEXT, "Hello World"),
    ),
    (
        "JSON case 2 json",
        '{"type": "message", "from": "server", "dataType": "json", "data": {"Hello": "World"}}',
        ServerMessage(DataType.JSON, {"Hello": "World"}),
    ),
    (
        "JSON case 3 binary",
        f'{{"type": "message", "from": "server", "dataType": "binary", "data": "{B64}"}}',
        ServerMessage(DataType.BINARY, PNG),
    ),
    (
        "REQ publish case 1, what a group member receives",
        '{"type": "message", "from": "group", "group": "<group_name>", "dataType": "text", "data": "text data"}',
        GroupMessage("<group_name>", DataType.TEXT, "text data"),
    ),
    (
        "REQ publish case 3, what a group member receives",
        f'{{"type": "message", "from": "group", "group": "<group_name>", "dataType": "binary", "data": "{B64}"}}',
        GroupMessage("<group_name>", DataType.BINARY, PNG),
    ),
    (
        "RELIABLE group message",
        '{"sequenceId": 1, "type": "message", "from": "group", "group": "<group_name>", "dataType": "json", '
        '"data": {}, "fromUserId": "abc"}',
        GroupMessage("<group_name>", DataType.JSON, {}, "abc", 1),
    ),
    (
        "RELIABLE server message, case 1",
        '{"sequenceId": 1, "type": "message", "from": "server", "dataType": "text", "data": "Hello World"}',
        ServerMessage(DataType.TEXT, "Hello World", 1),
    ),
    (
        "JSON connected",
        '{"type": "system", "event": "connected", "userId": "user1", "connectionId": "abcdefghijklmnop"}',
        Connected("user1", "abcdefghijklmnop"),
    ),
    (
        "RELIABLE connected",
        '{"type": "system", "event": "connected", "userId": "user1", "connectionId": "abcdefghijklmnop", '
        '"reconnectionToken": "<token>"}',
        Connected("user1", "abcdefghijklmnop", "<token>"),
    ),
    (
        "CLIENTS connected (no userId)",
        '{"type":"system","event":"connected","connectionId": "<connection_id>", '
        '"reconnectionToken": "<reconnection_token>"}',
        Connected(None, "<connection_id>", "<reconnection_token>"),
    ),
    (
        "JSON disconnected",
        '{"type": "system", "event": "disconnected", "message": "reason"}',
        Disconnected("reason"),
    ),
    ("pong", '{"type":"pong"}', Pong()),
]


@pytest.mark.parametrize(("name", "text", "expected"), RESPONSE_EXAMPLES, ids=[e[0] for e in RESPONSE_EXAMPLES])
def test_response_examples(name: str, text: str, expected: Response) -> None:
    message = decode_response(text)
    assert message == expected
    assert decode_response(text.encode("utf-8")) == expected
    assert decode_response(encode_response(expected)) == expected


# ---------------------------------------------------------------------------------------------------------------------
# Exact wire text.

REQUEST_WIRE: list[tuple[Request, str]] = [
    (JoinGroup("g"), '{"type":"joinGroup","group":"g"}'),
    (JoinGroup("g", 7), '{"type":"joinGroup","group":"g","ackId":7}'),
    (LeaveGroup("g", 0), '{"type":"leaveGroup","group":"g","ackId":0}'),
    (
        SendToGroup("g", DataType.JSON, {"name": "é", "n": 1.5}, 2),
        '{"type":"sendToGroup","group":"g","ackId":2,"noEcho":false,"dataType":"json","data":{"name":"é","n":1.5}}',
    ),
    (
        SendToGroup("g", DataType.BINARY, b"\x00\xff", None, True),
        '{"type":"sendToGroup","group":"g","noEcho":true,"dataType":"binary","data":"AP8="}',
    ),
    (
        SendEvent("broadcastMessage", DataType.TEXT, "hi", 3),
        '{"type":"event","event":"broadcastMessage","ackId":3,"dataType":"text","data":"hi"}',
    ),
    (SendEvent("e", DataType.JSON, None), '{"type":"event","event":"e","dataType":"json","data":null}'),
    (SequenceAck(MAX_ID), '{"type":"sequenceAck","sequenceId":18446744073709551615}'),
    (PingRequest(), '{"type":"ping"}'),
]


@pytest.mark.parametrize(("message", "wire"), REQUEST_WIRE)
def test_request_wire(message: Request, wire: str) -> None:
    assert encode_request(message) == wire
    assert decode_request(wire) == message


RESPONSE_WIRE: list[tuple[Response, str]] = [
    (Ack(1, True), '{"type":"ack","ackId":1,"success":true}'),
    (
        Ack(2, False, AckError("Forbidden", "no")),
        '{"type":"ack","ackId":2,"success":false,"error":{"name":"Forbidden","message":"no"}}',
    ),
    (
        GroupMessage("g", DataType.TEXT, "hi", "alice", 5),
        '{"type":"message","from":"group","group":"g","dataType":"text","data":"hi","fromUserId":"alice","sequenceId":5}',
    ),
    (
        GroupMessage("g", DataType.BINARY, b"", None, None),
        '{"type":"message","from":"group","group":"g","dataType":"binary","data":""}',
    ),
    (
        ServerMessage(DataType.JSON, {"a": [1, True, None]}),
        '{"type":"message","from":"server","dataType":"json","data":{"a":[1,true,null]}}',
    ),
    (
        Connected("u", "c", "t"),
        '{"type":"system","event":"connected","userId":"u","connectionId":"c","reconnectionToken":"t"}',
    ),
    (Connected(None, "c"), '{"type":"system","event":"connected","connectionId":"c"}'),
    (Disconnected("bye"), '{"type":"system","event":"disconnected","message":"bye"}'),
    (Disconnected(None), '{"type":"system","event":"disconnected"}'),
    (Pong(), '{"type":"pong"}'),
]


@pytest.mark.parametrize(("message", "wire"), RESPONSE_WIRE)
def test_response_wire(message: Response, wire: str) -> None:
    assert encode_response(message) == wire
    assert decode_response(wire) == message


def test_lone_surrogate_is_escaped_so_the_frame_stays_utf8() -> None:
    message = decode_request('{"type":"sendToGroup","group":"g","dataType":"text","data":"a\\udcffb"}')
    assert isinstance(message, SendToGroup) and message.data == "a\udcffb"
    relayed = encode_response(GroupMessage("g", DataType.TEXT, message.data))
    relayed.encode("utf-8")  # would raise for an unescaped lone surrogate
    assert "\\udcff" in relayed
    decoded = decode_response(relayed)
    assert isinstance(decoded, GroupMessage) and decoded.data == "a\udcffb"


# ---------------------------------------------------------------------------------------------------------------------
# The official Python client's protocol code as the peer.

SDK_REQUESTS: list[tuple[Any, Request]] = [
    (sdk.JoinGroupMessage(group="g", ack_id=1), JoinGroup("g", 1)),
    (sdk.LeaveGroupMessage(group="g", ack_id=2), LeaveGroup("g", 2)),
    (sdk.SendToGroupMessage(data_type="json", data={"x": 1}, group="g", no_echo=True, ack_id=3), None),
    (sdk.SendToGroupMessage(data_type="text", data="hi", group="g", no_echo=False), None),
    (sdk.SendToGroupMessage(data_type="binary", data=memoryview(PNG), group="g", no_echo=False, ack_id=4), None),
    (
        sdk.SendEventMessage(data_type="text", data="hi", event="echo", ack_id=5),
        SendEvent("echo", DataType.TEXT, "hi", 5),
    ),
    (sdk.SequenceAckMessage(sequence_id=9), SequenceAck(9)),
]


@pytest.mark.parametrize(("sdk_message", "expected"), SDK_REQUESTS)
def test_official_client_requests_decode(sdk_message: Any, expected: Request | None) -> None:
    wire = sdk.WebPubSubClientProtocol.write_message(sdk_message)
    message = decode_request(wire)
    if expected is None:
        data = bytes(sdk_message.data) if sdk_message.data_type == "binary" else sdk_message.data
        expected = SendToGroup(
            sdk_message.group, DataType(sdk_message.data_type), data, sdk_message.ack_id, sdk_message.no_echo
        )
    assert message == expected


@pytest.mark.parametrize(("message", "wire"), RESPONSE_WIRE[:-1])  # the 1.1.0 SDK logs "wrong message type" for pong
def test_official_client_reads_our_responses(message: Response, wire: str) -> None:
    parsed = sdk.WebPubSubClientProtocol.parse_messages(encode_response(message))
    match message:
        case Ack():
            assert isinstance(parsed, sdk.AckMessage)
            assert (parsed.ack_id, parsed.success) == (message.ack_id, message.success)
            if message.error is not None:
                assert parsed.error is not None
                assert (parsed.error.name, parsed.error.message) == (message.error.name, message.error.message)
        case GroupMessage():
            assert isinstance(parsed, sdk.GroupDataMessage)
            assert (parsed.group, parsed.from_user_id, parsed.sequence_id) == (
                message.group,
                message.from_user_id,
                message.sequence_id,
            )
            data = bytes(parsed.data) if message.data_type is DataType.BINARY else parsed.data
            assert data == message.data
        case ServerMessage():
            assert isinstance(parsed, sdk.ServerDataMessage)
            assert parsed.data == message.data and parsed.sequence_id == message.sequence_id
        case Connected():
            assert isinstance(parsed, sdk.ConnectedMessage)
            assert (parsed.user_id, parsed.connection_id, parsed.reconnection_token) == (
                message.user_id,
                message.connection_id,
                message.reconnection_token,
            )
        case Disconnected():
            assert isinstance(parsed, sdk.DisconnectedMessage)
            assert parsed.message == message.message


# ---------------------------------------------------------------------------------------------------------------------
# What a client skips (forward compatibility, as the official clients do).

SKIPPED = [
    '{"type":"invokeResponse","invocationId":"1","success":true}',
    '{"type":"system","event":"somethingNew"}',
    '{"type":"message","from":"somewhere","dataType":"json","data":1}',
    '{"type":"message","from":"group","group":"g","dataType":"protobuf","data":"AA=="}',
    '{"type":"streamAck","streamId":"s"}',
]


@pytest.mark.parametrize("text", SKIPPED)
def test_client_skips_unknown_kinds(text: str) -> None:
    assert decode_response(text) is None


def test_unknown_fields_are_ignored() -> None:
    assert decode_request('{"type":"joinGroup","group":"g","extra":{"x":[1]}}') == JoinGroup("g")
    assert decode_response('{"type":"ack","ackId":1,"success":true,"new":1}') == Ack(1, True)


def test_null_optionals_count_as_absent() -> None:
    assert decode_request('{"type":"joinGroup","group":"g","ackId":null}') == JoinGroup("g")
    assert decode_request('{"type":"sendToGroup","group":"g","noEcho":null,"dataType":null,"data":1}') == SendToGroup(
        "g", DataType.JSON, 1
    )
    assert decode_response('{"type":"ack","ackId":1,"success":true,"error":null}') == Ack(1, True)
    assert decode_response('{"type":"system","event":"connected","userId":null,"connectionId":"c"}') == Connected(
        None, "c"
    )


# ---------------------------------------------------------------------------------------------------------------------
# Malformed and hostile input: InvalidMessage with a message that says what is wrong, nothing else.

BAD_REQUESTS: list[tuple[str | bytes, str]] = [
    ("", "not valid JSON"),
    ("{", "not valid JSON"),
    ("[]", "must be a JSON object"),
    ('"joinGroup"', "must be a JSON object"),
    ("null", "must be a JSON object"),
    (b"\xff\xfe{}", "not valid UTF-8"),
    ("{}", "'type' must be a string"),
    ('{"type":1}', "'type' must be a string"),
    ('{"type":"bogus"}', "Unknown request type 'bogus'"),
    ('{"type":"ack","ackId":1,"success":true}', "Unknown request type 'ack'"),
    ('{"type":"joinGroup"}', "missing required property 'group'"),
    ('{"type":"joinGroup","group":""}', "'group' must be a non-empty string"),
    ('{"type":"joinGroup","group":5}', "'group' must be a non-empty string"),
    ('{"type":"leaveGroup","group":null}', "'group' must be a non-empty string"),
    ('{"type":"joinGroup","group":"g","ackId":"1"}', "'ackId' must be an integer"),
    ('{"type":"joinGroup","group":"g","ackId":true}', "'ackId' must be an integer"),
    ('{"type":"joinGroup","group":"g","ackId":-1}', "'ackId' must be an integer"),
    ('{"type":"joinGroup","group":"g","ackId":1.0}', "'ackId' must be an integer"),
    ('{"type":"joinGroup","group":"g","ackId":18446744073709551616}', "'ackId' must be an integer"),
    ('{"type":"sendToGroup","group":"g","dataType":"json"}', "missing required property 'data'"),
    ('{"type":"sendToGroup","group":"g","dataType":"xml","data":1}', "'dataType' must be json, text or binary"),
    ('{"type":"sendToGroup","group":"g","dataType":"protobuf","data":""}', "'dataType' must be json, text or binary"),
    ('{"type":"sendToGroup","group":"g","dataType":7,"data":1}', "'dataType' must be a string"),
    ('{"type":"sendToGroup","group":"g","dataType":"text","data":1}', "'data' must be a string"),
    ('{"type":"sendToGroup","group":"g","dataType":"binary","data":"***"}', "not valid base64"),
    ('{"type":"sendToGroup","group":"g","dataType":"binary","data":"AP8"}', "not valid base64"),
    ('{"type":"sendToGroup","group":"g","dataType":"binary","data":"é"}', "not valid base64"),
    ('{"type":"sendToGroup","group":"g","noEcho":"yes","data":1}', "'noEcho' must be true or false"),
    ('{"type":"event","dataType":"text","data":"x"}', "missing required property 'event'"),
    ('{"type":"event","event":"","data":"x"}', "'event' must be a non-empty string"),
    ('{"type":"sequenceAck"}', "missing required property 'sequenceId'"),
    ('{"type":"sequenceAck","sequenceId":null}', "'sequenceId' must be an integer"),
    ('{"type":"sequenceAck","sequenceId":"<sequenceId>"}', "'sequenceId' must be an integer"),
    ('{"type":"event","event":"e","data":NaN}', "NaN is not a JSON value"),
    ('{"type":"event","event":"e","data":-Infinity}', "-Infinity is not a JSON value"),
    ('{"type":"event","event":"e","data":1e999}', "out of range"),
    ('{"type":"event","event":"e","data":' + "9" * 5000 + "}", "too many digits"),
    ('{"type":"event","event":"e","data":' + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "}", "nested deeper"),
    ('{"type":"event","event":"e","data":' + "[" * 100_000, "nested deeper"),
    ('{"type":"joinGroup","group":"g"} {}', "not valid JSON"),
]


@pytest.mark.parametrize(("text", "error"), BAD_REQUESTS)
def test_bad_requests(text: str | bytes, error: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        decode_request(text)
    assert error in str(info.value)


BAD_RESPONSES: list[tuple[str, str]] = [
    ("[1]", "must be a JSON object"),
    ('{"type":null}', "'type' must be a string"),
    ('{"type":"ack","success":true}', "missing required property 'ackId'"),
    ('{"type":"ack","ackId":1}', "missing required property 'success'"),
    ('{"type":"ack","ackId":1,"success":"false"}', "'success' must be true or false"),
    ('{"type":"ack","ackId":1,"success":false,"error":"Forbidden"}', "'error' must be an object"),
    ('{"type":"ack","ackId":1,"success":false,"error":{"name":1}}', "'name' must be a string"),
    ('{"type":"message","from":"group","dataType":"json","data":1}', "missing required property 'group'"),
    ('{"type":"message","from":"server","dataType":"json"}', "missing required property 'data'"),
    ('{"type":"message","from":"server","dataType":"binary","data":"%%%%"}', "not valid base64"),
    ('{"type":"message","from":"server","dataType":"json","data":1,"sequenceId":-5}', "'sequenceId' must be"),
    ('{"type":"message","from":"group","group":"g","data":1,"fromUserId":3}', "'fromUserId' must be a string"),
    ('{"type":"system","event":"connected","userId":"u"}', "missing required property 'connectionId'"),
    ('{"type":"system","event":"connected","connectionId":"c","reconnectionToken":1}', "'reconnectionToken' must"),
    ('{"type":"system","event":"disconnected","message":{}}', "'message' must be a string"),
]


@pytest.mark.parametrize(("text", "error"), BAD_RESPONSES)
def test_bad_responses(text: str, error: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        decode_response(text)
    assert error in str(info.value)


def test_depth_bound_is_exact_and_ignores_brackets_in_strings() -> None:
    inner = MAX_DEPTH - 1  # the frame's own object is one level
    ok = '{"type":"event","event":"e","data":' + "[" * inner + "]" * inner + "}"
    assert isinstance(decode_request(ok), SendEvent)
    too_deep = '{"type":"event","event":"e","data":' + "[" * (inner + 1) + "]" * (inner + 1) + "}"
    with pytest.raises(InvalidMessage, match="nested deeper"):
        decode_request(too_deep)
    # Brackets in strings (escaped quotes included) are data, not nesting.
    text = json.dumps({"type": "event", "event": "e", "dataType": "text", "data": '\\"[{' * 1000})
    assert decode_request(text) == SendEvent("e", DataType.TEXT, '\\"[{' * 1000)


def test_hostile_depth_scan_is_linear() -> None:
    # Many escaped quotes and brackets: a backtracking scan would take minutes on this.
    import time

    text = '{"type":"event","event":"e","data":"' + '\\"[' * 200_000
    started = time.monotonic()
    with pytest.raises(InvalidMessage):
        decode_request(text)
    assert time.monotonic() - started < 2.0


def test_not_text_or_bytes() -> None:
    with pytest.raises(InvalidMessage, match="text or bytes"):
        decode_request(123)  # type: ignore[arg-type]
    with pytest.raises(InvalidMessage, match="text or bytes"):
        decode_response(None)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------------
# Encoding what the data type cannot carry.

BAD_ENCODES: list[tuple[Request | Response, str]] = [
    (SendToGroup("g", DataType.TEXT, b"bytes"), "Text data must be a str"),
    (SendToGroup("g", DataType.BINARY, "text"), "Binary data must be bytes"),
    (SendEvent("e", DataType.JSON, {1, 2}), "JSON cannot carry this data"),
    (SendEvent("e", DataType.JSON, float("nan")), "JSON cannot carry this data"),
    (SendEvent("e", DataType.JSON, b"x"), "JSON cannot carry this data"),
    (SendEvent("", DataType.TEXT, "x"), "'event' must be a non-empty string"),
    (JoinGroup(""), "'group' must be a non-empty string"),
    (JoinGroup("g", -1), "'ackId' must be an integer"),
    (SequenceAck(MAX_ID + 1), "'sequenceId' must be an integer"),
    (Ack(True, True), "'ackId' must be an integer"),  # type: ignore[arg-type]
    (GroupMessage("g", DataType.TEXT, 5), "Text data must be a str"),
    (ServerMessage(DataType.JSON, "x", -1), "'sequenceId' must be an integer"),
    (Connected("u", ""), "'connectionId' must be a non-empty string"),
]


@pytest.mark.parametrize(("message", "error"), BAD_ENCODES)
def test_bad_encodes(message: Any, error: str) -> None:
    encode = encode_request if isinstance(message, Request) else encode_response
    with pytest.raises(InvalidMessage) as info:
        encode(message)
    assert error in str(info.value)


def test_encode_refuses_non_messages() -> None:
    with pytest.raises(InvalidMessage, match="Not a request"):
        encode_request(Ack(1, True))  # type: ignore[arg-type]
    with pytest.raises(InvalidMessage, match="Not a response"):
        encode_response(JoinGroup("g"))  # type: ignore[arg-type]


def test_self_referencing_json_data() -> None:
    data: list[Any] = []
    data.append(data)
    with pytest.raises(InvalidMessage, match="JSON cannot carry this data"):
        encode_request(SendEvent("e", DataType.JSON, data))


DESCRIPTIONS: list[tuple[Request | Response, str]] = [
    (JoinGroup("chat", 1), "joinGroup chat #1"),
    (LeaveGroup("chat"), "leaveGroup chat"),
    (SendToGroup("chat", DataType.TEXT, "secret data", 3, True), "sendToGroup chat #3 (text, noEcho)"),
    (SendEvent("broadcastMessage", DataType.JSON, {"message": "secret data"}, 2), "event broadcastMessage #2 (json)"),
    (SequenceAck(5), "sequenceAck 5"),
    (PingRequest(), "ping"),
    (Ack(3, True), "ack #3 ok"),
    (Ack(4, False, AckError("Forbidden", "No permission")), "ack #4 Forbidden: No permission"),
    (
        GroupMessage("chat", DataType.BINARY, b"secret data", "alice", 9),
        "message from group chat by alice (binary) seq 9",
    ),
    (ServerMessage(DataType.JSON, "secret data"), "message from server (json)"),
    (
        Connected("alice", "c1", "the-reconnection-token"),
        "connected: connection c1, user alice, with a reconnection token",
    ),
    (Connected(None, "c1"), "connected: connection c1, anonymous"),
    (Disconnected("Connection closed by the server."), "disconnected: Connection closed by the server."),
    (Pong(), "pong"),
]


@pytest.mark.parametrize(("message", "text"), DESCRIPTIONS)
def test_describe_names_the_message_never_its_data_or_token(message: Request | Response, text: str) -> None:
    assert describe(message) == text
    assert "secret data" not in text and "the-reconnection-token" not in text


def test_describe_shortens_long_names() -> None:
    assert len(describe(JoinGroup("g" * 10_000))) < 100
