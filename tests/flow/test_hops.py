"""flow.hops: the hop model, its datagram form, and the refusal of anything that is not exactly a hop."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flow.hops import KINDS, MAX_DATAGRAM, MAX_LABEL, Hop, InvalidHop, Lifeline, Role, might_hold_secret
from flow.ids import flow_id
from signalr.redact import redact_text

FLOW = flow_id("conn", "1")


def sample(**overrides: Any) -> Hop:
    fields: dict[str, Any] = {
        "role": "service",
        "source": "service",
        "target": "others",
        "kind": "fan-out",
        "label": "broadcastMessage to 3 clients",
        "flow_id": FLOW,
        "count": 3,
        "transport": "WebSockets",
        "mode": "serverless",
        "duration_ms": 1.25,
        "status": 202,
        "connection_id": "abc-123",
        "bytes": 77,
    }
    fields.update(overrides)
    return Hop.make(**fields)


def valid_dict() -> dict[str, Any]:
    return json.loads(sample().to_json())


def test_round_trip_keeps_every_field() -> None:
    hop = sample()
    again = Hop.from_json(hop.to_json())
    assert again == hop
    assert again.role is Role.SERVICE and again.target is Lifeline.OTHERS


def test_json_is_compact_and_drops_none() -> None:
    raw = Hop.make("client", "client", "app", "negotiate", "POST /chat/negotiate").to_json()
    assert b" " not in raw.replace(b"POST /chat/negotiate", b"")
    obj = json.loads(raw)
    assert set(obj) == {"at", "role", "source", "target", "kind", "label", "service"}
    assert obj["service"] == "signalr"


@pytest.mark.parametrize(
    "secret",
    [
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJodHRwOi8vbG9jYWxob3N0In0.c2lnbmF0dXJlc2lnbmF0dXJl",
        "GET /client/?hub=chat&access_token=supersecretvalue",
        "Endpoint=http://x;AccessKey=supersecretvalue;Version=1.0",
        "Ocp-Apim-Subscription-Key: supersecretvalue",
        "/client/hubs/chat?awps_reconnection_token=supersecretvalue&x=1",
        "POST /api?sig=supersecretvalue",
    ],
)
def test_make_redacts_secrets_in_labels(secret: str) -> None:
    hop = sample(label=secret)
    assert "supersecretvalue" not in hop.label
    assert "c2lnbmF0dXJl" not in hop.label
    assert b"supersecretvalue" not in hop.to_json()


def test_from_json_redacts_a_label_a_sender_did_not() -> None:
    obj = valid_dict()
    obj["label"] = "GET /client?access_token=supersecretvalue"
    hop = Hop.from_json(json.dumps(obj).encode())
    assert "supersecretvalue" not in hop.label


def test_connection_token_in_a_label_becomes_its_tag() -> None:
    hop = sample(label="GET /chat?id=realconnectiontoken")
    assert "realconnectiontoken" not in hop.label
    assert "id=~" in hop.label


def test_label_is_one_line_of_at_most_120_characters() -> None:
    hop = sample(label="line one\nline two\r\x00\u2028" + "x" * 500)
    assert "\n" not in hop.label and "\r" not in hop.label and "\x00" not in hop.label
    assert len(hop.label) == MAX_LABEL
    assert hop.label.endswith("…")


def test_to_json_cuts_a_huge_label_to_fit_a_datagram() -> None:
    hop = Hop(at=1.0, role=Role.APP, source=Lifeline.APP, target=Lifeline.SERVICE, kind="rest", label="é" * 10_000)
    raw = hop.to_json()
    assert len(raw) <= MAX_DATAGRAM
    assert Hop.from_json(raw).label.endswith("…")


def test_to_json_refuses_a_hop_that_cannot_fit() -> None:
    hop = Hop(
        at=1.0, role=Role.APP, source=Lifeline.APP, target=Lifeline.SERVICE, kind="rest", label="x",
        connection_id="c" * 5000,
    )  # fmt: skip
    with pytest.raises(InvalidHop, match="too large"):
        hop.to_json()


def test_every_kind_is_accepted() -> None:
    for kind in KINDS:
        assert Hop.from_json(sample(kind=kind).to_json()).kind == kind


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("kind", "teleport", "unknown kind"),
        ("kind", 3, "unknown kind"),
        ("role", "others", "unknown role"),
        ("role", None, "unknown role"),
        ("source", "moon", "unknown lifeline"),
        ("target", ["client"], "unknown lifeline"),
        ("label", 5, "label must be a string"),
        ("label", None, "label must be a string"),
        ("at", "now", "'at'"),
        ("at", True, "'at'"),
        ("at", -1, "'at'"),
        ("at", 0, "'at'"),
        ("status", "200", "status"),
        ("status", 99, "status"),
        ("status", True, "status"),
        ("status", 2.5, "status"),
        ("duration_ms", -1, "duration_ms"),
        ("duration_ms", "1", "duration_ms"),
        ("duration_ms", 1e12, "duration_ms"),
        ("flow_id", "XYZ", "flow_id"),
        ("flow_id", 12, "flow_id"),
        ("flow_id", "0123456789ABCDEF", "flow_id"),
        ("connection_id", "", "connection_id"),
        ("connection_id", "a\nb", "connection_id"),
        ("connection_id", 7, "connection_id"),
        ("connection_id", "c" * 129, "connection_id"),
        ("transport", "Carrier pigeon", "transport"),
        ("transport", ["WebSockets"], "transport"),
        ("mode", {"a": 1}, "mode"),
        ("service", ["signalr"], "service"),
        ("role", ["app"], "unknown role"),
        ("source", {"x": 1}, "unknown lifeline"),
        ("kind", ["send"], "unknown kind"),
        ("mode", "classic", "mode"),
        ("service", "pubnub", "service"),
        ("service", None, "service"),
        ("count", -1, "count"),
        ("count", 1.5, "count"),
        ("count", False, "count"),
        ("bytes", "10", "bytes"),
        ("bytes", 1 << 40, "bytes"),
    ],
)
def test_from_json_refuses_wrong_values(field: str, value: Any, message: str) -> None:
    obj = valid_dict()
    obj[field] = value
    with pytest.raises(InvalidHop, match=message):
        Hop.from_json(json.dumps(obj).encode())


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "not UTF-8 JSON"),
        (b"\xff\xfe garbage", "not UTF-8 JSON"),
        (b"{not json", "not UTF-8 JSON"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b'"hop"', "not a JSON object"),
        (b"null", "not a JSON object"),
        (b"[" * 100_000, "too large"),
        (b"[" * 4000, "not UTF-8 JSON"),
        (b'{"at": NaN}', "not UTF-8 JSON"),
        (b'{"at": Infinity}', "not UTF-8 JSON"),
        (b" " * (MAX_DATAGRAM + 1), "too large"),
    ],
)
def test_from_json_refuses_garbage(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidHop, match=message):
        Hop.from_json(raw)


def test_from_json_refuses_unknown_and_missing_fields() -> None:
    obj = valid_dict()
    obj["text"] = "a chat message"
    with pytest.raises(InvalidHop, match="unknown field 'text'"):
        Hop.from_json(json.dumps(obj).encode())
    obj = valid_dict()
    del obj["kind"]
    with pytest.raises(InvalidHop, match="lacks field 'kind'"):
        Hop.from_json(json.dumps(obj).encode())


def test_make_refuses_values_outside_the_contract() -> None:
    with pytest.raises(InvalidHop, match="unknown kind"):
        sample(kind="magic")
    with pytest.raises(InvalidHop, match="flow_id"):
        sample(flow_id="not-a-flow-id")


def test_invalid_hop_is_a_value_error() -> None:
    assert issubclass(InvalidHop, ValueError)


FRAGMENTS = ["eyJhbGciOiJIUzI1NiJ9", ".eyJzdWIiOiIxIn0.", "sig", "Bearer ", "bearer", "?access_token", "&id", "key "]


@given(st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=10), max_size=20).map("".join))
def test_the_redaction_shortcut_skips_only_text_redaction_cannot_change(text: str) -> None:
    """Labels without ``=``, ``:``, ``eyJ`` or ``bearer`` skip ``redact_text``: it leaves them as they are."""
    if not might_hold_secret(text):
        assert redact_text(text) == text


@pytest.mark.parametrize("secret", ["Bearer abcdefghijkl", "eyJhbGciOiJIUzI1NiJ9", "x?sig=abc", "AccessKey=k"])
def test_the_redaction_shortcut_never_skips_a_secret(secret: str) -> None:
    assert might_hold_secret(f"label {secret} end")
    assert redact_text(f"label {secret} end") != f"label {secret} end"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(st.sampled_from([*valid_dict(), "x"]), JSON_VALUES, max_size=16), st.booleans())
def test_from_json_raises_only_invalid_hop(fields: dict[str, Any], merge: bool) -> None:
    """Any JSON a sender can make is a hop or an InvalidHop: never another exception that would reach the socket."""
    obj = {**valid_dict(), **fields} if merge else fields
    try:
        raw = json.dumps(obj).encode()
    except ValueError:
        return
    try:
        hop = Hop.from_json(raw)
    except InvalidHop:
        return
    assert Hop.from_json(hop.to_json()) == hop


@given(st.binary(max_size=600))
def test_from_json_of_random_bytes(data: bytes) -> None:
    with pytest.raises(InvalidHop):
        Hop.from_json(data)
