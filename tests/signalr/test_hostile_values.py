"""Values no honest peer sends, which once crashed a parser instead of being refused (each answered 500 before):
undecodable header bytes, integers too large for a float, control characters in a number."""

from __future__ import annotations

import jwt
import pytest

from signalr.negotiate import NegotiateError, requested_version
from signalr.tokens import TokenError, mint_token, verify_token
from signalr.upstream import sign_connection_id, verify_signature

KEY = "HostileValuesKey0123456789abcdefghijklmnopqrstuv"
AUD = "http://localhost/client/?hub=chat"


def _token(**claims: object) -> str:
    return jwt.encode({"aud": AUD, **claims}, KEY.encode(), algorithm="HS256")


@pytest.mark.parametrize(
    "token",
    [
        "eyJ\udcff.e30.sig",  # aiohttp hands undecodable header bytes over as lone surrogates
        mint_token(KEY, AUD) + "\udc80",
        "ey\u00e9.x.y",
    ],
    ids=["surrogate-header", "surrogate-tail", "non-ascii"],
)
def test_undecodable_tokens_are_malformed(token: str) -> None:
    with pytest.raises(TokenError, match="malformed token"):
        verify_token(token, KEY, AUD)


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": 10**400}, "invalid exp claim"),
        ({"exp": -(10**400)}, "invalid exp claim"),
        ({"exp": 2**60}, "invalid exp claim"),
        ({"exp": True}, "missing exp claim"),
        ({"exp": 4_000_000_000, "nbf": 10**400}, "token not yet valid"),
        ({"exp": 4_000_000_000, "nbf": -(10**400)}, "token not yet valid"),
    ],
)
def test_times_no_float_can_hold_are_refused(claims: dict[str, object], reason: str) -> None:
    with pytest.raises(TokenError, match=reason):
        verify_token(_token(**claims), KEY, AUD)


def test_a_sane_token_still_verifies() -> None:
    assert verify_token(_token(exp=4_000_000_000, nbf=0), KEY, AUD)["aud"] == AUD


@pytest.mark.parametrize(
    ("header", "connection_id"),
    [("sha256=\udcff", "conn"), ("sha256=ÄÖ", "conn"), (None, "conn"), ("", "conn"), ("sha256=AB", "conn\udcff")],
)
def test_undecodable_signatures_never_match(header: str | None, connection_id: str) -> None:
    assert verify_signature(header, [KEY], connection_id) is False


def test_a_good_signature_still_matches() -> None:
    assert verify_signature(sign_connection_id(KEY, "conn"), [KEY], "conn")


@pytest.mark.parametrize("value", ["1\x1f", "\x1c1", "1\u00a0", "1\u2003", "١"])
def test_negotiate_version_with_odd_characters_is_a_non_integer(value: str) -> None:
    with pytest.raises(NegotiateError, match="non-integer"):
        requested_version(f"negotiateVersion={value}")


@pytest.mark.parametrize(("value", "version"), [(" 1\t", 1), ("\r\n0 ", 0), ("+1", 1), ("7", 1)])
def test_negotiate_version_takes_dotnet_white_space(value: str, version: int) -> None:
    assert requested_version(f"negotiateVersion={value}") == version
