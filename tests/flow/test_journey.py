"""flow.journey: hops filed into one journey per message, by flow id, and by connection and time for the gateway's."""

from __future__ import annotations

from typing import Any

import pytest

from flow.hops import Hop
from flow.ids import flow_id
from flow.journey import LEAD, LINGER, JourneyBook

T0 = 1_800_000_000.0
ALICE, BOB = "conn-alice", "conn-bob"
F1, F2 = flow_id(ALICE, "1"), flow_id(BOB, "1")


def hop(kind: str, at: float, **kw: Any) -> Hop:
    roles = {
        "send": ("client", "client", "apim"),
        "relay": ("apim", "apim", "service"),
        "invoke": ("service", "client", "service"),
        "upstream": ("service", "service", "app"),
        "rest": ("app", "app", "service"),
        "fan-out": ("service", "service", "others"),
        "deliver": ("client", "service", "client"),
        "negotiate": ("apim", "client", "apim"),
        "upgrade": ("apim", "client", "apim"),
    }
    role, source, target = roles[kind]
    return Hop.make(role, source, target, kind, kw.pop("label", kind), at=T0 + at, **kw)


def serverless_broadcast() -> list[Hop]:
    """One Serverless broadcast through the gateway, in the order the collector might receive the hops."""
    return [
        hop("send", 0.000, flow_id=F1, connection_id=ALICE),
        hop("relay", 0.001, connection_id=ALICE, bytes=80),  # before the service has said anything of F1
        hop("invoke", 0.002, flow_id=F1, connection_id=ALICE),
        hop("fan-out", 0.008, flow_id=F1, count=3),
        hop("rest", 0.009, flow_id=F1, status=202, duration_ms=3.0),  # began 0.006
        hop("upstream", 0.011, flow_id=F1, status=200, duration_ms=8.0),  # began 0.003, reported last
        hop("relay", 0.009, connection_id="conn-carol", label="frame to carol", bytes=90),
        hop("deliver", 0.010, flow_id=F1, connection_id=ALICE),
    ]


def test_one_broadcast_is_one_journey_in_the_order_hops_began() -> None:
    book = JourneyBook()
    for h in serverless_broadcast():
        book.add(h)
    assert len(book) == 1
    journey = book.get(F1)
    assert journey is not None and journey is book.latest()
    kinds = [h.kind for h in journey.hops]
    assert kinds == ["send", "relay", "invoke", "upstream", "rest", "fan-out", "relay", "deliver"]
    assert journey.connection_ids == {ALICE}
    assert journey.duration_ms == pytest.approx(11.0, abs=0.01)
    assert journey.facts()["service"] == ["signalr"]
    assert book.connection_hops() == []


def test_connection_set_up_never_joins_a_journey() -> None:
    book = JourneyBook()
    book.add(hop("invoke", 0.0, flow_id=F1, connection_id=ALICE))
    assert book.add(hop("negotiate", 0.001, connection_id=ALICE, status=200)) is None
    assert book.add(hop("upgrade", 0.002, connection_id=ALICE, status=101)) is None
    assert [h.kind for h in book.connection_hops(ALICE)] == ["negotiate", "upgrade"]
    assert book.connection_hops("someone-else") == []
    journey = book.get(F1)
    assert journey is not None and [h.kind for h in journey.hops] == ["invoke"]


def test_gateway_hops_go_to_their_connections_journey_when_two_are_open() -> None:
    book = JourneyBook()
    book.add(hop("invoke", 0.000, flow_id=F1, connection_id=ALICE))
    book.add(hop("invoke", 0.001, flow_id=F2, connection_id=BOB))
    assert book.add(hop("relay", 0.002, connection_id=ALICE, label="alice's")) is book.get(F1)
    assert book.add(hop("relay", 0.003, connection_id=BOB, label="bob's")) is book.get(F2)
    # Without a connection id (Web PubSub through the gateway): the newest open journey.
    assert book.add(hop("relay", 0.004, label="unknown")) is book.get(F2)


def test_a_waiting_relay_goes_to_its_own_connections_journey() -> None:
    book = JourneyBook()
    book.add(hop("relay", 0.000, connection_id=BOB, label="bob's frame"))
    book.add(hop("invoke", 0.001, flow_id=F1, connection_id=ALICE))
    book.add(hop("invoke", 0.002, flow_id=F2, connection_id=BOB))
    j1, j2 = book.get(F1), book.get(F2)
    assert j1 is not None and j2 is not None
    assert [h.label for h in j2.hops] == ["bob's frame", "invoke"]
    assert [h.label for h in j1.hops] == ["invoke"]


def test_a_relay_outside_every_journeys_time_stays_a_connection_hop() -> None:
    book = JourneyBook()
    book.add(hop("invoke", 0.0, flow_id=F1, connection_id=ALICE))
    late = hop("relay", LINGER + 0.5, connection_id=ALICE, label="ping, much later")
    assert book.add(late) is None
    early = hop("relay", 10.0, connection_id=BOB, label="frame with no journey")
    assert book.add(early) is None
    book.add(hop("invoke", 10.0 + LEAD + 0.1, flow_id=F2, connection_id=BOB))  # too late to claim it
    journey = book.get(F2)
    assert journey is not None and [h.kind for h in journey.hops] == ["invoke"]
    assert [h.label for h in book.connection_hops()] == ["ping, much later", "frame with no journey"]
    journey1 = book.get(F1)
    assert journey1 is not None and len(journey1.hops) == 1


def test_messages_are_found_by_name_and_text() -> None:
    book = JourneyBook()
    journey = book.label_message(F1, "alice", "hello")  # the client may know it before any hop
    assert journey.flow_id == F1 and journey.hops == []
    book.add(hop("invoke", 0.0, flow_id=F1, connection_id=ALICE))
    assert book.for_message("alice", "hello") is journey
    assert journey.name == "alice" and journey.text == "hello" and len(journey.hops) == 1
    assert book.for_message("alice", "other") is None
    assert book.for_message("bob", "hello") is None
    book.label_message(F2, "alice", "hello")  # the same line sent again: the newest wins
    assert book.for_message("alice", "hello") is book.get(F2)


def test_the_book_is_bounded_and_forgets_the_oldest() -> None:
    book = JourneyBook(max_journeys=3)
    ids = [flow_id(ALICE, str(n)) for n in range(5)]
    for n, f in enumerate(ids):
        book.label_message(f, "alice", f"line {n}")
        book.add(hop("invoke", n * 10.0, flow_id=f, connection_id=ALICE))
    assert len(book) == 3
    assert [j.flow_id for j in book.journeys()] == ids[2:]
    assert book.get(ids[0]) is None and book.for_message("alice", "line 0") is None
    assert book.for_message("alice", "line 4") is book.latest()


def test_many_stray_hops_stay_bounded() -> None:
    book = JourneyBook()
    for n in range(3000):
        book.add(hop("relay", n * 0.0001, connection_id=f"c{n}"))
    assert len(book.connection_hops()) <= 500
    assert len(book) == 0 and book.latest() is None


def test_bad_bound() -> None:
    with pytest.raises(ValueError):
        JourneyBook(max_journeys=0)


def test_a_waiting_hop_of_an_unknown_connection_joins_the_open_journey_once_settled() -> None:
    book = JourneyBook()
    carol = hop("relay", 0.000, connection_id="conn-carol", label="frame to carol")
    assert book.add(carol) is None
    book.add(hop("invoke", 0.001, flow_id=F1, connection_id=ALICE))
    journey = book.get(F1)
    assert journey is not None and [h.label for h in journey.hops] == ["invoke"]  # carol may still get her own
    book.add(hop("deliver", LEAD + 0.1, flow_id=F1, connection_id=ALICE))
    assert [h.label for h in journey.hops] == ["frame to carol", "invoke", "deliver"]
    assert book.connection_hops() == []


def relay_out(at: float, connection: str | None, label: str) -> Hop:
    return Hop.make("apim", "apim", "others", "relay", label, at=T0 + at, connection_id=connection)


def test_a_clients_next_message_never_joins_its_previous_one() -> None:
    book = JourneyBook()
    second = flow_id(ALICE, "2")
    book.add(hop("invoke", 0.000, flow_id=F1, connection_id=ALICE))
    book.add(hop("fan-out", 0.002, flow_id=F1, count=2))
    book.add(hop("deliver", 0.003, flow_id=F1, connection_id=BOB))  # bob received it
    assert book.add(relay_out(0.004, BOB, "frame to bob")) is book.get(F1)
    # One second later: alice's and bob's next frames on their way in (the services have not spoken yet).
    assert book.add(hop("relay", 1.000, connection_id=ALICE, label="alice's next frame")) is None
    assert book.add(hop("relay", 1.001, connection_id=BOB, label="bob's first frame")) is None
    book.add(hop("invoke", 1.002, flow_id=second, connection_id=ALICE))
    j1, j2 = book.get(F1), book.get(second)
    assert j1 is not None and j2 is not None
    assert [h.label for h in j1.hops] == ["invoke", "fan-out", "deliver", "frame to bob"]
    assert [h.label for h in j2.hops] == ["alice's next frame", "invoke"]
    assert j1.connection_ids == {ALICE}  # a recipient's connection does not make the journey bob's


def test_frames_towards_clients_join_until_the_journey_lingers_out() -> None:
    book = JourneyBook()
    book.add(hop("invoke", 0.0, flow_id=F1, connection_id=ALICE))
    book.add(hop("fan-out", 0.01, flow_id=F1, count=2))
    assert book.add(relay_out(0.01 + LINGER - 0.1, "conn-carol", "slow frame to carol")) is book.get(F1)
    assert book.add(relay_out(0.01 + 2 * LINGER + 1, "conn-carol", "much later")) is None


def test_a_hop_both_ends_report_is_one_arrow_from_the_senders_report() -> None:
    """The service reports its upstream POST (timed) and the app server its receipt; the app server its REST call
    (timed) and the service its receipt: each is drawn once, as the sender reported it. Hops only one end reports (the
    service's invoke, the fan-out) stay."""
    book = JourneyBook()
    for h in serverless_broadcast():
        book.add(h)
    book.add(Hop.make("app", "service", "app", "upstream", "received: 1 send(s)", flow_id=F1, at=T0 + 0.004))
    book.add(Hop.make("service", "app", "service", "rest", "received :send", flow_id=F1, at=T0 + 0.007))
    journey = book.get(F1)
    assert journey is not None
    arrows = journey.arrows()
    labels = [a.label for a in arrows]
    assert "received: 1 send(s)" not in labels and "received :send" not in labels
    assert [a.kind for a in arrows if a.kind in ("upstream", "rest")] == ["upstream", "rest"]
    assert all(a.duration_ms is not None for a in arrows if a.kind in ("upstream", "rest"))
    assert len(arrows) == len(journey.hops) - 2
    # A receiver's report without a sender's report is drawn.
    book.add(Hop.make("app", "service", "app", "server-connection", "ConnectionData", flow_id=F1, at=T0 + 0.005))
    assert "ConnectionData" in [a.label for a in journey.arrows()]


def test_an_answer_to_the_senders_own_poll_is_drawn_to_the_client() -> None:
    book = JourneyBook()
    for h in serverless_broadcast():
        book.add(h)
    book.add(
        Hop.make("service", "service", "others", "poll", "poll 200 (77 bytes)", connection_id=ALICE, at=T0 + 0.009)
    )
    book.add(Hop.make("service", "service", "others", "poll", "poll 200 (77 bytes)", connection_id=BOB, at=T0 + 0.009))
    journey = book.get(F1)
    assert journey is not None
    polls = [a for a in journey.arrows() if a.kind == "poll"]
    assert sorted((a.connection_id, a.target.value) for a in polls) == [(ALICE, "client"), (BOB, "others")]
    assert all(a.target.value == "others" for a in journey.arrows() if a.kind == "fan-out")
