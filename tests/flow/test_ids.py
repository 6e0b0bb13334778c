"""flow.ids: the flow id every role computes from what it sees, and its two carriers (header, tracing id)."""

from __future__ import annotations

import hashlib

import pytest

from flow.ids import flow_id, flow_id_from_tracing_id, is_flow_id, parse_flow_id, tracing_id


def test_flow_id_is_the_first_16_hex_digits_of_sha256() -> None:
    expected = hashlib.sha256(b"conn-1:7").hexdigest()[:16]
    assert flow_id("conn-1", "7") == expected
    assert flow_id("conn-1", 7) == expected
    assert is_flow_id(expected)


def test_flow_id_differs_per_connection_and_invocation() -> None:
    ids = {flow_id(c, i) for c in ("a", "b") for i in ("1", "2")}
    assert len(ids) == 4


def test_tracing_id_round_trip_covers_uint64() -> None:
    for value in ("0000000000000000", "ffffffffffffffff", flow_id("x", "y")):
        assert 0 <= tracing_id(value) < 1 << 64
        assert flow_id_from_tracing_id(tracing_id(value)) == value


@pytest.mark.parametrize("value", [None, -1, 1 << 64, True])
def test_tracing_id_outside_uint64_carries_no_flow_id(value: int | None) -> None:
    assert flow_id_from_tracing_id(value) is None


@pytest.mark.parametrize("bad", ["", "abc", "0123456789abcdeg", "0123456789abcdef0", "0123456789ABCDEF\n"])
def test_tracing_id_refuses_what_is_not_a_flow_id(bad: str) -> None:
    with pytest.raises(ValueError, match="not a flow id"):
        tracing_id(bad)


def test_parse_flow_id_header() -> None:
    assert parse_flow_id("0123456789ABCDEF") == "0123456789abcdef"
    for bad in (None, "", "0123456789abcde", "0123456789abcdefa", "xyz3456789abcdef", "0123456789abcde\n"):
        assert parse_flow_id(bad) is None
