"""The official Web PubSub SDKs through `apim-gateway --profile webpubsub` to `webpubsub-emulator`.

The client access URL is minted by ``azure-messaging-webpubsubservice`` from the emulator's connection string, then
its host is swapped for the gateway's, as an app server behind APIM hands it out (docs/apim.md §9); the clients are
``azure-messaging-webpubsubclient``: they join a group, send to it and receive through the gateway.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest
from azure.messaging.webpubsubclient import WebPubSubClient
from azure.messaging.webpubsubclient.models import (
    CallbackType,
    OpenClientError,
    SendMessageError,
    WebPubSubDataType,
    WebPubSubProtocolType,
)
from azure.messaging.webpubsubservice import WebPubSubServiceClient
from yarl import URL

from tests.support.stack import Gateway, start_gateway
from tests.support.wps_emulator import WebPubSubEmulator, start_webpubsub_emulator

ROOM = "room"
ROLES = [f"webpubsub.joinLeaveGroup.{ROOM}", f"webpubsub.sendToGroup.{ROOM}"]


@pytest.fixture(scope="module")
def emulator() -> Iterator[WebPubSubEmulator]:
    with start_webpubsub_emulator() as running:
        yield running


@pytest.fixture(scope="module")
def gateway(emulator: WebPubSubEmulator) -> Iterator[Gateway]:
    running = start_gateway(emulator.endpoint, "--profile", "webpubsub")
    yield running
    running.stop()


def via_gateway(client_access_url: str, gateway: Gateway) -> str:
    """The client access URL with scheme and host swapped for the gateway's; path and query (the token) unchanged."""
    parts = urlsplit(client_access_url)
    return urlunsplit(("ws", gateway.host, parts.path, parts.query, parts.fragment))


def mint(emulator: WebPubSubEmulator, user: str, roles: list[str] | None = None) -> str:
    service = WebPubSubServiceClient.from_connection_string(emulator.connection_string, hub="chat")
    try:
        url = service.get_client_access_token(user_id=user, roles=ROLES if roles is None else roles)["url"]
    finally:
        service.close()
    assert isinstance(url, str) and url.startswith(f"{emulator.ws_endpoint}/client/hubs/chat?access_token=")
    return url


def _wait(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("protocol_type", [WebPubSubProtocolType.JSON_RELIABLE, WebPubSubProtocolType.JSON])
def test_join_send_and_receive_through_the_gateway(
    emulator: WebPubSubEmulator, gateway: Gateway, protocol_type: WebPubSubProtocolType
) -> None:
    received: dict[str, list[tuple[str, Any, str | None]]] = {"ann": [], "bob": []}
    lock = threading.Lock()
    clients = {}
    for user in ("ann", "bob"):
        client = WebPubSubClient(
            via_gateway(mint(emulator, user), gateway), protocol_type=protocol_type, start_timeout=10, ack_timeout=10
        )

        def on_group(event: Any, user: str = user) -> None:
            with lock:
                received[user].append((event.group, event.data, event.from_user_id))

        client.subscribe(CallbackType.GROUP_MESSAGE, on_group)
        clients[user] = client
    try:
        for client in clients.values():
            client.open()
            client.join_group(ROOM)
        clients["ann"].send_to_group(ROOM, {"name": "ann", "message": "hello through APIM"}, WebPubSubDataType.JSON)
        _wait(lambda: bool(received["bob"]) and bool(received["ann"]), "the group message on both clients")
    finally:
        for client in clients.values():
            client.close()
    message = (ROOM, {"name": "ann", "message": "hello through APIM"}, "ann")
    assert received == {"ann": [message], "bob": [message]}
    text = gateway.wait_for_log("websocket closed")
    assert "-> webpubsub-client/onHandshake 101 (WebSocket relayed)" in text
    assert "access_token=***" in text and "eyJ" not in text


def test_a_client_without_the_send_role_is_refused_by_the_service(
    emulator: WebPubSubEmulator, gateway: Gateway
) -> None:
    """The service's ack error crosses the gateway as any other frame."""
    client = WebPubSubClient(
        via_gateway(mint(emulator, "eve", roles=[]), gateway),
        protocol_type=WebPubSubProtocolType.JSON,
        start_timeout=10,
        ack_timeout=10,
        message_retry_total=1,
    )
    with client:
        with pytest.raises(SendMessageError) as info:
            client.join_group(ROOM)
    assert info.value.error_detail is not None and info.value.error_detail.name == "Forbidden"


async def test_a_bad_token_gets_the_services_401_through_the_gateway(
    emulator: WebPubSubEmulator, gateway: Gateway
) -> None:
    url = via_gateway(mint(emulator, "mallory"), gateway)
    tampered = url[:-4] + ("AAAA" if not url.endswith("AAAA") else "BBBB")
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(URL(tampered, encoded=True), protocols=("json.webpubsub.azure.v1",))
    assert info.value.status == 401
    client = WebPubSubClient(tampered, start_timeout=5, reconnect_retry_total=0)
    with pytest.raises(OpenClientError):
        client.open()
    client.close()


def test_the_service_url_without_the_gateway_is_not_the_gateway(emulator: WebPubSubEmulator, gateway: Gateway) -> None:
    """Sanity of the setup: the minted URL names the emulator; only the swap sends it through the gateway."""
    url = mint(emulator, "ann")
    assert urlsplit(url).netloc == f"127.0.0.1:{emulator.port}"
    assert urlsplit(via_gateway(url, gateway)).netloc == gateway.host
    assert urlsplit(via_gateway(url, gateway)).query == urlsplit(url).query
