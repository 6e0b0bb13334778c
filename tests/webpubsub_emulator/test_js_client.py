"""The official ``@azure/web-pubsub-client`` (Node, through ``tests/support/wps_jspeer.py``) against the emulator:
groups and acks on both JSON subprotocols, and a reliable recovery after a dropped socket that loses nothing."""

from __future__ import annotations

import shutil

import pytest

from tests.support.wps_emulator import WebPubSubEmulator
from tests.support.wps_jspeer import AckFailed, WpsJsPeer

from .helpers import client_url, service

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
ROLES = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"]


@pytest.mark.parametrize("protocol", ["json", "reliable"])
async def test_js_client_groups_and_acks(emulator: WebPubSubEmulator, protocol: str) -> None:
    alice = await WpsJsPeer.start(client_url(emulator, user_id="js-alice", roles=ROLES), protocol=protocol)
    bob = await WpsJsPeer.start(client_url(emulator, user_id="js-bob"), protocol=protocol)
    try:
        assert alice.user_id == "js-alice"
        await alice.join_group("js-room")
        service(emulator).add_connection_to_group("js-room", str(bob.connection_id))
        await alice.send_to_group("js-room", {"text": "hi"})
        event = await bob.next_event("group-message")
        assert event["data"] == {"text": "hi"}
        with pytest.raises(AckFailed) as error:
            await bob.join_group("js-room")
        assert error.value.name == "Forbidden"
        service(emulator).send_to_connection(str(bob.connection_id), "direct", content_type="text/plain")
        assert await bob.next_data("server-message") == "direct"
    finally:
        await alice.stop()
        await bob.stop()


async def test_js_reliable_client_recovers_without_loss(emulator: WebPubSubEmulator) -> None:
    peer = await WpsJsPeer.start(client_url(emulator, user_id="js-rel"), protocol="reliable")
    rest = service(emulator)
    try:
        cid = str(peer.connection_id)
        for i in range(3):
            rest.send_to_connection(cid, {"i": i})
        got = [await peer.next_data("server-message") for _ in range(3)]
        peer.drop()
        for i in range(3, 8):
            rest.send_to_connection(cid, {"i": i})
        got += [await peer.next_data("server-message", timeout=20) for _ in range(5)]
        assert got == [{"i": i} for i in range(8)]
        assert rest.connection_exists(cid)
        assert peer.pending("server-message") == []
    finally:
        await peer.stop()
