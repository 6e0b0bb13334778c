"""The Flow view's text sequence diagram: lifelines, one arrow per hop, labels, status and latency, at any width."""

from __future__ import annotations

import pytest

from chat.flow_view import (
    LIFELINES,
    FlowContext,
    diagram_order,
    journey_facts,
    layout_for,
    message_span_ms,
    render_diagram,
    render_header,
    render_hop,
)
from flow.hops import Hop, Lifeline, Role

T0 = 1_700_000_000.0


def hop(
    source: str,
    target: str,
    kind: str = "relay",
    label: str = "x",
    role: str = "service",
    at: float = 0.0,
    **fields: object,
) -> Hop:
    return Hop.make(role, source, target, kind, label, at=T0 + at, **fields)  # type: ignore[arg-type]


SERVERLESS = [
    hop("client", "apim", "send", "broadcastMessage #2 (POST, 71 B)", "client", 0.000, transport="LongPolling"),
    hop("apim", "service", "relay", "POST /client/?hub=chat&id=… → 200, Host rewritten", "apim", 0.002, status=200),
    hop("client", "service", "invoke", "Invocation broadcastMessage from a LongPolling client", at=0.003),
    hop(
        "service",
        "app",
        "upstream",
        "POST /upstream/chat/messages/broadcastMessage",
        at=0.012,
        status=200,
        duration_ms=8.0,
        mode="serverless",
    ),
    hop("app", "service", "rest", "POST /api/v1/hubs/chat (send to all)", "app", 0.011, status=202, duration_ms=2.5),
    hop("service", "others", "fan-out", "broadcastMessage to 3 connections", at=0.013, count=3),
    hop("service", "apim", "poll", "poll answered with 1 message", at=0.015, status=200),
    hop("apim", "client", "relay", "GET /client/?hub=chat&id=… → 200", "apim", 0.016, status=200),
    hop("apim", "client", "deliver", "broadcastMessage arrived back, 16.4 ms after it was sent", "client", 0.017),
]


@pytest.mark.parametrize("width", [60, 75, 80, 96, 110, 126, 160, 220])
def test_every_row_fits_the_width_and_every_hop_has_its_arrow(width: int) -> None:
    header = render_header(width).plain
    rows = render_diagram(SERVERLESS, width).plain.splitlines()
    assert len(header) <= width
    assert all(len(row) <= width for row in rows), [row for row in rows if len(row) > width]
    arrows = [row for row in rows if "▶" in row or "◀" in row]
    assert len(arrows) == len(SERVERLESS)


def test_lifelines_are_named_in_order_short_at_80_columns_and_full_at_130() -> None:
    narrow = render_header(75).plain
    assert [narrow.index(name) for name in ("You", "App", "APIM", "Svc", "Others")] == sorted(
        narrow.index(name) for name in ("You", "App", "APIM", "Svc", "Others")
    )
    wide = render_header(126).plain
    positions = [wide.index(name) for name in ("Client", "App server", "APIM", "Service", "Others")]
    assert positions == sorted(positions)
    assert " at " in wide and "hop" in wide and "took" in wide
    assert layout_for(75).lane < layout_for(126).lane


@pytest.mark.parametrize("width", [75, 126])
def test_an_arrow_starts_on_its_source_lifeline_and_points_at_its_target(width: int) -> None:
    layout = layout_for(width)
    for source in LIFELINES:
        for target in LIFELINES:
            row = render_hop(hop(source.value, target.value), width).plain
            s, t = layout.center(source), layout.center(target)
            if s == t:
                assert row[s] == "↻"
                continue
            assert row[s] == ("├" if t > s else "┤"), (source, target, row)
            assert row[t] == ("▶" if t > s else "◀"), (source, target, row)
            between = row[min(s, t) + 1 : max(s, t)]
            assert set(between) <= {"─", "┼"} and between, row


def test_status_and_latency_close_each_row_and_a_failure_is_marked() -> None:
    row = render_hop(SERVERLESS[3], 126)
    assert row.plain.rstrip().endswith("200  8.0 ms")
    failed = render_hop(hop("service", "app", "upstream", "POST /upstream → 500", status=500, duration_ms=1234.0), 75)
    assert failed.plain.rstrip().endswith("500   1.2 s")
    assert any("red" in str(span.style) for span in failed.spans)


def test_the_wide_view_shows_when_each_hop_began_after_the_first() -> None:
    rows = render_diagram(SERVERLESS, 126).plain.splitlines()
    assert "+0.0" in rows[0]
    # The upstream POST took 8 ms and ended at +12 ms: it began at +4 ms, before the REST call made while answering it.
    upstream = next(i for i, row in enumerate(rows) if "/upstream/" in row)
    rest = next(i for i, row in enumerate(rows) if "/api/v1/hubs" in row)
    assert upstream < rest and "+4.0" in rows[upstream] and "+8.5" in rows[rest]


def test_a_long_label_wraps_under_itself_beside_bare_lifelines_at_80_columns() -> None:
    long = hop("service", "app", "upstream", "POST " + "/upstream/chat/messages/broadcastMessage" * 3, status=200)
    rows = render_hop(long, 75).plain.splitlines()
    assert 2 <= len(rows) <= 3
    assert rows[-1].rstrip().endswith("…")
    layout = layout_for(75)
    for row in rows[1:]:
        assert all(row[layout.center(line)] == "│" for line in LIFELINES)
        assert "▶" not in row and "◀" not in row


def test_hostile_labels_are_shown_literally_without_control_characters() -> None:
    # The constructor trusts its arguments (a hop built by hand, not by Hop.make or from_json): the view still cleans.
    evil = Hop(T0, Role.SERVICE, Lifeline.SERVICE, Lifeline.CLIENT, "relay", "\x1b[31mred\x07 [bold]not bold[/]")
    text = render_hop(evil, 126)
    assert "\x1b" not in text.plain and "\x07" not in text.plain
    assert "\\x1b[31mred\\x07 [bold]not bold[/]" in text.plain


def test_facts_tell_the_service_the_mode_and_the_transport_apart() -> None:
    facts, path = journey_facts(SERVERLESS, FlowContext())
    assert facts == "Azure SignalR Service · Serverless mode · LongPolling through APIM"
    assert "/upstream" in path and "REST" in path and "next poll" in path

    default = [hop("client", "apim", "send", "x", "client", transport="WebSockets", mode="default")]
    facts, path = journey_facts(default, FlowContext())
    assert facts == "Azure SignalR Service · Default mode · WebSockets through APIM"
    assert "server connection" in path and "both ways" in path

    sse = [hop("client", "service", "send", "x", "client", transport="ServerSentEvents")]
    facts, path = journey_facts(sse, FlowContext(mode="serverless", via_gateway=False))
    assert facts == "Azure SignalR Service · Serverless mode · ServerSentEvents straight to the service"
    assert "event stream" in path and "POST" in path

    webpubsub = [hop("client", "apim", "send", "x", "client", service="webpubsub", transport="WebSockets")]
    facts, path = journey_facts(webpubsub, FlowContext())
    assert facts == "Azure Web PubSub · event handler · WebSocket through APIM"
    assert "event handler" in path and "CloudEvent" in path and "REST" in path


def test_without_hops_the_facts_come_from_the_chat() -> None:
    facts, _ = journey_facts([], FlowContext(service="signalr", mode="default", transport="ServerSentEvents"))
    assert facts == "Azure SignalR Service · Default mode · ServerSentEvents through APIM"


def test_a_poll_that_was_already_waiting_is_drawn_when_it_answered_and_the_span_starts_with_the_message() -> None:
    flow = "0123456789abcdef"
    waiting = hop("apim", "client", "relay", "GET /client/ 200 ↓", "apim", 7.6, status=200, duration_ms=7590.0)
    send = hop("client", "apim", "send", "broadcastMessage #1 (POST)", "client", 7.5, flow_id=flow, duration_ms=1.0)
    fan_out = hop("service", "others", "fan-out", "to 1", at=7.55, flow_id=flow, count=1)
    hops = [waiting, send, fan_out]  # the order a journey keeps them: by when each began
    assert diagram_order(hops) == [send, fan_out, waiting]
    assert message_span_ms(hops) == pytest.approx(101.0, abs=0.01)
    rows = render_diagram(hops, 126).plain.splitlines()
    assert "GET /client/" in rows[-1] and "+101.0" in rows[-1] and rows[-1].rstrip().endswith("7.6 s")
    assert "+0.0" in rows[0]


def test_the_wide_view_says_who_reported_each_hop() -> None:
    assert " by " in render_header(126).plain and " by " not in render_header(75).plain
    rows = render_diagram(SERVERLESS, 126).plain.splitlines()
    assert any(" svc  POST /upstream/" in row for row in rows)
    assert any(" app  POST /api/v1/hubs/chat" in row for row in rows)
    assert any(" apim POST /client/" in row for row in rows)
    assert any(" you  broadcastMessage #2" in row for row in rows)
