"""The upstream webhook of a ``chat-server`` process, with a REST recorder standing in for Azure's REST API.

Every refused request is checked for its status *and* for sending nothing to the REST API.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgpack
import pytest

from signalr.upstream import sign_connection_id, signature_header
from tests.server.conftest import ACCESS_KEY
from tests.server.rest_recorder import RestRecorder
from tests.support.stack import ChatServer, start_chat_server

OTHER_KEY = "AnotherKeyThatIsNotTheServers0123456789abcdefgh"
BROADCAST = {"type": 1, "target": "broadcastMessage", "arguments": ["alice", "hi"]}
SEND_PATH = "/api/hubs/chat/:send"
# The same broadcast as a MessagePack hub message, unframed as the service sends it: [1, headers, id, target, args].
MSGPACK_BROADCAST: bytes = msgpack.packb([1, {}, None, "broadcastMessage", ["alice", "hi"]])


def headers_for(
    connection_id: str = "conn-1",
    category: str = "messages",
    event: str = "broadcastMessage",
    hub: str = "chat",
    signature: str | None = None,
    **extra: str,
) -> dict[str, str]:
    headers = {
        "X-ASRS-Connection-Id": connection_id,
        "X-ASRS-Hub": hub,
        "X-ASRS-Category": category,
        "X-ASRS-Event": event,
        "X-ASRS-Signature": signature if signature is not None else sign_connection_id(ACCESS_KEY, connection_id),
        "Content-Type": "application/json",
    }
    headers.update(extra)
    return headers


MSGPACK_HEADERS = headers_for(**{"Content-Type": "application/x-msgpack"})


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


async def post(
    http: aiohttp.ClientSession, server: ChatServer, headers: dict[str, str], body: Any, path: str = "upstream"
) -> tuple[int, bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with http.post(server.url + path, headers=headers, data=data) as response:
        return response.status, await response.read()


def completion(body: bytes) -> dict[str, Any]:
    assert body.endswith(b"\x1e") and body.count(b"\x1e") == 1, body
    result = json.loads(body[:-1])
    assert isinstance(result, dict)
    return result


# -- what a valid upstream call sends -------------------------------------------------------------------------


async def test_broadcast_goes_to_rest_send_to_all_with_a_valid_token(
    http: aiohttp.ClientSession, server: ChatServer, rest: RestRecorder
) -> None:
    status, body = await post(http, server, headers_for(), BROADCAST, "upstream/chat/messages/broadcastMessage")
    assert (status, body) == (200, b"")
    [send] = rest.sends
    assert (send.method, send.path, send.query) == ("POST", SEND_PATH, "api-version=2022-06-01")
    assert send.body == {"target": "broadcastMessage", "arguments": ["alice", "hi"]}
    assert send.token_error is None
    # The .NET Management SDK's audience: Endpoint host without the port, path and api-version (trap 17).
    assert send.audience == "http://127.0.0.1/api/hubs/chat/:send?api-version=2022-06-01"


async def test_echo_with_id_goes_to_the_caller_and_completes(
    http: aiohttp.ClientSession, server: ChatServer, rest: RestRecorder
) -> None:
    invocation = {"type": 1, "invocationId": "12", "target": "echo", "arguments": ["bob", "yo"]}
    status, body = await post(http, server, headers_for("conn-7", event="echo"), invocation)
    assert status == 200
    assert completion(body) == {"type": 3, "invocationId": "12"}
    [send] = rest.sends
    assert send.path == "/api/hubs/chat/connections/conn-7/:send"
    assert send.body == {"target": "echo", "arguments": ["bob", "yo (echo from server)"]}
    assert send.token_error is None
    assert send.audience == "http://127.0.0.1/api/hubs/chat/connections/conn-7/:send?api-version=2022-06-01"


async def test_connection_ids_are_escaped_in_the_rest_path(
    http: aiohttp.ClientSession, server: ChatServer, rest: RestRecorder
) -> None:
    status, _ = await post(
        http, server, headers_for("a/b c?d", event="echo"), {"type": 1, "target": "echo", "arguments": ["n", "m"]}
    )
    assert status == 200
    assert [s.path for s in rest.sends] == ["/api/hubs/chat/connections/a%2Fb%20c%3Fd/:send"]


async def test_event_names_match_case_insensitively(
    http: aiohttp.ClientSession, server: ChatServer, rest: RestRecorder
) -> None:
    invocation = {"type": 1, "target": "BroadcastMessage", "arguments": ["a", "b"]}
    status, _ = await post(
        http, server, headers_for(event="BroadcastMessage", category="Messages", hub="Chat"), invocation
    )
    assert status == 200
    assert [s.body for s in rest.sends] == [{"target": "broadcastMessage", "arguments": ["a", "b"]}]


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(lambda c: signature_header([OTHER_KEY, ACCESS_KEY], c), id="secondary-then-primary"),
        pytest.param(lambda c: signature_header([ACCESS_KEY, OTHER_KEY], c), id="primary-then-secondary"),
        pytest.param(lambda c: sign_connection_id(ACCESS_KEY, c).lower(), id="lower-case-hex"),
    ],
)
async def test_any_matching_signature_passes(
    http: aiohttp.ClientSession, server: ChatServer, rest: RestRecorder, signature: Any
) -> None:
    status, _ = await post(http, server, headers_for(signature=signature("conn-1")), BROADCAST)
    assert status == 200
    assert len(rest.sends) == 1


@pytest.mark.parametrize(
    ("connection_id", "event", "body", "logged"),
    [
        ("conn-ev1", "connected", b'{"type":10}', "connected: connection conn-ev1"),
        ("conn-ev2", "disconnected", b'{"Type":11}', "disconnected: connection conn-ev2"),
        (
            "conn-ev3",
            "disconnected",
            b'{"Type":11,"Error":"transport closed"}',
            "disconnected: connection conn-ev3: transport closed",
        ),
        ("conn-ev4", "Connected", b"", "connected: connection conn-ev4"),
    ],
)
async def test_connection_events_are_logged_and_send_nothing(
    http: aiohttp.ClientSession,
    server: ChatServer,
    rest: RestRecorder,
    connection_id: str,
    event: str,
    body: bytes,
    logged: str,
) -> None:
    status, response = await post(http, server, headers_for(connection_id, "connections", event), body)
    assert (status, response) == (200, b"")
    assert rest.sends == []
    # The whole message, and a connection of its own per case: the module's server keeps one log for all of them.
    await server.process.stderr_line(f": {re.escape(logged)}$")


# -- MessagePack callers: the body and the Completion in their protocol -------------------------------------------


def msgpack_completion(response: aiohttp.ClientResponse, body: bytes) -> list[Any]:
    """The Completion array of a MessagePack upstream response: one message behind its VarInt length."""
    assert response.content_type == "application/x-msgpack"
    size, offset = body[0], 1
    if size & 0x80:  # the completions here are under 16 KiB: at most two prefix bytes
        size, offset = (size & 0x7F) | (body[1] << 7), 2
    assert size == len(body) - offset, body
    items = msgpack.unpackb(body[offset:], raw=False)
    assert isinstance(items, list)
    return items


async def test_msgpack_broadcast_goes_to_rest_like_json(
    http: aiohttp.ClientSession, server: ChatServer, rest: RestRecorder
) -> None:
    status, body = await post(
        http, server, MSGPACK_HEADERS, MSGPACK_BROADCAST, "upstream/chat/messages/broadcastMessage"
    )
    assert (status, body) == (200, b"")
    [send] = rest.sends
    assert (send.method, send.path) == ("POST", SEND_PATH)
    # The REST API takes JSON whatever the caller spoke; the service serialises for each recipient.
    assert send.body == {"target": "broadcastMessage", "arguments": ["alice", "hi"]}


async def test_msgpack_echo_with_id_completes_in_msgpack(
    http: aiohttp.ClientSession, server: ChatServer, rest: RestRecorder
) -> None:
    invocation = msgpack.packb([1, {}, "12", "echo", ["bob", "yo ✓"]])
    headers = headers_for("conn-m", event="echo", **{"Content-Type": "application/x-msgpack"})
    async with http.post(server.url + "upstream/chat/messages/echo", headers=headers, data=invocation) as response:
        assert response.status == 200
        # [3, headers, id, 2 = void]
        assert msgpack_completion(response, await response.read()) == [3, {}, "12", 2]
    [send] = rest.sends
    assert send.path == "/api/hubs/chat/connections/conn-m/:send"
    assert send.body == {"target": "echo", "arguments": ["bob", "yo ✓ (echo from server)"]}


async def test_msgpack_hub_error_and_rest_failure_complete_in_msgpack(
    http: aiohttp.ClientSession, server: ChatServer, rest: RestRecorder
) -> None:
    headers = headers_for(event="nope", **{"Content-Type": "application/x-msgpack"})
    async with http.post(server.url + "upstream", headers=headers, data=msgpack.packb([1, {}, "1", "nope", []])) as r:
        assert (r.status, msgpack_completion(r, await r.read())) == (200, [3, {}, "1", 1, "Unknown hub method 'nope'"])
    rest.status = 500
    invocation = msgpack.packb([1, {}, "2", "broadcastMessage", ["a", "b"]])
    async with http.post(server.url + "upstream", headers=MSGPACK_HEADERS, data=invocation) as r:
        assert msgpack_completion(r, await r.read()) == [
            3,
            {},
            "2",
            1,
            "An unexpected error occurred invoking 'broadcastMessage' on the server.",
        ]


async def test_content_type_parameters_and_case_do_not_matter(
    http: aiohttp.ClientSession, server: ChatServer, rest: RestRecorder
) -> None:
    for content_type, body in (
        ("Application/X-MsgPack", MSGPACK_BROADCAST),
        ("application/json; charset=utf-8", json.dumps(BROADCAST).encode()),
    ):
        status, _ = await post(http, server, headers_for(**{"Content-Type": content_type}), body)
        assert status == 200, content_type
    assert len(rest.sends) == 2


async def test_malformed_msgpack_leaves_the_server_serving(
    http: aiohttp.ClientSession, server: ChatServer, rest: RestRecorder
) -> None:
    """A burst of hostile MessagePack bodies: each a 400 with a reason, then a valid call still works."""
    hostile = [b"\xc1", b"\x95", b"\xdf\xff\xff\xff\xff", b"\x91" * 5000, b"\xd4\x05\x00", b"\xc7\x05\x01ab"]
    for body in hostile:
        status, response = await post(http, server, MSGPACK_HEADERS, body)
        assert status == 400, body[:8]
        assert json.loads(response)["error"].startswith("invalid invocation: ")
    assert rest.sends == []
    status, _ = await post(http, server, MSGPACK_HEADERS, MSGPACK_BROADCAST)
    assert status == 200 and len(rest.sends) == 1
    assert "Traceback" not in server.process.stderr()


# -- hub-level errors are completions, not crashes --------------------------------------------------------------


@pytest.mark.parametrize(
    ("invocation", "error"),
    [
        (
            {"type": 1, "invocationId": "1", "target": "nope", "arguments": []},
            "Unknown hub method 'nope'",
        ),
        (
            {"type": 1, "invocationId": "2", "target": "echo", "arguments": ["only"]},
            "Failed to invoke 'echo' due to an error on the server. InvalidDataException: "
            "Invocation provides 1 argument(s) but target expects 2.",
        ),
    ],
)
async def test_hub_errors_complete_with_an_error_and_send_nothing(
    http: aiohttp.ClientSession, server: ChatServer, rest: RestRecorder, invocation: dict[str, Any], error: str
) -> None:
    status, body = await post(http, server, headers_for(event=invocation["target"]), invocation)
    assert status == 200
    assert completion(body) == {"type": 3, "invocationId": invocation["invocationId"], "error": error}
    assert rest.sends == []


async def test_errors_without_id_answer_nothing(
    http: aiohttp.ClientSession, server: ChatServer, rest: RestRecorder
) -> None:
    status, body = await post(http, server, headers_for(event="nope"), {"type": 1, "target": "nope", "arguments": []})
    assert (status, body) == (200, b"")
    assert rest.sends == []


async def test_rest_failure_is_a_completion_error_not_a_crash(
    http: aiohttp.ClientSession, server: ChatServer, rest: RestRecorder
) -> None:
    rest.status = 500
    invocation = {"type": 1, "invocationId": "9", "target": "broadcastMessage", "arguments": ["a", "b"]}
    status, body = await post(http, server, headers_for(), invocation)
    assert status == 200
    assert completion(body) == {
        "type": 3,
        "invocationId": "9",
        "error": "An unexpected error occurred invoking 'broadcastMessage' on the server.",
    }
    assert len(rest.sends) == 1  # a 5xx may mean "queued": never retried
    await server.process.stderr_line("returned 500")
    status, body = await post(http, server, headers_for(), BROADCAST)
    assert (status, body) == (200, b"")


async def test_unreachable_service_is_a_completion_error(http: aiohttp.ClientSession, tmp_path: Any) -> None:
    closed = f"Endpoint=http://127.0.0.1;Port=9;AccessKey={ACCESS_KEY};Version=1.0;"
    lonely = start_chat_server(closed, "--service-mode", "serverless", cwd=tmp_path)
    try:
        invocation = {"type": 1, "invocationId": "3", "target": "echo", "arguments": ["a", "b"]}
        status, body = await post(http, lonely, headers_for(event="echo"), invocation)
        assert status == 200
        assert completion(body)["error"] == "An unexpected error occurred invoking 'echo' on the server."
        await lonely.process.stderr_line("cannot connect")
    finally:
        lonely.stop()


# -- forged and malformed requests: a status, and nothing sent ---------------------------------------------------


def without(name: str) -> dict[str, str]:
    headers = headers_for()
    del headers[name]
    return headers


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        pytest.param(without("X-ASRS-Signature"), BROADCAST, 401, id="missing-signature"),
        pytest.param(headers_for(signature=""), BROADCAST, 401, id="empty-signature"),
        pytest.param(headers_for(signature=sign_connection_id(OTHER_KEY, "conn-1")), BROADCAST, 401, id="wrong-key"),
        pytest.param(
            headers_for(signature=sign_connection_id(ACCESS_KEY, "conn-other")), BROADCAST, 401, id="other-connection"
        ),
        pytest.param(headers_for(signature="sha256=" + "0" * 64), BROADCAST, 401, id="zero-signature"),
        pytest.param(headers_for(signature="sha256=zz, ,,"), BROADCAST, 401, id="garbage-signature"),
        pytest.param(headers_for(signature=ACCESS_KEY), BROADCAST, 401, id="key-as-signature"),
        pytest.param(without("X-ASRS-Connection-Id"), BROADCAST, 400, id="missing-connection-id"),
        pytest.param(headers_for("x" * 300), BROADCAST, 400, id="oversized-connection-id"),
        pytest.param(without("X-ASRS-Hub"), BROADCAST, 400, id="missing-hub"),
        pytest.param(without("X-ASRS-Category"), BROADCAST, 400, id="missing-category"),
        pytest.param(without("X-ASRS-Event"), BROADCAST, 400, id="missing-event"),
        pytest.param(headers_for(hub="otherhub"), BROADCAST, 404, id="other-hub"),
        pytest.param(headers_for(category="groups"), BROADCAST, 400, id="unknown-category"),
        pytest.param(headers_for(category="connections", event="reconnected"), b"{}", 400, id="unknown-conn-event"),
        pytest.param(headers_for(category="connections", event="connected"), b"[1]", 400, id="conn-body-not-object"),
        pytest.param(
            headers_for(category="connections", event="disconnected"), b"[" * 100000, 400, id="conn-body-nested"
        ),
        pytest.param(headers_for(category="connections", event="connected"), b"9" * 5000, 400, id="conn-body-huge-int"),
        pytest.param(headers_for(), b"this is not json", 400, id="non-json-body"),
        pytest.param(headers_for(), b"", 400, id="empty-body"),
        pytest.param(headers_for(), b'{"type":6}', 400, id="ping-not-invocation"),
        pytest.param(headers_for(), b"\xff\xfe\x00", 400, id="not-utf8"),
        pytest.param(headers_for(), b"[" * 100000 + b"]" * 100000, 400, id="deeply-nested"),
        pytest.param(headers_for(event="echo"), BROADCAST, 400, id="event-target-mismatch"),
        pytest.param(headers_for(**{"Content-Type": "text/plain"}), BROADCAST, 415, id="text-plain"),
        pytest.param(headers_for(**{"Content-Type": "application/octet-stream"}), BROADCAST, 415, id="octet-stream"),
        pytest.param(
            headers_for(**{"Content-Type": "application/msgpack"}), b"\x91\x06", 415, id="msgpack-unregistered"
        ),
        pytest.param(MSGPACK_HEADERS, b"\x95\x01\x80\xc0", 400, id="msgpack-cut-short"),
        pytest.param(MSGPACK_HEADERS, BROADCAST, 400, id="json-body-as-msgpack"),
        pytest.param(headers_for(), MSGPACK_BROADCAST, 400, id="msgpack-body-as-json"),
        pytest.param(MSGPACK_HEADERS, b"", 400, id="msgpack-empty"),
        pytest.param(MSGPACK_HEADERS, b"\xc1", 400, id="msgpack-never-used-byte"),
        pytest.param(MSGPACK_HEADERS, b"\x91" * 100000 + b"\x01", 400, id="msgpack-deeply-nested"),
        pytest.param(MSGPACK_HEADERS, b"\xdd\xff\xff\xff\xff", 400, id="msgpack-array-claims-4g"),
        pytest.param(MSGPACK_HEADERS, msgpack.packb([6]), 400, id="msgpack-ping-not-invocation"),
        pytest.param(MSGPACK_HEADERS, MSGPACK_BROADCAST * 2, 400, id="msgpack-two-messages"),
        pytest.param(MSGPACK_HEADERS, msgpack.packb([1, {}, None, "echo", ["a", "b"]]), 400, id="msgpack-mismatch"),
        pytest.param(MSGPACK_HEADERS, b"\x00" * (1024 * 1024 + 1), 413, id="msgpack-oversized"),
        pytest.param(headers_for(), b"x" * (1024 * 1024 + 1), 413, id="oversized-body"),
    ],
)
async def test_refused_requests_send_nothing(
    http: aiohttp.ClientSession, server: ChatServer, rest: RestRecorder, headers: dict[str, str], body: Any, status: int
) -> None:
    got, response = await post(http, server, headers, body, "upstream/chat/messages/broadcastMessage")
    assert got == status
    assert "error" in json.loads(response)
    assert rest.sends == []


async def test_oversized_chunked_body_is_refused(
    http: aiohttp.ClientSession, server: ChatServer, rest: RestRecorder
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"y" * 65536  # 1.25 MiB in total, without a Content-Length

    async with http.post(server.url + "upstream", headers=headers_for(), data=chunks()) as response:
        assert response.status == 413
    assert rest.sends == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_upstream_is_post_only(http: aiohttp.ClientSession, server: ChatServer, method: str) -> None:
    async with http.request(method, server.url + "upstream/chat/messages/echo", headers=headers_for()) as response:
        assert response.status == 405


async def test_the_access_key_never_appears_in_the_log(server: ChatServer) -> None:
    # Runs after the tests above in this module (same server): whatever they logged, the key is not there.
    log = server.process.stderr()
    assert "upstream refused (401)" in log
    assert ACCESS_KEY not in log


async def test_require_connected_event_refuses_stale_and_replayed_calls(
    http: aiohttp.ClientSession, recorder: RestRecorder, tmp_path: Any
) -> None:
    """The signature covers only the connection id (Azure's design), so a captured request stays valid for ever;
    with --require-connected-event only connections between their connected and disconnected events are served."""
    strict = start_chat_server(
        recorder.connection_string(), "--service-mode", "serverless", "--require-connected-event", cwd=tmp_path
    )
    try:
        invocation = {"type": 1, "invocationId": "9", "target": "echo", "arguments": ["a", "b"]}
        status, body = await post(http, strict, headers_for("c-7", event="echo"), invocation)
        assert status == 403 and b"not connected" in body
        event = headers_for("c-7", category="connections", event="connected")
        assert (await post(http, strict, event, {"type": 10}))[0] == 200
        status, body = await post(http, strict, headers_for("c-7", event="echo"), invocation)
        assert status == 200 and completion(body) == {"type": 3, "invocationId": "9"}
        gone = headers_for("c-7", category="connections", event="disconnected")
        assert (await post(http, strict, gone, {"Type": 11}))[0] == 200
        status, _ = await post(http, strict, headers_for("c-7", event="echo"), invocation)
        assert status == 403  # replayed after the client left
    finally:
        strict.stop()
    assert "upstream refused (403): no open connection 'c-7'" in strict.process.stderr()
