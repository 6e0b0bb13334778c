"""webpubsub.events: the event handler's CloudEvents, both sides, and hostile input."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from webpubsub import events
from webpubsub.events import ConnectRequest, ConnectResponse, EventKind, InvalidEvent

KEY = "primary-key-0123456789"
KEY2 = "secondary-key-9876543210"


def _headers(kind: EventKind = EventKind.USER, event_name: str = "echo", **kw: object) -> dict[str, str]:
    args: dict[str, object] = {
        "hub": "chat",
        "kind": kind,
        "connection_id": "conn-1",
        "access_keys": [KEY],
        "event_id": "ev-1",
        "time": "2026-01-01T00:00:00Z",
        "origin": "127.0.0.1",
        "event_name": event_name,
        "user_id": "alice",
    }
    args.update(kw)
    return events.event_headers(**args)  # type: ignore[arg-type]


def test_signature_is_the_documented_hmac_per_key() -> None:
    expected = [hmac.new(k.encode(), b"conn-1", hashlib.sha256).hexdigest() for k in (KEY, KEY2)]
    assert events.signature("conn-1", [KEY, KEY2]) == f"sha256={expected[0]},sha256={expected[1]}"


def test_signature_matches_either_key_and_nothing_else() -> None:
    header = events.signature("conn-1", [KEY, KEY2])
    assert events.signature_matches(header, "conn-1", KEY)
    assert events.signature_matches(header, "conn-1", KEY2)
    assert events.signature_matches(" " + header.replace(",", " , "), "conn-1", KEY2)
    assert not events.signature_matches(header, "conn-2", KEY)
    assert not events.signature_matches(header, "conn-1", "other")
    for hostile in ("", "sha256=", "sha256=zz", "md5=" + header[7:], "\udcff", ",,,,,,,,," + header):
        assert not events.signature_matches(hostile, "conn-1", KEY)


def test_headers_round_trip_through_the_parser_case_insensitively() -> None:
    headers = _headers(subprotocol="json.webpubsub.azure.v1", states=events.encode_states({"a": 1}))
    assert headers["ce-type"] == "azure.webpubsub.user.echo"
    assert headers["ce-source"] == "/hubs/chat/client/conn-1"
    assert headers["WebHook-Request-Origin"] == "127.0.0.1"
    assert headers["ce-awpsversion"] == "1.0"
    request = events.parse_event_request({k.upper(): v for k, v in headers.items()}, b"{}")
    assert request.kind is EventKind.USER
    assert (request.hub, request.event_name, request.connection_id, request.user_id) == (
        "chat",
        "echo",
        "conn-1",
        "alice",
    )
    assert request.subprotocol == "json.webpubsub.azure.v1"
    assert request.origin == "127.0.0.1"
    assert request.content_type == "application/json"
    assert request.states is not None and events.decode_states(request.states) == {"a": 1}
    assert events.signature_matches(request.signature, request.connection_id, KEY)
    assert "body" not in repr(request)


@pytest.mark.parametrize("kind", [EventKind.CONNECT, EventKind.CONNECTED, EventKind.DISCONNECTED])
def test_system_events(kind: EventKind) -> None:
    headers = _headers(kind, event_name="", user_id=None)
    assert headers["ce-type"] == f"azure.webpubsub.sys.{kind.value}"
    assert headers["ce-eventName"] == kind.value
    assert "ce-userId" not in headers
    request = events.parse_event_request(headers, b"")
    assert request.kind is kind and request.user_id is None


def test_user_event_needs_a_name() -> None:
    with pytest.raises(InvalidEvent):
        events.event_type(EventKind.USER, "")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"ce-type": None}, "ce-type"),
        ({"ce-type": "   "}, "ce-type"),
        ({"ce-hub": None}, "ce-hub"),
        ({"ce-connectionId": None}, "ce-connectionId"),
        ({"ce-signature": None}, "ce-signature"),
        ({"ce-eventName": None}, "ce-eventName"),
        ({"ce-id": None}, "ce-id"),
        ({"ce-specversion": "0.3"}, "only 1.0"),
        ({"ce-type": "com.example.other"}, "not a Web PubSub event"),
        ({"ce-type": "azure.webpubsub.sys.reboot"}, "not a Web PubSub event"),
        ({"ce-type": "azure.webpubsub.user.other"}, "does not name the event"),
        ({"ce-type": "azure.webpubsub.sys.connect"}, "does not go with"),
        ({"ce-hub": "h" * 5000}, "longer than"),
    ],
)
def test_malformed_headers_are_refused_with_a_clear_message(change: dict[str, str | None], needle: str) -> None:
    headers = _headers()
    for name, value in change.items():
        if value is None:
            del headers[name]
        else:
            headers[name] = value
    with pytest.raises(InvalidEvent, match=needle):
        events.parse_event_request(headers, b"{}")


def test_oversized_body_is_refused() -> None:
    with pytest.raises(InvalidEvent, match="at most 10"):
        events.parse_event_request(_headers(), b"x" * 11, max_body=10)


def test_connect_body_round_trip_and_hostile_bodies() -> None:
    request = ConnectRequest(
        claims={"sub": ["alice"]}, query={"a": ["1"]}, headers={"X": ["y"]}, subprotocols=["json.webpubsub.azure.v1"]
    )
    assert events.parse_connect_body(events.connect_body(request)) == request
    assert events.parse_connect_body(b'{"claims": {"sub": "bob"}}').claims == {"sub": ["bob"]}
    for hostile in (
        b"",
        b"[]",
        b"{",
        b"\xff",
        b'{"claims": []}',
        b'{"claims": {"sub": [1]}}',
        b'{"subprotocols": "json"}',
        b'{"clientCertificates": [1]}',
        b"[" * 100000 + b"]" * 100000,
    ):
        with pytest.raises(InvalidEvent):
            events.parse_connect_body(hostile)


def test_connect_response_round_trip() -> None:
    answer = ConnectResponse(user_id="bob", groups=("g",), roles=("webpubsub.joinLeaveGroup",), subprotocol="p")
    assert events.parse_connect_response(events.encode_connect_response(answer), ["p"]) == answer
    assert events.encode_connect_response(ConnectResponse()) == b"{}"
    assert events.parse_connect_response(b"") == ConnectResponse()
    assert events.parse_connect_response(b'{"userId": "", "subprotocol": ""}') == ConnectResponse()


@pytest.mark.parametrize(
    "body",
    [
        b"[1]",
        b"nope",
        b'{"userId": 5}',
        b'{"userId": "' + b"u" * 2000 + b'"}',
        b'{"groups": "g"}',
        b'{"groups": [""]}',
        b'{"roles": [null]}',
        b'{"groups": [' + b",".join(b'"g"' for _ in range(1001)) + b"]}",
        b'{"subprotocol": "not-offered"}',
        b'{"subprotocol": 1}',
        b'{"a":' * 100 + b"1" + b"}" * 100,
    ],
)
def test_hostile_connect_answers_are_refused(body: bytes) -> None:
    with pytest.raises(InvalidEvent):
        events.parse_connect_response(body, ["p"])


def test_disconnected_body() -> None:
    assert events.parse_disconnected_body(events.disconnected_body("gone")) == "gone"
    assert events.parse_disconnected_body(events.disconnected_body(None)) is None
    assert events.parse_disconnected_body(b"") is None
    for hostile in (b"[]", b'{"reason": 1}', b"{"):
        with pytest.raises(InvalidEvent):
            events.parse_disconnected_body(hostile)


@pytest.mark.parametrize(
    ("data_type", "data", "content_type"),
    [
        ("json", {"name": "a", "message": "hé"}, "application/json"),
        ("text", "hé", "text/plain"),
        ("binary", b"\x00\xff", "application/octet-stream"),
    ],
)
def test_user_data_round_trip(data_type: str, data: object, content_type: str) -> None:
    sent_type, body = events.encode_user_data(data_type, data)
    assert sent_type.split(";")[0] == content_type
    assert events.decode_user_data(sent_type, body) == (data_type, data)
    assert events.parse_user_event_response(200, sent_type, body) == (data_type, data)


def test_user_data_errors() -> None:
    with pytest.raises(ValueError):
        events.encode_user_data("text", b"bytes")
    with pytest.raises(ValueError):
        events.encode_user_data("binary", "str")
    with pytest.raises(ValueError):
        events.encode_user_data("json", {1, 2})
    with pytest.raises(ValueError):
        events.encode_user_data("xml", "x")
    with pytest.raises(InvalidEvent, match="not one of"):
        events.decode_user_data("application/xml", b"<a/>")
    with pytest.raises(InvalidEvent, match="not JSON"):
        events.decode_user_data("application/json", b"{oops")
    with pytest.raises(InvalidEvent, match="UTF-8"):
        events.decode_user_data("text/plain", b"\xff")


def test_user_event_answers() -> None:
    assert events.parse_user_event_response(204, "", b"") is None
    assert events.parse_user_event_response(200, "", b"") is None
    assert events.parse_user_event_response(200, "", b"raw") == ("binary", b"raw")
    with pytest.raises(InvalidEvent, match="answered 500"):
        events.parse_user_event_response(500, "text/plain", b"boom")
    with pytest.raises(InvalidEvent, match="at most"):
        events.parse_user_event_response(200, "text/plain", b"x" * (events.MAX_EVENT_BODY + 1))


def test_states() -> None:
    assert events.decode_states(events.encode_states({"k": [1, "v"]})) == {"k": [1, "v"]}
    assert events.encode_states({"key": "a"}) == base64.b64encode(b'{"key":"a"}').decode()
    for hostile in ("***", base64.b64encode(b"[1]").decode(), base64.b64encode(b"\xff").decode(), "é"):
        with pytest.raises(InvalidEvent):
            events.decode_states(hostile)


def test_abuse_protection_both_sides() -> None:
    assert events.abuse_protection_headers({"webhook-request-origin": "svc.example"}) == {"WebHook-Allowed-Origin": "*"}
    assert events.abuse_protection_headers({}) is None
    assert events.abuse_protection_headers({"WebHook-Request-Origin": " "}) is None
    allowed = events.abuse_protection_headers({"WebHook-Request-Origin": "svc.example"}, ["SVC.example"])
    assert allowed == {"WebHook-Allowed-Origin": "svc.example"}
    assert events.abuse_protection_headers({"WebHook-Request-Origin": "evil.example"}, ["svc.example"]) is None

    assert events.abuse_protection_allows(200, {"webhook-allowed-origin": "*"}, "svc.example")
    assert events.abuse_protection_allows(200, {"WebHook-Allowed-Origin": "a, SVC.example"}, "svc.example")
    assert not events.abuse_protection_allows(200, {"WebHook-Allowed-Origin": "other"}, "svc.example")
    assert not events.abuse_protection_allows(200, {}, "svc.example")
    assert not events.abuse_protection_allows(404, {"WebHook-Allowed-Origin": "*"}, "svc.example")
