"""``/eventhandler`` of ``chat-server --service webpubsub``, driven by CloudEvents posted here.

The service is a recorder standing in for the Web PubSub REST API (it checks the bearer token's signature and that its
``aud`` names the request URL, as the service does); requests are built with :mod:`webpubsub.events` or written by
hand on a raw socket for the hostile cases. After every refusal the server must still serve.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import socket
import time
from collections.abc import Iterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.config import Service, load_settings
from tests.server.rest_recorder import RestRecorder
from tests.support.processes import free_port
from tests.support.wps_server import WebPubSubChatServer, start_webpubsub_chat_server
from webpubsub import events
from webpubsub.events import EventKind

ACCESS_KEY = "WpsHandlerKey0000DoNotPrint1111abcdefghijklmnop"


@pytest.fixture(scope="module")
def recorder() -> Iterator[RestRecorder]:
    rec = RestRecorder(ACCESS_KEY).start()
    yield rec
    rec.stop()


@pytest.fixture(scope="module")
def server(recorder: RestRecorder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebPubSubChatServer]:
    srv = start_webpubsub_chat_server(recorder.connection_string(), cwd=tmp_path_factory.mktemp("wps-handler"))
    yield srv
    srv.stop()


@pytest.fixture
def rest(recorder: RestRecorder) -> RestRecorder:
    recorder.clear()
    return recorder


def _headers(
    kind: EventKind = EventKind.USER,
    event_name: str = "broadcastMessage",
    *,
    connection_id: str = "conn-1",
    keys: tuple[str, ...] = (ACCESS_KEY,),
    content_type: str = "application/json",
    hub: str = "chat",
) -> dict[str, str]:
    return events.event_headers(
        hub=hub,
        kind=kind,
        connection_id=connection_id,
        access_keys=keys,
        event_id="ev-1",
        time="2026-01-01T00:00:00Z",
        origin="127.0.0.1",
        event_name=event_name,
        user_id="alice",
        subprotocol="json.reliable.webpubsub.azure.v1",
        content_type=content_type,
    )


def _post(
    server: WebPubSubChatServer, headers: dict[str, str], body: bytes, path: str = "/eventhandler"
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def _chat(name: str = "alice", message: str = "hi") -> bytes:
    return json.dumps({"name": name, "message": message}).encode()


def _still_serving(server: WebPubSubChatServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", "/healthz")
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    status, _, _ = _post(server, _headers(EventKind.CONNECTED, ""), b"{}")
    assert status == 204


def _raw(server: WebPubSubChatServer, data: bytes) -> bytes:
    """Send raw bytes and return everything the server answers before it closes (or 5 s pass)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(data)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and b"Content-Length: " in answer:
                    head, _, rest = answer.partition(b"\r\n\r\n")
                    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                    if len(rest) >= length:
                        break
        except TimeoutError:
            pass
    return answer


# -- abuse protection ----------------------------------------------------------------------------------------------


def test_abuse_protection_with_and_without_the_origin(server: WebPubSubChatServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("OPTIONS", "/eventhandler", headers={"WebHook-Request-Origin": "svc.webpubsub.example"})
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        assert response.getheader("WebHook-Allowed-Origin") == "*"
        assert events.abuse_protection_allows(200, dict(response.getheaders()), "svc.webpubsub.example")

        connection.request("OPTIONS", "/eventhandler/chat/connect")
        response = connection.getresponse()
        body = response.read()
        assert response.status == 400
        assert response.getheader("WebHook-Allowed-Origin") is None
        assert b"WebHook-Request-Origin" in body
    finally:
        connection.close()
    _still_serving(server)


# -- system events -------------------------------------------------------------------------------------------------


def test_connect_is_accepted_with_an_empty_object(server: WebPubSubChatServer, rest: RestRecorder) -> None:
    body = events.connect_body(
        events.ConnectRequest(claims={"sub": ["alice"]}, subprotocols=["json.webpubsub.azure.v1"])
    )
    status, headers, answer = _post(server, _headers(EventKind.CONNECT, ""), body, "/eventhandler/chat/connect")
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(answer) == {}
    assert events.parse_connect_response(answer) == events.ConnectResponse()
    assert rest.sends == []


@pytest.mark.parametrize("kind", [EventKind.CONNECTED, EventKind.DISCONNECTED])
def test_connected_and_disconnected_are_logged(server: WebPubSubChatServer, kind: EventKind) -> None:
    body = events.disconnected_body("client closed") if kind is EventKind.DISCONNECTED else b"{}"
    status, _, answer = _post(server, _headers(kind, "", connection_id=f"conn-{kind.value}"), body)
    assert (status, answer) == (204, b"")
    deadline = time.monotonic() + 5
    while f"{kind.value}: 'conn-{kind.value}'" not in server.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"{kind.value}: 'conn-{kind.value}'" in server.stderr()


# -- user events ---------------------------------------------------------------------------------------------------


def test_broadcast_message_is_sent_to_all_through_the_rest_api(server: WebPubSubChatServer, rest: RestRecorder) -> None:
    status, _, answer = _post(server, _headers(), _chat("alice", "héllo"))
    assert (status, answer) == (204, b"")
    [send] = rest.sends
    assert (send.method, send.path) == ("POST", "/api/hubs/chat/:send")
    assert "api-version=" in send.query
    assert send.token_error is None and send.audience.split("?")[0].endswith("/api/hubs/chat/:send")
    assert send.body == {"name": "alice", "message": "héllo", "target": "broadcastMessage"}


def test_echo_goes_to_the_caller_only(server: WebPubSubChatServer, rest: RestRecorder) -> None:
    status, _, _ = _post(server, _headers(event_name="echo", connection_id="caller-7"), _chat("bob", "ping"))
    assert status == 204
    [send] = rest.sends
    assert (send.method, send.path) == ("POST", "/api/hubs/chat/connections/caller-7/:send")
    assert send.token_error is None
    assert send.body == {"name": "bob", "message": "ping (echo from server)", "target": "echo"}


def test_either_of_two_signatures_may_be_ours(server: WebPubSubChatServer, rest: RestRecorder) -> None:
    status, _, _ = _post(server, _headers(keys=("another-primary-key", ACCESS_KEY)), _chat())
    assert status == 204
    assert len(rest.sends) == 1


# -- refusals ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "sha256=" + "0" * 64,
        events.signature("conn-1", ["not-the-key"]),
        events.signature("conn-2", [ACCESS_KEY]),  # our key, another connection
        events.signature("conn-1", [ACCESS_KEY]).upper(),
        "sha1=" + events.signature("conn-1", [ACCESS_KEY]).removeprefix("sha256="),
    ],
)
def test_a_wrong_or_missing_signature_is_401_and_sends_nothing(
    server: WebPubSubChatServer, rest: RestRecorder, signature: str | None
) -> None:
    headers = _headers()
    if signature is None:
        del headers["ce-signature"]
    else:
        headers["ce-signature"] = signature
    status, _, body = _post(server, headers, _chat())
    assert status == 401
    assert b"ce-signature" in body
    assert rest.sends == []
    _still_serving(server)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"ce-type": None}, b"ce-type"),
        ({"ce-specversion": "0.3"}, b"only 1.0"),
        ({"ce-type": "com.example.thing"}, b"not a Web PubSub event"),
        ({"ce-type": "azure.webpubsub.sys.reboot", "ce-eventName": "reboot"}, b"not a Web PubSub event"),
        ({"ce-eventName": "echo"}, b"does not name the event"),
        ({"ce-hub": None}, b"ce-hub"),
        ({"ce-hub": "otherhub"}, b"not this server's hub"),
        ({"ce-id": None}, b"ce-id"),
        ({"ce-connectionId": None}, b"ce-connectionId"),
    ],
)
def test_malformed_cloudevents_headers_are_400(
    server: WebPubSubChatServer, rest: RestRecorder, change: dict[str, str | None], needle: bytes
) -> None:
    headers = _headers()
    for name, value in change.items():
        if value is None:
            del headers[name]
        else:
            headers[name] = value
    status, headers_out, body = _post(server, headers, _chat())
    assert status == 400
    assert headers_out["Content-Type"].startswith("text/plain")
    assert needle in body
    assert rest.sends == []
    _still_serving(server)


@pytest.mark.parametrize(
    ("content_type", "body", "needle"),
    [
        ("application/json", b"{not json", b"not JSON"),
        ("application/json", b"\xff\xfe", b"not UTF-8"),
        ("application/json", b"[1, 2]", b"JSON object"),
        ("application/json", b'{"name": "a"}', b'"message" strings'),
        ("application/json", b'{"name": 1, "message": "m"}', b'"message" strings'),
        ("application/json", b'{"name": "", "message": "m"}', b"1 to 128"),
        ("application/json", json.dumps({"name": "n" * 129, "message": "m"}).encode(), b"1 to 128"),
        ("application/json", b"[" * 5000 + b"]" * 5000, b"nests deeper"),
        ("text/plain", b"hello", b"needs JSON data"),
        ("application/octet-stream", b"\x00\x01", b"needs JSON data"),
        ("application/xml", b"<a/>", b"not one of"),
        ("", b"{}", b"not one of"),
    ],
)
def test_bad_event_data_is_400(
    server: WebPubSubChatServer, rest: RestRecorder, content_type: str, body: bytes, needle: bytes
) -> None:
    headers = _headers(content_type=content_type)
    if not content_type:
        del headers["Content-Type"]
    status, _, answer = _post(server, headers, body)
    assert status == 400
    assert needle in answer
    assert rest.sends == []
    _still_serving(server)


def test_bad_connect_and_disconnected_bodies_are_400(server: WebPubSubChatServer) -> None:
    status, _, answer = _post(server, _headers(EventKind.CONNECT, ""), b'{"claims": [1]}')
    assert status == 400 and b"claims" in answer
    status, _, answer = _post(server, _headers(EventKind.DISCONNECTED, ""), b'{"reason": 5}')
    assert status == 400 and b"reason" in answer
    _still_serving(server)


def test_an_unknown_event_is_400(server: WebPubSubChatServer, rest: RestRecorder) -> None:
    status, _, answer = _post(server, _headers(event_name="sendToEveryone"), _chat())
    assert status == 400
    assert b"Unknown event 'sendToEveryone'" in answer
    assert rest.sends == []
    _still_serving(server)


def test_an_oversized_body_is_413(server: WebPubSubChatServer, rest: RestRecorder) -> None:
    message = "x" * events.MAX_EVENT_BODY
    status, _, answer = _post(server, _headers(), _chat(message=message))
    assert status == 413
    assert str(events.MAX_EVENT_BODY).encode() in answer
    assert rest.sends == []
    _still_serving(server)


def test_a_declared_oversized_body_is_refused_before_it_is_read(server: WebPubSubChatServer) -> None:
    head = "".join(f"{k}: {v}\r\n" for k, v in _headers().items())
    request = f"POST /eventhandler HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}Content-Length: {10**9}\r\n\r\n".encode() + b"{"
    answer = _raw(server, request)
    assert answer.startswith(b"HTTP/1.1 413 ")
    _still_serving(server)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /eventhandler HTTP/1.1\r\nHost: x\r\nce-connectionId: \x00\x01\r\nContent-Length: 0\r\n\r\n",
        b"POST /eventhandler HTTP/1.1\r\nHost: x\r\nce-connectionId: " + b"c" * 300 + b"\r\nContent-Length: 0\r\n\r\n",
        b"POST /eventhandler HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        b"POST /eventhandler HTTP/1.1\r\nHost: x\r\nce-connectionId: c\r\nce-signature: sha256=zz\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ],
)
def test_hand_written_hostile_requests(server: WebPubSubChatServer, request_bytes: bytes) -> None:
    answer = _raw(server, request_bytes)
    assert re.match(rb"HTTP/1\.[01] 40[01] ", answer), answer[:200]
    _still_serving(server)


def test_a_failed_send_is_502_and_says_so(server: WebPubSubChatServer, rest: RestRecorder) -> None:
    rest.status = 500
    status, _, answer = _post(server, _headers(event_name="echo"), _chat())
    assert status == 502
    assert b"could not be sent" in answer
    rest.status = 202
    deadline = time.monotonic() + 5
    while "the send failed" not in server.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "echo from 'conn-1': the send failed: HttpResponseError" in server.stderr()
    _still_serving(server)


def test_no_secret_in_the_log(server: WebPubSubChatServer, rest: RestRecorder) -> None:
    assert _post(server, _headers(), _chat())[0] == 204
    [send] = rest.sends
    log = server.stderr()
    assert "broadcastMessage from 'conn-1' (user 'alice')" in log
    assert ACCESS_KEY not in log
    assert send.token not in log and send.token[:20] not in log
    assert "eyJ" not in log
    assert events.signature("conn-1", [ACCESS_KEY]).removeprefix("sha256=") not in log


async def test_no_secret_in_any_log_record_in_process(caplog: pytest.LogCaptureFixture) -> None:
    """The same app in this process, every logger at DEBUG: negotiate, a refused event and a send that cannot reach
    the service (nothing listens on its port) leave no AccessKey, token or signature in any record."""
    caplog.set_level(logging.DEBUG)
    dead_port = free_port()
    connection_string = f"Endpoint=http://127.0.0.1;Port={dead_port};AccessKey={ACCESS_KEY};Version=1.0;"
    settings = load_settings(connection_string=connection_string, service=Service.WEBPUBSUB)
    async with TestClient(TestServer(create_app(settings))) as client:
        negotiated = await client.post("/chat/negotiate?id=alice")
        token = (await negotiated.json())["url"].split("access_token=")[1]
        refused = await client.post("/eventhandler", headers=_headers(keys=("wrong",)), data=_chat())
        assert refused.status == 401
        failed = await client.post("/eventhandler", headers=_headers(event_name="echo"), data=_chat())
        assert failed.status == 502
    text = "\n".join(f"{r.name} {r.getMessage()} {r.args!r}" for r in caplog.records)
    assert "the send failed" in text and "negotiate: client access URL" in text
    assert ACCESS_KEY not in text
    assert token not in text and "eyJ" not in text
    assert events.signature("conn-1", [ACCESS_KEY]).removeprefix("sha256=") not in text
