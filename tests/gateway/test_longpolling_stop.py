"""LongPolling stop through the ``sse-lp`` profile, end to end (docs/gateway.md, "The LongPolling stop gap"):
``signalr-emulator`` behind ``apim-gateway``, driven by the official JS client, by our own client, and by a raw client
that skips the Close message.

What is asserted is what a user sees: the gateway's access log (status of each POST and of the DELETE), the
emulator's ``disconnected`` line, the REST existence check, and how each client ends. The emulator waits 30 s for a
missing poll here, so a connection that only the poll gap could end is still open long after every wait below.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator

import aiohttp
import pytest

from signalr.client import ConnectionState, HubConnection, TransportChoice
from signalr.tokens import mint_token
from tests.support.jspeer import JsPeer
from tests.support.stack import EmulatorProcess, Gateway, start_emulator, start_gateway

POLL_GAP_S = 30  # SIGNALR_EMULATOR_MAX_POLL_INTERVAL, far beyond PROMPT_S
PROMPT_S = 2.0  # a disconnect caused by the Close message or the DELETE comes well within this
APIM_404 = "-> API signalr 404 (Resource not found: OperationNotFound: no operation for DELETE /"
HANDSHAKE = b'{"protocol":"json","version":1}\x1e'


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    emulator = start_emulator(env={"SIGNALR_EMULATOR_MAX_POLL_INTERVAL": str(POLL_GAP_S)})
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def seed_doc_gateway(emulator: EmulatorProcess) -> Iterator[Gateway]:
    """The seed doc's sse-lp API: no DELETE operation."""
    gateway = start_gateway(emulator.base, "--profile", "sse-lp")
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def delete_gateway(emulator: EmulatorProcess) -> Iterator[Gateway]:
    gateway = start_gateway(emulator.base, "--profile", "sse-lp", "--with-delete")
    yield gateway
    gateway.stop()


def client_token(emulator: EmulatorProcess) -> str:
    return mint_token(emulator.access_key, "http://127.0.0.1/client/?hub=chat")


class AccessLog:
    """The gateway's access lines written since this object was made (the gateway serves several tests)."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._start = len(gateway.stderr())

    def lines(self, method: str) -> list[str]:
        new = self._gateway.stderr()[self._start :]
        return [line for line in new.splitlines() if f"gateway.access: {method} /client/?" in line]

    def delete(self) -> str:
        # The gateway writes an access line once the response is sent: under load it may trail the client's return.
        for _ in range(100):
            if self.lines("DELETE"):
                break
            time.sleep(0.05)
        lines = self.lines("DELETE")
        assert len(lines) == 1, self._gateway.stderr()[-3000:]
        return lines[0]

    def post_statuses(self) -> list[int]:
        """Statuses of the POSTs to the connect URL (handshake, sends, Close), in the order they were answered."""
        return [int(line.split(" -> ", 1)[1].split()[1]) for line in self.lines("POST")]


async def disconnected_within(emulator: EmulatorProcess, connection_id: str, seconds: float = PROMPT_S) -> None:
    await emulator.process.stderr_line(rf"disconnected hub=chat id={re.escape(connection_id)}$", timeout=seconds)


async def connection_exists(emulator: EmulatorProcess, connection_id: str) -> bool:
    path = f"/api/hubs/chat/connections/{connection_id}"
    headers = {"Authorization": f"Bearer {mint_token(emulator.access_key, 'http://127.0.0.1' + path)}"}
    async with (
        aiohttp.ClientSession() as session,
        session.head(f"{emulator.base}{path}?api-version=2022-06-01", headers=headers) as response,
    ):
        assert response.status in (200, 404)
        return response.status == 200


# --- the seed doc's API: DELETE gets APIM's 404 -------------------------------------------------------------------


async def test_js_client_close_message_ends_the_connection_and_its_delete_404_is_benign(
    emulator: EmulatorProcess, seed_doc_gateway: Gateway
) -> None:
    log = AccessLog(seed_doc_gateway)
    peer = await JsPeer.start(
        f"{seed_doc_gateway.url}/client/?hub=chat", "longpolling", access_token=client_token(emulator)
    )
    assert peer.transport == "LongPolling" and peer.connection_id
    await peer.stop()
    assert await peer.wait_closed(timeout=1) is None and peer.returncode == 0
    assert "A 404 response was returned from sending a DELETE request." in peer.stderr()
    assert APIM_404 in log.delete()
    await disconnected_within(emulator, peer.connection_id)
    # The handshake and the Close message ({"type":7}, 11 bytes): the Close got through, so the service closed.
    assert "(LongPolling transport) sending data. String data of length 11." in peer.stderr()
    assert log.post_statuses() == [200, 200]


async def test_our_client_close_message_ends_the_connection_and_its_delete_404_is_benign(
    emulator: EmulatorProcess, seed_doc_gateway: Gateway
) -> None:
    log = AccessLog(seed_doc_gateway)
    connection = HubConnection(
        f"{seed_doc_gateway.url}/client/?hub=chat",
        transport=TransportChoice.LONG_POLLING,
        access_token=client_token(emulator),
        reconnect_delays=None,
    )
    await connection.start()
    connection_id = connection.connection_id
    assert connection_id and connection.transport_name == "LongPolling"
    await connection.stop()  # raises nothing: the 404 is not an error
    assert connection.state is ConnectionState.DISCONNECTED
    assert APIM_404 in log.delete()
    await disconnected_within(emulator, connection_id)
    assert log.post_statuses() == [200, 200]


async def test_without_a_close_message_the_connection_outlives_the_delete_404(
    emulator: EmulatorProcess, seed_doc_gateway: Gateway
) -> None:
    """The negative control: a client that aborts its poll and sends only DELETE leaves the connection open (until
    the poll gap), which is what would happen to everyone if the Close message did not get through."""
    log = AccessLog(seed_doc_gateway)
    headers = {"Authorization": f"Bearer {client_token(emulator)}"}
    base = f"{seed_doc_gateway.url}/client/"
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}negotiate?hub=chat&negotiateVersion=1", headers=headers) as response:
            negotiated = await response.json()
        url = f"{base}?hub=chat&id={negotiated['connectionToken']}"
        async with session.get(url, headers=headers) as response:
            assert response.status == 200
        async with session.post(url, data=HANDSHAKE, headers=headers) as response:
            assert response.status == 200
        async with session.get(url, headers=headers) as response:
            assert await response.read() == b"{}\x1e"
        async with session.delete(url, headers=headers) as response:
            assert response.status == 404
            assert await response.read() == b'{ "statusCode": 404, "message": "Resource not found" }'
    assert APIM_404 in log.delete()
    stopped_at = time.monotonic()
    while time.monotonic() - stopped_at < PROMPT_S:
        assert await connection_exists(emulator, negotiated["connectionId"])
        await asyncio.sleep(0.2)
    assert f"disconnected hub=chat id={negotiated['connectionId']}" not in emulator.process.stderr()


# --- with --with-delete: the DELETE reaches the service -----------------------------------------------------------


async def test_js_client_delete_reaches_the_service(emulator: EmulatorProcess, delete_gateway: Gateway) -> None:
    log = AccessLog(delete_gateway)
    peer = await JsPeer.start(
        f"{delete_gateway.url}/client/?hub=chat", "longpolling", access_token=client_token(emulator)
    )
    assert peer.connection_id
    await peer.stop()
    assert await peer.wait_closed(timeout=1) is None and peer.returncode == 0
    await disconnected_within(emulator, peer.connection_id)
    # The JS client does not wait for its Close POST before the DELETE: whichever the service gets first ends the
    # connection (202 for the DELETE), and the other finds it gone (404, ignored by the client).
    delete = re.search(r"signalr/connect-delete (\d{3})\b", log.delete())
    assert delete is not None
    posts = log.post_statuses()
    if delete.group(1) == "202":
        assert "(LongPolling transport) DELETE request accepted." in peer.stderr()
        assert posts in ([200, 404], [200, 200])
    else:
        assert delete.group(1) == "404" and posts == [200, 200]


async def test_our_client_waits_for_its_close_so_its_delete_finds_the_connection_gone(
    emulator: EmulatorProcess, delete_gateway: Gateway
) -> None:
    log = AccessLog(delete_gateway)
    connection = HubConnection(
        f"{delete_gateway.url}/client/?hub=chat",
        transport=TransportChoice.LONG_POLLING,
        access_token=client_token(emulator),
        reconnect_delays=None,
    )
    await connection.start()
    connection_id = connection.connection_id
    assert connection_id
    await connection.stop()
    assert connection.state is ConnectionState.DISCONNECTED
    await disconnected_within(emulator, connection_id)
    assert log.post_statuses() == [200, 200]
    assert "signalr/connect-delete 404" in log.delete()  # the service's own "No Connection with that ID"
