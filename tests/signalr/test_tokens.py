"""Access tokens: HS256 with the AccessKey's UTF-8 bytes, lifetime and audience checks, hostile tokens (§2, §6.1)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest

from signalr.tokens import (
    DEFAULT_LIFETIME,
    MAX_TOKEN_LENGTH,
    TokenError,
    mint_token,
    rest_audience_matches,
    verify_token,
)

KEY = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH"  # also valid base64: the key must NOT be base64-decoded
OTHER_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvuts"
AUD = "http://localhost/client/?hub=chat"
NOW = 1_700_000_000


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hand_made(
    header: dict[str, Any], payload: dict[str, Any], key: bytes | None = KEY.encode(), digest: Any = hashlib.sha256
) -> str:
    """A compact JWT built without PyJWT, signed with HMAC(``digest``) or unsigned when ``key`` is None."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


def claims(**extra: Any) -> dict[str, Any]:
    return {"nbf": NOW, "iat": NOW, "exp": NOW + 3600, "aud": AUD, **extra}


def reason(token: str, keys: str | list[str] = KEY, audience: Any = AUD, now: float = NOW + 10, leeway: int = 0) -> str:
    with pytest.raises(TokenError) as caught:
        verify_token(token, keys, audience, now=now, leeway=leeway)
    return str(caught.value)


def test_round_trip_claims_and_header() -> None:
    token = mint_token(KEY, AUD, now=NOW)
    header = json.loads(b64url_decode(token.split(".")[0]))
    assert header == {"alg": "HS256", "typ": "JWT"}
    got = verify_token(token, KEY, AUD, now=NOW + 1)
    assert got == {"nbf": NOW, "iat": NOW, "exp": NOW + DEFAULT_LIFETIME, "aud": AUD}
    assert DEFAULT_LIFETIME == 3600


def test_signature_is_hmac_sha256_over_utf8_key_bytes() -> None:
    token = mint_token(KEY, AUD, now=NOW)
    header, payload, signature = token.split(".")
    expected = hmac.new(KEY.encode("utf-8"), f"{header}.{payload}".encode("ascii"), hashlib.sha256).digest()
    assert b64url_decode(signature) == expected
    assert "=" not in signature  # unpadded base64url
    # Trap 3: the key is not base64-decoded even when it is valid base64.
    decoded_key = base64.b64decode(KEY)
    assert b64url_decode(signature) != hmac.new(decoded_key, f"{header}.{payload}".encode(), hashlib.sha256).digest()


def test_non_ascii_key_is_utf8_encoded() -> None:
    key = "clé-ключ-鍵-" + "x" * 32
    token = mint_token(key, AUD, now=NOW)
    header, payload, signature = token.split(".")
    assert (
        b64url_decode(signature)
        == hmac.new(key.encode("utf-8"), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    )
    assert verify_token(token, key, AUD, now=NOW)["aud"] == AUD


def test_hand_made_token_verifies() -> None:
    assert verify_token(hand_made({"alg": "HS256", "typ": "JWT"}, claims()), KEY, AUD, now=NOW)["aud"] == AUD


def test_kid_is_ignored() -> None:
    # The SDK's kid is a per-process string hash: meaningless to anyone else (trap 3).
    token = hand_made({"alg": "HS256", "typ": "JWT", "kid": "-1234567890"}, claims())
    assert verify_token(token, KEY, AUD, now=NOW)["exp"] == NOW + 3600


def test_hs512_is_accepted() -> None:
    key = KEY + OTHER_KEY  # 88 bytes: PyJWT warns about HS512 keys under 64 bytes
    token = hand_made({"alg": "HS512", "typ": "JWT"}, claims(), key=key.encode(), digest=hashlib.sha512)
    assert verify_token(token, key, AUD, now=NOW)["aud"] == AUD


def test_extra_claims_pass_through_but_cannot_override_time_or_audience() -> None:
    token = mint_token(KEY, AUD, claims={"asrs.s.uid": "alice", "aud": "evil", "exp": 1}, now=NOW, lifetime=60)
    got = verify_token(token, KEY, AUD, now=NOW)
    assert got["asrs.s.uid"] == "alice"
    assert got["aud"] == AUD
    assert got["exp"] == NOW + 60


def test_wrong_key_is_invalid_signature() -> None:
    assert reason(mint_token(OTHER_KEY, AUD, now=NOW)) == "invalid signature"


def test_multiple_keys_any_may_sign() -> None:
    token = mint_token(OTHER_KEY, AUD, now=NOW)
    assert verify_token(token, [KEY, OTHER_KEY], AUD, now=NOW)["aud"] == AUD
    assert reason(token, keys=[KEY, "a-third-key-that-is-long-enough-0000"]) == "invalid signature"
    assert reason(token, keys=[]) == "invalid signature"


def test_tampered_payload_is_invalid_signature() -> None:
    header, _, signature = mint_token(KEY, AUD, now=NOW).split(".")
    forged = b64url(json.dumps(claims(**{"asrs.s.uid": "admin"})).encode())
    assert reason(f"{header}.{forged}.{signature}") == "invalid signature"


# The usual token is verified without PyJWT; every token must still be answered exactly as PyJWT answers it.


def signed(header: str, payload: str, key: str = KEY) -> str:
    """``header.payload.signature`` over the segments as given (any spelling), signed with HMAC-SHA256."""
    signature = hmac.new(key.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(signature)}"


PLAIN_HEADER = b64url(b'{"alg":"HS256","typ":"JWT"}')


def test_padded_segments_verify_as_pyjwt_takes_them() -> None:
    payload = b64url(json.dumps(claims(x="ab")).encode())
    padded = payload + "=" * (-len(payload) % 4)
    assert padded != payload
    token = signed(PLAIN_HEADER, padded)
    assert verify_token(token, KEY, AUD, now=NOW)["x"] == "ab"
    header, body, signature = signed(PLAIN_HEADER, payload).split(".")
    assert verify_token(f"{header}.{body}.{signature}=", KEY, AUD, now=NOW)["x"] == "ab"


def test_a_segment_with_unused_bits_set_is_malformed() -> None:
    payload = b64url(json.dumps(claims(x="ab")).encode())
    assert len(payload) % 4 in (2, 3)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(payload[-1])
    assert verify_token(signed(PLAIN_HEADER, payload), KEY, AUD, now=NOW)["x"] == "ab"
    assert reason(signed(PLAIN_HEADER, payload[:-1] + alphabet[last + 1])) == "malformed token"


@pytest.mark.parametrize("claim", ["sub", "jti"])
def test_a_non_string_sub_or_jti_is_malformed(claim: str) -> None:
    assert reason(hand_made({"alg": "HS256", "typ": "JWT"}, claims(**{claim: 7}))) == "malformed token"
    token = hand_made({"alg": "HS256", "typ": "JWT"}, claims(**{claim: "s"}))
    assert verify_token(token, KEY, AUD, now=NOW)[claim] == "s"


def test_header_parameters_as_pyjwt_judges_them() -> None:
    assert reason(hand_made({"alg": "HS256", "kid": 5}, claims())) == "malformed token"
    assert reason(hand_made({"alg": "HS256", "crit": ["exp"]}, claims())) == "malformed token"
    assert verify_token(hand_made({"alg": "HS256", "x5t": "abc"}, claims()), KEY, AUD, now=NOW)["aud"] == AUD


@pytest.mark.parametrize("bad_key", ["", "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----"])
def test_a_key_pyjwt_refuses_as_an_hmac_secret_refuses_the_token(bad_key: str) -> None:
    token = hand_made({"alg": "HS256", "typ": "JWT"}, claims(), key=bad_key.encode())
    assert reason(token, keys=bad_key) == "malformed token"
    assert reason(token, keys=[bad_key, KEY]) == "malformed token"


def test_the_same_token_twice_gives_claims_of_its_own_each_time() -> None:
    token = mint_token(KEY, AUD, claims={"asrs.s.uid": "alice"}, now=NOW)
    first = verify_token(token, KEY, AUD, now=NOW)
    first["asrs.s.uid"] = "mallory"
    assert verify_token(token, KEY, AUD, now=NOW)["asrs.s.uid"] == "alice"


def test_alg_none_is_refused() -> None:
    token = hand_made({"alg": "none", "typ": "JWT"}, claims(), key=None)
    assert reason(token) == "unsupported algorithm 'none'"


def test_hs384_is_refused() -> None:
    token = hand_made({"alg": "HS384", "typ": "JWT"}, claims(), digest=hashlib.sha384)
    assert reason(token) == "unsupported algorithm 'HS384'"


def test_rs256_is_refused_without_touching_the_key() -> None:
    # The classic confusion attack: an RS256 header "verified" with the HMAC secret as a public key.
    token = hand_made({"alg": "RS256", "typ": "JWT"}, claims())
    assert reason(token) == "unsupported algorithm 'RS256'"


def test_hostile_alg_value_is_truncated_in_the_reason() -> None:
    token = hand_made({"alg": "A" * 5000, "typ": "JWT"}, claims())
    text = reason(token)
    assert text.startswith("unsupported algorithm") and len(text) < 60


def test_expired() -> None:
    token = mint_token(KEY, AUD, now=NOW, lifetime=60)
    assert verify_token(token, KEY, AUD, now=NOW + 60)["exp"] == NOW + 60  # the last valid second
    assert reason(token, now=NOW + 61) == "token expired"
    assert verify_token(token, KEY, AUD, now=NOW + 65, leeway=5)["exp"] == NOW + 60


def test_not_yet_valid() -> None:
    token = mint_token(KEY, AUD, now=NOW)
    assert reason(token, now=NOW - 1) == "token not yet valid"
    assert verify_token(token, KEY, AUD, now=NOW - 3, leeway=5)["nbf"] == NOW


@pytest.mark.parametrize("exp", [float("nan"), 1e400, "2099-01-01", None])
def test_unusable_exp(exp: Any) -> None:
    payload = claims()
    if exp is None:
        del payload["exp"]
        expected = "missing exp claim"
    elif isinstance(exp, str):
        expected = "missing exp claim"
    else:
        expected = "invalid exp claim"
    token = hand_made({"alg": "HS256"}, payload | ({} if exp is None else {"exp": exp}))
    assert reason(token) == expected


def test_nan_nbf_is_not_yet_valid() -> None:
    assert reason(hand_made({"alg": "HS256"}, claims(nbf=float("nan")))) == "token not yet valid"


def test_audience_exact_including_query() -> None:
    token = mint_token(KEY, AUD, now=NOW)
    assert reason(token, audience="http://localhost/client/?hub=other") == "audience mismatch"
    assert reason(token, audience="http://localhost/client/") == "audience mismatch"
    assert reason(token, audience="http://localhost:8888/client/?hub=chat") == "audience mismatch"
    assert verify_token(token, KEY, None, now=NOW)["aud"] == AUD  # None skips the check


def test_audience_predicate() -> None:
    token = mint_token(KEY, AUD, now=NOW)
    assert verify_token(token, KEY, lambda aud: aud.startswith("http://localhost/"), now=NOW)["aud"] == AUD
    assert reason(token, audience=lambda aud: False) == "audience mismatch"


@pytest.mark.parametrize("aud", [None, ["http://localhost/client/?hub=chat"], 42])
def test_missing_or_non_string_aud(aud: Any) -> None:
    payload = claims()
    del payload["aud"]
    if aud is not None:
        payload["aud"] = aud
    token = hand_made({"alg": "HS256"}, payload)
    assert reason(token) == "missing aud claim"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c",
        "eyJ.eyJ.",
        "...",
        "é.é.é",
        "x" * 20000,
        b64url(b"[]") + "." + b64url(b"{}") + ".sig",  # header not an object
        b64url(b'{"alg":"HS256"}') + ".not-base64!.sig",
        b64url(b"[" * 50000) + "." + b64url(b"{}") + ".sig",  # hostile nesting
    ],
)
def test_malformed_tokens(token: str) -> None:
    assert reason(token) == "malformed token"


def test_header_without_alg_is_refused() -> None:
    assert reason(b64url(b"{}") + "." + b64url(b"{}") + ".AAAA") == "unsupported algorithm 'None'"


def test_payload_that_is_not_an_object_is_malformed() -> None:
    header = b64url(b'{"alg":"HS256","typ":"JWT"}')
    payload = b64url(b"[1,2,3]")
    signature = b64url(hmac.new(KEY.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest())
    assert reason(f"{header}.{payload}.{signature}") == "malformed token"


def test_payload_with_huge_number_is_malformed() -> None:
    header = b64url(b'{"alg":"HS256","typ":"JWT"}')
    payload = b64url(b'{"exp":1' + b"0" * 5000 + b"}")
    signature = b64url(hmac.new(KEY.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest())
    assert reason(f"{header}.{payload}.{signature}") == "malformed token"


def test_reason_never_contains_the_token() -> None:
    good = mint_token(KEY, AUD, now=NOW)
    for token, keys, now in ((good, OTHER_KEY, NOW), (good, KEY, NOW + 99999), (good + "x", KEY, NOW)):
        text = reason(token, keys=keys, now=now)
        assert good.split(".")[2] not in text and good.split(".")[1] not in text


def test_default_token_fits_the_length_limit() -> None:
    token = mint_token(KEY, "https://res1.service.signalr.net/client/?hub=chat", claims={"asrs.s.uid": "u" * 64})
    assert MAX_TOKEN_LENGTH == 4096
    assert len(token) < MAX_TOKEN_LENGTH


@pytest.mark.parametrize(
    ("request_url", "aud", "match"),
    [
        # Management SDK form: query included, no port (§6.1); compared ignoring query, port and trailing "/".
        (
            "http://127.0.0.1:8888/api/hubs/chat/:send?api-version=2022-06-01",
            "http://127.0.0.1/api/hubs/chat/:send?api-version=2022-06-01",
            True,
        ),
        (
            "https://example.service.signalr.net/api/v1/hubs/myhub",
            "https://example.service.signalr.net/api/v1/hubs/myhub/",
            True,
        ),
        (
            "https://EXAMPLE.service.signalr.net/api/v1/hubs/myhub",
            "HTTPS://example.service.signalr.net/api/v1/hubs/myhub",
            True,
        ),
        (
            "https://example.service.signalr.net/api/v1/hubs/myhub",
            "https://example.service.signalr.net/api/v1/hubs/other",
            False,
        ),
        ("https://example.service.signalr.net/api/v1/hubs/myhub", "https://evil.example/api/v1/hubs/myhub", False),
        (
            "https://example.service.signalr.net/api/v1/hubs/myhub",
            "http://example.service.signalr.net/api/v1/hubs/myhub",
            False,
        ),
        ("https://example.service.signalr.net/api/v1/hubs/myhub", "http://[not-an-ip/api", False),
        ("https://example.service.signalr.net/api/v1/hubs/myhub", "", False),
    ],
)
def test_rest_audience_matches(request_url: str, aud: str, match: bool) -> None:
    assert rest_audience_matches(request_url, aud) is match
