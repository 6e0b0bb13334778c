"""The switches that reproduce APIM misconfigurations, observed from outside over real sockets: what a client gets,
what the backend saw, and the access line that names the switch (docs/gateway.md, "Reproducing misconfigurations")."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from gateway.misconfig import Misconfigurations, rebuffered, removed_options
from gateway.model import ModelError
from gateway.profiles import build_profile, sse_lp_profile, websocket_profile, without_options
from gateway.routing import NoRoute, Route, route
from signalr.client import HubConnection, NegotiateFailed, TransportChoice
from signalr.tokens import mint_token
from tests.gateway.conftest import PRIMARY_KEY, Backend
from tests.support.processes import Process, free_port, script
from tests.support.stack import (
    ChatServer,
    Gateway,
    start_chat_server,
    start_emulator,
    start_gateway,
    upstream_template,
)

QUERY = "hub=chat&asrs.op=%2Fchat&negotiateVersion=1"
NOT_FOUND = b'{ "statusCode": 404, "message": "Resource not found" }'
# What a browser sends before negotiate and LongPolling requests (custom headers, so not a simple request).
PREFLIGHT = {
    "Origin": "http://app.example",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,x-signalr-user-agent",
}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


def url(gateway: Gateway, path_and_query: str) -> URL:
    return URL(gateway.url + path_and_query, encoded=True)


async def send(
    http: aiohttp.ClientSession, method: str, target: URL | str, **kwargs: Any
) -> tuple[aiohttp.ClientResponse, bytes]:
    async with http.request(method, target, **kwargs) as response:
        return response, await response.read()


def cors_headers(response: aiohttp.ClientResponse) -> list[str]:
    return [name for name in response.headers if name.lower().startswith("access-control-")]


_markers = itertools.count()


def marker() -> str:
    """A query parameter no other request to a shared gateway carries, to find this request's access line."""
    return f"m=t{next(_markers)}"


def access_line(gateway: Gateway, pattern: str, timeout: float = 5.0) -> str:
    """The first access line matching ``pattern``; waits (bounded), since a line is written after its response."""
    deadline = time.monotonic() + timeout
    while True:
        text = gateway.stderr()
        for line in text.splitlines():
            if "gateway.access:" in line and re.search(pattern, line):
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no access line matches {pattern!r}:\n{text}")
        time.sleep(0.05)


# --- --no-options ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "template"), [("/client/negotiate", "/negotiate"), ("/client/", "/")])
async def test_no_options_preflight_gets_apims_404_without_cors_headers(
    no_options_gateway: Gateway, sse_gateway: Gateway, http: aiohttp.ClientSession, path: str, template: str
) -> None:
    healthy, body = await send(http, "OPTIONS", url(sse_gateway, f"{path}?{QUERY}"), headers=PREFLIGHT)
    assert healthy.status == 200 and json.loads(body)["preflight"] is True  # the backend answered it
    assert healthy.headers["Access-Control-Allow-Origin"] == "http://app.example"

    broken, body = await send(http, "OPTIONS", url(no_options_gateway, f"{path}?{QUERY}&p=1"), headers=PREFLIGHT)
    assert (broken.status, broken.reason, body) == (404, "Not Found", NOT_FOUND)
    assert broken.headers["Content-Type"] == "application/json"
    assert cors_headers(broken) == []  # so a browser reports a CORS error, not the 404
    line = access_line(no_options_gateway, rf"OPTIONS {re.escape(path)}\?\S*&p=1 ")
    assert f"-> API signalr 404 (Resource not found: OperationNotFound: no operation for OPTIONS {template};" in line
    assert "API 'signalr' has no OPTIONS operations (--no-options): a browser's CORS preflight gets this 404" in line


async def test_no_options_keeps_every_other_operation(no_options_gateway: Gateway, http: aiohttp.ClientSession) -> None:
    negotiate, body = await send(http, "POST", url(no_options_gateway, f"/client/negotiate?{QUERY}"))
    assert negotiate.status == 200 and json.loads(body)["negotiate"] is True
    poll, body = await send(http, "GET", url(no_options_gateway, f"/client/?{QUERY}&id=t1"))
    assert poll.status == 200 and json.loads(body)["poll"] is True
    sent, body = await send(http, "POST", url(no_options_gateway, f"/client/?{QUERY}&id=t1"), data=b"{}\x1e")
    assert sent.status == 200 and json.loads(body)["send"] is True
    assert "--no-options" not in access_line(no_options_gateway, r"POST /client/negotiate\?")


async def test_no_options_on_the_websocket_profile(backend: Backend, http: aiohttp.ClientSession) -> None:
    gateway = start_gateway(backend.url, "--profile", "websocket", "--no-options")
    try:
        preflight, body = await send(http, "OPTIONS", url(gateway, f"/client/negotiate?{QUERY}"), headers=PREFLIGHT)
        assert (preflight.status, body) == (404, NOT_FOUND) and cors_headers(preflight) == []
        negotiate, _ = await send(http, "POST", url(gateway, f"/client/negotiate?{QUERY}"))
        assert negotiate.status == 200
        line = access_line(gateway, r"OPTIONS /client/negotiate")
        assert "API 'signalr-negotiate' has no OPTIONS operations (--no-options)" in line
        assert "--no-options: API signalr-negotiate has no OPTIONS operations" in gateway.stderr()  # startup warning
    finally:
        gateway.stop()


async def test_a_preflight_needing_a_key_gets_401_but_without_options_404(
    keyed_gateway: Gateway, backend: Backend, http: aiohttp.ClientSession
) -> None:
    """Subscription required: the preflight matches its operation, then has no key (401). Without the OPTIONS
    operations it matches nothing, and routing comes before the key (404)."""
    denied, _ = await send(http, "OPTIONS", url(keyed_gateway, f"/client/negotiate?{QUERY}&k=1"), headers=PREFLIGHT)
    assert (denied.status, denied.reason) == (401, "Access Denied") and cors_headers(denied) == []
    line = access_line(keyed_gateway, r"OPTIONS /client/negotiate\?\S*&k=1 ")
    assert "-> signalr/negotiate-preflight 401 (Access Denied: subscription key missing" in line
    assert "a browser's CORS preflight cannot send the key header: subscription required, so browsers need" in line

    # With the key in the query (the only way a browser can send it), the preflight carries it and is forwarded.
    keyed = url(keyed_gateway, f"/client/negotiate?{QUERY}&subscription-key={PRIMARY_KEY}")
    passed, body = await send(http, "OPTIONS", keyed, headers=PREFLIGHT)
    assert passed.status == 200 and json.loads(body)["preflight"] is True

    gateway = start_gateway(backend.url, "--profile", "sse-lp", "--no-options", "--subscription-key", PRIMARY_KEY)
    try:
        unmatched, body = await send(http, "OPTIONS", url(gateway, f"/client/negotiate?{QUERY}"), headers=PREFLIGHT)
        assert (unmatched.status, body) == (404, NOT_FOUND)
    finally:
        gateway.stop()


def test_no_options_refuses_a_config_left_without_operations(tmp_path: Path, backend: Backend) -> None:
    config = tmp_path / "preflights-only.yaml"
    config.write_text(
        "apis:\n  - name: cors\n    type: http\n    suffix: client\n    service_url: https://{signalr}/client/\n"
        "    operations: [{name: preflight, method: OPTIONS, url_template: /}]\n",
        encoding="utf-8",
    )
    process = Process([script("apim-gateway"), "--backend", backend.url, "--config", str(config), "--no-options"])
    try:
        assert process.popen.wait(timeout=30) == 2
        err = process.stderr().strip()
    finally:
        process.stop()
    assert err == (
        "apim-gateway: error: --no-options: API 'cors' has only OPTIONS operations; nothing would be left"
    ), err


# --- --keep-host -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/client/negotiate"), ("OPTIONS", "/client/negotiate"), ("GET", "/client/"), ("POST", "/client/")],
)
async def test_keep_host_forwards_the_clients_host(
    keep_host_gateway: Gateway,
    sse_gateway: Gateway,
    backend: Backend,
    http: aiohttp.ClientSession,
    method: str,
    path: str,
) -> None:
    target = f"{path}?{QUERY}&id=t1"
    _, healthy = await send(http, method, url(sse_gateway, target))
    assert json.loads(healthy)["host"] == backend.authority  # APIM's default: the backend's own authority
    _, kept = await send(http, method, url(keep_host_gateway, target))
    assert json.loads(kept)["host"] == keep_host_gateway.host  # the gateway's, as the client addressed it
    named = {"Host": "apim.example.net"}
    _, renamed = await send(http, method, url(keep_host_gateway, target + "&named=1"), headers=named)
    assert json.loads(renamed)["host"] == "apim.example.net"
    _, rewritten = await send(http, method, url(sse_gateway, target), headers=named)
    assert json.loads(rewritten)["host"] == backend.authority
    line = access_line(keep_host_gateway, rf"{method} {re.escape(path)}\?\S*&named=1 ")
    assert "the client's Host 'apim.example.net' sent to the backend instead of its own (--keep-host)" in line


async def test_keep_host_forwards_the_host_a_client_used(
    keep_host_gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    """A client that reaches the gateway as ``localhost`` (as a ClientEndpoint may name it): that is what the backend
    gets."""
    _, body = await send(http, "POST", f"http://localhost:{keep_host_gateway.port}/client/negotiate?{QUERY}")
    assert json.loads(body)["host"] == f"localhost:{keep_host_gateway.port}"


async def test_keep_host_on_the_websocket_handshake(
    keep_host_ws_gateway: Gateway, ws_gateway: Gateway, backend: Backend, http: aiohttp.ClientSession
) -> None:
    for gateway, expected in ((ws_gateway, backend.authority), (keep_host_ws_gateway, keep_host_ws_gateway.host)):
        async with http.ws_connect(url(gateway, f"/client/?{QUERY}&id=ws1"), timeout=aiohttp.ClientWSTimeout(5)) as ws:
            first = await ws.receive_json(timeout=5)
            assert first["handshake"]["host"] == expected
            await ws.close()
    line = access_line(keep_host_ws_gateway, r"-> signalr-connect/onHandshake 101")
    assert f"(WebSocket relayed; the client's Host '{keep_host_ws_gateway.host}' sent to the backend" in line


def test_keep_host_warns_at_startup(keep_host_gateway: Gateway, sse_gateway: Gateway) -> None:
    assert "WARNING gateway: --keep-host: the backend gets the client's Host header" in keep_host_gateway.stderr()
    assert "--keep-host" not in sse_gateway.stderr()


# --- against a service that checks Host (signalr-emulator --public-host) ---------------------------------------


async def test_keep_host_against_a_service_that_checks_host(http: aiohttp.ClientSession) -> None:
    """The emulator serves only its public host, like Azure's front end: through a gateway that rewrites Host,
    negotiate works; through one that keeps the client's, every request gets the service's 404."""
    emulator = start_emulator("--public-host", "127.0.0.1")
    gateways = [
        start_gateway(emulator.base, "--profile", "sse-lp"),
        start_gateway(emulator.base, "--profile", "sse-lp", "--keep-host"),
        start_gateway(emulator.base, "--profile", "websocket", "--keep-host"),
    ]
    healthy, kept, kept_ws = gateways
    token = mint_token(emulator.access_key, "http://127.0.0.1/client/?hub=chat")
    auth = {"Authorization": f"Bearer {token}", "Origin": "http://app.example"}
    try:
        # Clients reach the gateway by another name than the service's (here: localhost), as they reach APIM.
        ok, body = await send(http, "POST", f"http://localhost:{healthy.port}/client/negotiate?{QUERY}", headers=auth)
        assert ok.status == 200 and "connectionId" in json.loads(body)

        gateway_host = f"localhost:{kept.port}"
        expected = (
            f"The Host header '{gateway_host}' does not name this service (127.0.0.1). A proxy in front of the "
            "service must send the service's own host name in Host."
        ).encode()
        for method, path in (("POST", "/client/negotiate"), ("OPTIONS", "/client/negotiate"), ("GET", "/client/")):
            refused, body = await send(http, method, f"http://{gateway_host}{path}?{QUERY}&id=x", headers=auth)
            assert (refused.status, body) == (404, expected), (method, path)
            assert refused.headers["Content-Type"].startswith("text/plain")
            assert cors_headers(refused) == []
        line = access_line(kept, r"POST /client/negotiate")
        assert f"-> signalr/negotiate 404 (answered by the backend at 127.0.0.1:{emulator.port};" in line
        assert f"the client's Host '{gateway_host}' sent to the backend instead of its own (--keep-host)" in line

        ws_host = f"localhost:{kept_ws.port}"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused_ws:
            await http.ws_connect(f"http://{ws_host}/client/?{QUERY}&id=x", headers=auth)
        assert refused_ws.value.status == 404  # not upgraded: the service's refusal went back as it was
        line = access_line(kept_ws, r"-> signalr-connect/onHandshake 404")
        assert "backend refused the WebSocket handshake; client not upgraded" in line and "--keep-host" in line
        assert f"Host '{gateway_host}' is not this service's host name 127.0.0.1" in emulator.process.stderr()
    finally:
        for gateway in gateways:
            gateway.stop()
        emulator.stop()


async def test_the_whole_stack_with_a_service_that_checks_host() -> None:
    """The app server, the emulator with --public-host 127.0.0.1 and a gateway as ClientEndpoint, reached as
    ``localhost``: our client chats through a gateway that rewrites Host; through one that keeps it, negotiate fails
    with the service's 404 and its text."""
    server_port = free_port()
    emulator = start_emulator(
        "--public-host", "127.0.0.1", "--service-mode", "serverless", "--upstream", upstream_template(server_port)
    )
    processes: list[Gateway | ChatServer] = []
    try:
        healthy = start_gateway(emulator.base, "--profile", "sse-lp")
        processes.append(healthy)
        kept = start_gateway(emulator.base, "--profile", "sse-lp", "--keep-host")
        processes.append(kept)
        serverless = ("--service-mode", "serverless")
        works = start_chat_server(
            emulator.connection_string_to(f"http://localhost:{healthy.port}"), *serverless, port=server_port
        )
        processes.append(works)
        fails = start_chat_server(emulator.connection_string_to(f"http://localhost:{kept.port}"), *serverless)
        processes.append(fails)

        connection = HubConnection(works.hub_url, transport=TransportChoice.SERVER_SENT_EVENTS, reconnect_delays=None)
        echoed: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
        connection.on("echo", lambda *args: None if echoed.done() else echoed.set_result(args))
        async with asyncio.timeout(20):
            await connection.start()
            try:
                await connection.send("echo", "gw", "through a gateway that rewrites Host")
                assert await echoed == ("gw", "through a gateway that rewrites Host (echo from server)")
            finally:
                await connection.stop()

        refused = HubConnection(fails.hub_url, transport=TransportChoice.SERVER_SENT_EVENTS, reconnect_delays=None)
        with pytest.raises(NegotiateFailed) as failed:
            async with asyncio.timeout(20):
                await refused.start()
        assert failed.value.status == 404
        assert f"The Host header 'localhost:{kept.port}' does not name this service (127.0.0.1)" in str(failed.value)
    finally:
        for process in reversed(processes):
            process.stop()
        emulator.stop()


# --- --buffer-sse, the missing DELETE, the profiles, the backend -------------------------------------------------


async def test_buffer_sse_names_itself(
    buffered_gateway: Gateway, sse_gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    mark = marker()
    poll, _ = await send(http, "GET", url(buffered_gateway, f"/client/?{QUERY}&id=b1&{mark}"))
    assert poll.status == 200
    line = access_line(buffered_gateway, rf"GET /client/\?\S*&{mark} ")
    note = 'buffered in 8 KB blocks: buffer-response="false" removed (--buffer-sse)'
    assert f"-> signalr/connect-get 200 ({note}) " in line
    await send(http, "GET", url(sse_gateway, f"/client/?{QUERY}&id=b2&{mark}"))
    assert "-> signalr/connect-get 200 (unbuffered) " in access_line(sse_gateway, rf"GET /client/\?\S*&{mark} ")
    assert "--buffer-sse: responses of 'connect get' are buffered" in buffered_gateway.stderr()


async def test_missing_delete_names_with_delete(
    sse_gateway: Gateway, keyed_gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    mark = marker()
    gone, body = await send(http, "DELETE", url(sse_gateway, f"/client/?{QUERY}&id=d1&{mark}"))
    assert (gone.status, body) == (404, NOT_FOUND)
    line = access_line(sse_gateway, rf"DELETE /client/\?\S*&{mark} ")
    assert "OperationNotFound: no operation for DELETE /;" in line
    assert "LongPolling's stop: the guide's API has no DELETE / (--with-delete adds it)" in line
    key = {"Ocp-Apim-Subscription-Key": PRIMARY_KEY}
    stopped, _ = await send(http, "DELETE", url(keyed_gateway, f"/client/?{QUERY}&id=d1&{mark}"), headers=key)
    assert stopped.status == 202
    assert "--with-delete" not in access_line(keyed_gateway, rf"DELETE /client/\?\S*&{mark} ")


@pytest.mark.parametrize(
    ("method", "headers"), [("GET", {"Accept": "text/event-stream"}), ("GET", {}), ("POST", {}), ("OPTIONS", PREFLIGHT)]
)
async def test_websocket_profile_404_names_the_sse_lp_profile(
    ws_gateway: Gateway, http: aiohttp.ClientSession, method: str, headers: dict[str, str]
) -> None:
    mark = marker()
    response, body = await send(http, method, url(ws_gateway, f"/client/?{QUERY}&id=p1&{mark}"), headers=headers)
    assert (response.status, body) == (404, NOT_FOUND)
    line = access_line(ws_gateway, rf"{method} /client/\?\S*&{mark} ")
    assert "-> API signalr-connect 404 (Resource not found: OperationNotFound:" in line
    assert "Server-Sent Events and LongPolling need an HTTP API with GET and POST / (the sse-lp profile, " in line
    assert "--profile sse-lp)" in line


async def test_sse_lp_upgrade_names_the_websocket_profile(sse_gateway: Gateway, http: aiohttp.ClientSession) -> None:
    mark = marker()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(url(sse_gateway, f"/client/?{QUERY}&id=up1&{mark}"))
    assert refused.value.status == 200  # the backend answered a plain GET (a poll); never 101
    line = access_line(sse_gateway, rf"GET /client/\?\S*&{mark} -> signalr/connect-get 200 \(upgrade")
    assert "upgrade request to an HTTP API: forwarded as a plain request" in line
    assert "WebSockets need a WebSocket API on the suffix (the websocket profile, --profile websocket)" in line


async def test_a_backend_that_is_the_app_server(http: aiohttp.ClientSession) -> None:
    """``--backend`` naming the app server instead of the service: its plain 404 reaches the client untouched (not
    APIM's JSON one), and the access line says the backend answered."""
    # A Serverless app server dials nothing, so a connection string to a closed port is enough here.
    unused = f"Endpoint=http://127.0.0.1;Port={free_port()};AccessKey={'k' * 43};Version=1.0;"
    server = start_chat_server(unused, "--service-mode", "serverless")
    gateway = start_gateway(server.url.rstrip("/"), "--profile", "sse-lp")
    try:
        for method in ("POST", "OPTIONS"):
            response, body = await send(http, method, url(gateway, f"/client/negotiate?{QUERY}"), headers=PREFLIGHT)
            assert (response.status, body) == (404, b"404: Not Found")
            assert response.headers["Content-Type"].startswith("text/plain")
        line = access_line(gateway, r"POST /client/negotiate")
        assert f"-> signalr/negotiate 404 (answered by the backend at 127.0.0.1:{server.port}) " in line
    finally:
        gateway.stop()
        server.stop()


async def test_a_dead_backend_is_named(http: aiohttp.ClientSession) -> None:
    dead = free_port()
    gateway = start_gateway(f"http://127.0.0.1:{dead}", "--profile", "sse-lp")
    try:
        response, body = await send(http, "POST", url(gateway, f"/client/negotiate?{QUERY}"))
        assert response.status == 500 and json.loads(body)["message"] == "Internal server error"
        line = access_line(gateway, r"POST /client/negotiate")
        assert f"backend unreachable (ClientConnectorError) at 127.0.0.1:{dead}: check --backend" in line
    finally:
        gateway.stop()


# --- --help and export -------------------------------------------------------------------------------------------


def _help() -> str:
    process = Process([script("apim-gateway"), "--help"])
    try:
        assert process.popen.wait(timeout=30) == 0
        assert process.popen.stdout is not None
        return process.popen.stdout.read().decode()
    finally:
        process.stop()


def test_help_explains_what_each_switch_reproduces() -> None:
    text = _help()
    entries: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        match = re.match(r"^  (--[a-z-]+)", line)
        if match:
            current = match.group(1)
        elif line and not line.startswith(" "):
            current = ""
        if current:
            entries[current] = entries.get(current, "") + " " + line.strip()
    for switch in ("--backend", "--profile", "--subscription-key", "--with-delete", "--buffer-sse", "--no-options"):
        assert "reproduces" in entries[switch], (switch, entries.get(switch))
    assert "reproduces" in entries["--keep-host"] and "--public-host" in entries["--keep-host"].replace("- ", "-")
    assert "reproducing APIM misconfigurations:" in text


@pytest.mark.parametrize("switch", ["--buffer-sse", "--no-options", "--keep-host"])
def test_export_refuses_every_misconfiguration_switch(tmp_path: Path, switch: str) -> None:
    output = tmp_path / "signalr-apim.bicep"
    args = ["export", "--profile", "sse-lp", "--format", "bicep", switch, "-o", str(output)]
    process = Process([script("apim-gateway"), *args])
    try:
        assert process.popen.wait(timeout=30) == 2
        assert process.popen.stdout is not None and process.popen.stdout.read() == b""
        err = process.stderr().strip()
    finally:
        process.stop()
    assert err == (
        f"apim-gateway: error: {switch} only reproduces a misconfiguration on the local gateway; export writes "
        "working configurations only (leave it out)"
    )
    assert not output.exists()


def test_export_of_the_same_profile_without_the_switch_works(tmp_path: Path) -> None:
    output = tmp_path / "signalr-apim.bicep"
    process = Process([script("apim-gateway"), "export", "--profile", "sse-lp", "--format", "bicep", "-o", str(output)])
    try:
        assert process.popen.wait(timeout=30) == 0
    finally:
        process.stop()
    text = output.read_text(encoding="utf-8")
    assert "'OPTIONS'" in text and 'buffer-response="false"' in text


# --- the pure parts ----------------------------------------------------------------------------------------------


def test_without_options_removes_only_options() -> None:
    for healthy in (sse_lp_profile(), websocket_profile()):
        broken = without_options(healthy)
        for before, after in zip(healthy.apis, broken.apis, strict=True):
            assert [op for op in before.operations if op.method != "OPTIONS"] == list(after.operations)
        assert removed_options(healthy, broken) == frozenset(
            api.name for api in healthy.apis if any(op.method == "OPTIONS" for op in api.operations)
        )
        assert removed_options(healthy, healthy) == frozenset()
    assert build_profile("sse-lp", no_options=True) == without_options(sse_lp_profile())
    api = sse_lp_profile().apis[0]
    only = replace(api, operations=tuple(op for op in api.operations if op.method == "OPTIONS"))
    with pytest.raises(ModelError, match="has only OPTIONS operations"):
        without_options(replace(sse_lp_profile(), apis=(only,)))


def test_rebuffered_names_the_operations_the_switch_changed() -> None:
    healthy = sse_lp_profile()
    assert rebuffered(healthy, build_profile("sse-lp", buffer_sse=True)) == {("signalr", "connect-get")}
    assert rebuffered(healthy, healthy) == frozenset()


def test_notes_only_where_a_switch_caused_the_outcome() -> None:
    model = build_profile("sse-lp", no_options=True)
    reproduce = Misconfigurations(no_options=frozenset({"signalr"}))
    options = route(model, "OPTIONS", "/client/negotiate", upgrade=False)
    patch = route(model, "PATCH", "/client/", upgrade=False)
    assert isinstance(options, NoRoute) and isinstance(patch, NoRoute)
    assert any("--no-options" in note for note in reproduce.unmatched(options, "OPTIONS", upgrade=False))
    assert reproduce.unmatched(patch, "PATCH", upgrade=False) == []
    assert Misconfigurations().unmatched(options, "OPTIONS", upgrade=False) == []
    assert reproduce.switches == ("--no-options",)
    everything = Misconfigurations(True, frozenset({"a"}), frozenset({("a", "b")}))
    assert everything.switches == ("--no-options", "--buffer-sse", "--keep-host")
    matched = route(model, "GET", "/client/", upgrade=False)
    assert isinstance(matched, Route)
    assert Misconfigurations().forwarded(matched, "h", upgrade=False) == []
    assert Misconfigurations(keep_host=True).forwarded(matched, "h" * 300, upgrade=False) == [
        f"the client's Host '{'h' * 100}…' sent to the backend instead of its own (--keep-host)"
    ]
    assert Misconfigurations(keep_host=True).forwarded(matched, None, upgrade=False) == [
        "the client's Host none sent to the backend instead of its own (--keep-host)"
    ]
