"""One chat between a JSON client and a MessagePack client (both the official JS client), for the end-to-end tests of
either service mode, direct or through the APIM gateway.

:func:`mixed_chat` checks what each peer observes: both see each other's broadcasts, each gets only its own echo, an
invoke completes (void, or with the hub's error) in the MessagePack client's protocol, and the client's own log shows
which protocol it used and that the MessagePack one received binary data.
"""

from __future__ import annotations

from tests.support.jspeer import JsPeer

__all__ = ["assert_protocol", "mixed_chat"]


def assert_protocol(peer: JsPeer, protocol: str) -> None:
    """``peer`` (started with ``log_level="trace"``, the default) used ``protocol`` for every message it received."""
    log = peer.stderr()
    assert f"Using HubProtocol '{protocol}'." in log, log[-2000:]
    binary = "data received. Binary data of length"
    # MessagePack arrives as binary data (the handshake reply may be either); JSON never does.
    assert (binary in log) is (protocol == "messagepack"), log[-2000:]


async def mixed_chat(json_peer: JsPeer, msgpack_peer: JsPeer, tag: str) -> None:
    """The JSON and the MessagePack peer, in one hub, chat; every step is checked on both sides."""
    text = f"{tag}: héllo ✓ <b>&amp;</b> " + "x" * 300  # over 127 bytes: a two-byte length prefix
    await msgpack_peer.send("broadcastMessage", "mp", text)
    for peer in (msgpack_peer, json_peer):
        assert await peer.next_message("broadcastMessage") == ("broadcastMessage", ["mp", text])
    await json_peer.send("broadcastMessage", "js", f"{tag} from json")
    for peer in (json_peer, msgpack_peer):
        assert await peer.next_message("broadcastMessage") == ("broadcastMessage", ["js", f"{tag} from json"])

    await msgpack_peer.send("echo", "mp", "mine")
    assert await msgpack_peer.next_message("echo") == ("echo", ["mp", "mine (echo from server)"])
    await json_peer.send("echo", "js", "mine")
    assert await json_peer.next_message("echo") == ("echo", ["js", "mine (echo from server)"])

    # invoke: the Completion comes back in the MessagePack client's protocol, void or with the hub's error.
    assert await msgpack_peer.invoke("Echo", "mp", "") is None
    assert await msgpack_peer.next_message("echo") == ("echo", ["mp", " (echo from server)"])
    try:
        await msgpack_peer.invoke("nope", "x")
    except Exception as exc:  # JsPeerError with the client's error text
        assert "Unknown hub method 'nope'" in str(exc)
    else:
        raise AssertionError("invoking an unknown hub method succeeded")
    assert await msgpack_peer.invoke("broadcastMessage", "mp", None) is None
    for peer in (msgpack_peer, json_peer):
        assert await peer.next_message("broadcastMessage") == ("broadcastMessage", ["mp", None])

    # A marker from each side: whatever either echo sent anywhere would have arrived before it.
    for sender in (msgpack_peer, json_peer):
        marker = ["_MARKER_", f"{tag} {id(sender)}"]
        await sender.send("broadcastMessage", *marker)
        for peer in (json_peer, msgpack_peer):
            assert await peer.next_message("broadcastMessage") == ("broadcastMessage", marker)
    assert json_peer.pending_messages() == [] and msgpack_peer.pending_messages() == []

    assert_protocol(msgpack_peer, "messagepack")
    assert_protocol(json_peer, "json")
