"""Raw query strings split without re-encoding (signalr.query): what the gateway forwards byte for byte
(docs/apim.md §4) and what the emulator copies into X-ASRS-Client-Query (docs/protocol.md §6.3)."""

from __future__ import annotations

from urllib.parse import unquote_plus

from hypothesis import given
from hypothesis import strategies as st

from signalr.query import QueryParameter, split_query


def test_parts_keep_the_raw_bytes_and_decode_name_and_value() -> None:
    assert split_query("hub=chat&asrs.op=%2Fchat&sp=a+b&flag&acc%65ss_token=x=y") == [
        QueryParameter(raw="hub=chat", raw_name="hub", name="hub", value="chat"),
        QueryParameter(raw="asrs.op=%2Fchat", raw_name="asrs.op", name="asrs.op", value="/chat"),
        QueryParameter(raw="sp=a+b", raw_name="sp", name="sp", value="a b"),
        QueryParameter(raw="flag", raw_name="flag", name="flag", value=None),
        QueryParameter(raw="acc%65ss_token=x=y", raw_name="acc%65ss_token", name="access_token", value="x=y"),
    ]


def test_empty_query_has_no_parts_and_empty_parts_are_kept() -> None:
    assert split_query("") == []
    assert split_query("&") == [QueryParameter("", "", "", None), QueryParameter("", "", "", None)]
    assert [p.raw for p in split_query("a&&b")] == ["a", "", "b"]
    assert split_query("=v") == [QueryParameter("=v", "", "", "v")]
    assert split_query("k=") == [QueryParameter("k=", "k", "k", "")]


def test_bad_percent_escapes_and_non_utf8_never_raise() -> None:
    assert split_query("k=%ZZ&%E2%82=x") == [
        QueryParameter("k=%ZZ", "k", "k", "%ZZ"),
        QueryParameter("%E2%82=x", "%E2%82", "\ufffd", "x"),
    ]


def test_a_huge_query_is_split_in_linear_time() -> None:
    raw = "&".join(f"k{i}=v%20{i}" for i in range(100_000))
    parts = split_query(raw)
    assert len(parts) == 100_000 and parts[-1].value == "v 99999"


@given(st.text(alphabet=st.sampled_from("ab=&%2F+ éx\x00"), max_size=60))
def test_joining_the_raw_parts_gives_back_the_query(raw: str) -> None:
    parts = split_query(raw)
    assert "&".join(p.raw for p in parts) == raw
    for part in parts:
        assert part.name == unquote_plus(part.raw_name)
        assert part.raw.startswith(part.raw_name)
        assert (part.value is None) == ("=" not in part.raw)
