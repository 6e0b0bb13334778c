"""The chat's own hops from its trace events: which sends carry a message, their flow id, and their timing."""

from __future__ import annotations

import pytest

from chat.client_hops import ClientSide, deliver_hop, invocation_of, send_hop
from flow.hops import Lifeline
from flow.ids import flow_id
from signalr.client import TraceEvent

AT = 1_700_000_000.0
SIDE = ClientSide("conn-abc", "LongPolling", Lifeline.APIM, mode="serverless")


def trace(detail: str, kind: str = "send", method: str = "POST", size: int | None = 71) -> TraceEvent:
    return TraceEvent(kind, method, "http://127.0.0.1:8080/client/?hub=chat&id=x", "127.0.0.1:8080", 200, None, size,
                      detail, AT)  # fmt: skip


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        ("json, 71 bytes: Invocation broadcastMessage #4", ("broadcastMessage", "4")),
        ("messagepack, 40 bytes: 2 messages: Ping, Invocation echo #12", ("echo", "12")),
        ("event broadcastMessage #3 (json)", ("broadcastMessage", "3")),  # Web PubSub: the ackId
        ("json, 3 bytes: Ping", None),
        ("json, 50 bytes: Invocation broadcastMessage", None),  # fire-and-forget: no id, no flow id
        ("json, 60 bytes: Completion #4 (void)", None),
        ("sequenceAck 7", None),
    ],
)
def test_the_invocation_a_send_carried(detail: str, expected: tuple[str, str] | None) -> None:
    assert invocation_of(trace(detail)) == expected


def test_only_sends_carry_a_message() -> None:
    assert invocation_of(trace("json, 71 bytes: Invocation broadcastMessage #4", kind="receive")) is None


def test_a_send_hop_has_the_flow_id_every_role_computes_and_lasts_from_the_hand_over() -> None:
    found = send_hop(trace("json, 71 bytes: Invocation broadcastMessage #4"), SIDE, since=AT - 0.003)
    assert found is not None
    hop, flow, target = found
    assert flow == flow_id("conn-abc", "4") == hop.flow_id and target == "broadcastMessage"
    assert (hop.role, hop.source, hop.target, hop.kind) == ("client", "client", "apim", "send")
    assert (hop.transport, hop.mode, hop.service, hop.connection_id) == (
        "LongPolling",
        "serverless",
        "signalr",
        "conn-abc",
    )
    assert hop.duration_ms == pytest.approx(3.0, abs=0.01) and hop.started == pytest.approx(AT - 0.003)
    assert hop.label == "broadcastMessage #4 (POST, 71 B)" and hop.bytes == 71


def test_no_hop_without_a_connection_id_or_an_invocation() -> None:
    assert (
        send_hop(trace("json, 71 bytes: Invocation broadcastMessage #4"), ClientSide(None, None, Lifeline.APIM)) is None
    )
    assert send_hop(trace("json, 3 bytes: Ping"), SIDE) is None


def test_on_web_pubsub_the_hop_names_the_service_and_a_websocket() -> None:
    side = ClientSide("wps-1", "Web PubSub", Lifeline.APIM, service="webpubsub", mode="default")
    found = send_hop(trace("event broadcastMessage #3 (json)", method="WS", size=120), side)
    assert found is not None
    hop = found[0]
    assert (hop.service, hop.transport, hop.mode) == ("webpubsub", "WebSockets", None)
    assert hop.flow_id == flow_id("wps-1", 3)


def test_the_deliver_hop_says_the_round_trip_in_its_label_not_as_its_duration() -> None:
    hop = deliver_hop(flow_id("conn-abc", "4"), "broadcastMessage", SIDE, 12.34, AT)
    assert hop is not None
    assert (hop.source, hop.target, hop.kind, hop.duration_ms) == ("apim", "client", "deliver", None)
    assert "12.3 ms after it was sent" in hop.label
