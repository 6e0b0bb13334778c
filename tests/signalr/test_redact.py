"""Redaction: secrets never reach logs, traces or screens."""

from __future__ import annotations

import pytest

from signalr.connection_string import parse_connection_string
from signalr.redact import SECRET_HEADERS, redact_headers, redact_text, redact_url
from signalr.tokens import mint_token

KEY = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH"
TOKEN = mint_token(KEY, "http://localhost/client/?hub=chat", now=1_700_000_000)
SUB_KEY = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            f"ws://127.0.0.1:8080/client/?hub=chat&id=abc&access_token={TOKEN}",
            "ws://127.0.0.1:8080/client/?hub=chat&id=~ba7816bf&access_token=***",
        ),
        (f"http://gw/client/?access_token={TOKEN}&hub=chat", "http://gw/client/?access_token=***&hub=chat"),
        (f"http://gw/client/?hub=chat&subscription-key={SUB_KEY}", "http://gw/client/?hub=chat&subscription-key=***"),
        (
            f"http://gw/client/?hub=chat&Subscription-Key={SUB_KEY}#x",
            "http://gw/client/?hub=chat&Subscription-Key=***#x",
        ),
        ("http://fn/runtime/webhooks/signalr?code=SECRETCODE", "http://fn/runtime/webhooks/signalr?code=***"),
        # The connection token becomes a tag (8 hex digits of its SHA-256), the same for the same token.
        ("http://gw/client/?hub=chat&id=abc", "http://gw/client/?hub=chat&id=~ba7816bf"),
        ("http://gw/client/?hub=chat&id=~ba7816bf", "http://gw/client/?hub=chat&id=~ba7816bf"),
        ("http://gw/client/?hub=chat&cid=abc", "http://gw/client/?hub=chat&cid=abc"),
        ("http://gw/client/?my_access_token=x", "http://gw/client/?my_access_token=x"),  # only whole names
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_text_bearer_and_bare_jwt() -> None:
    text = f"Authorization: Bearer {TOKEN}\nnegotiate returned accessToken {TOKEN} ok"
    out = redact_text(text)
    assert TOKEN not in out
    assert "Authorization: Bearer ***" in out
    assert "accessToken *** ok" in out


def test_redact_text_negotiate_json() -> None:
    body = (
        f'{{"negotiateVersion":0,"url":"http://gw/client/?hub=chat","accessToken":"{TOKEN}","availableTransports":[]}}'
    )
    out = redact_text(body)
    assert TOKEN not in out and '"accessToken":"***"' in out


@pytest.mark.parametrize(
    "text",
    [
        f"Endpoint=http://localhost;Port=8888;AccessKey={KEY};Version=1.0;",
        f"endpoint=http://x;accesskey={KEY}",
        f"Endpoint=http://x; AccessKey = {KEY} ;Version=1.0",  # valid: keys and values are trimmed (§1)
        f'settings: {{"conn": "Endpoint=http://x;AccessKey={KEY}"}}',
        f"export Azure__SignalR__ConnectionString='Endpoint=http://x;AccessKey={KEY};'",
    ],
)
def test_redact_text_access_key_in_connection_string(text: str) -> None:
    out = redact_text(text)
    assert KEY not in out
    assert "***" in out
    assert "ndpoint=http://x" in out or "ndpoint=http://localhost" in out  # the rest stays readable


def test_redacted_connection_string_still_parses_as_the_same_endpoint() -> None:
    text = f"Endpoint=http://localhost;Port=8888;AccessKey={KEY};Version=1.0;"
    assert parse_connection_string(redact_text(text)).endpoint == "http://localhost:8888"


@pytest.mark.parametrize(
    "text",
    [
        f"Ocp-Apim-Subscription-Key: {SUB_KEY}",
        f"ocp-apim-subscription-key={SUB_KEY}",
        f"{{'Ocp-Apim-Subscription-Key': '{SUB_KEY}', 'Accept': '*/*'}}",
        f'{{"Ocp-Apim-Subscription-Key":"{SUB_KEY}"}}',
        f"GET /client/?hub=chat&subscription-key={SUB_KEY} 200",
    ],
)
def test_redact_text_subscription_keys(text: str) -> None:
    out = redact_text(text)
    assert SUB_KEY not in out
    assert "***" in out


def test_redact_text_leaves_ordinary_text_alone() -> None:
    text = "Chat server listening on http://127.0.0.1:5000/ (hub chat); alice: hi (echo from server)"
    assert redact_text(text) == text


def test_redact_headers_mapping_and_pairs() -> None:
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Ocp-Apim-Subscription-Key": SUB_KEY,
        "X-ASRS-Signature": "sha256=ABC",
        "Cookie": "a=b",
        "Content-Type": "application/json",
    }
    assert redact_headers(headers) == [
        ("Authorization", "***"),
        ("Ocp-Apim-Subscription-Key", "***"),
        ("X-ASRS-Signature", "***"),
        ("Cookie", "***"),
        ("Content-Type", "application/json"),
    ]
    assert redact_headers([("authorization", "x"), ("AUTHORIZATION", "y"), ("Accept", "*/*")]) == [
        ("authorization", "***"),
        ("AUTHORIZATION", "***"),
        ("Accept", "*/*"),
    ]


def test_secret_header_names_cover_the_protocol() -> None:
    assert {"authorization", "ocp-apim-subscription-key", "x-asrs-signature", "authentication"} <= SECRET_HEADERS


def test_redacted_marker_is_public() -> None:
    import signalr.redact

    assert "REDACTED" in signalr.redact.__all__
    assert signalr.redact.REDACTED == "***"
    assert redact_url("http://h/?access_token=t") == f"http://h/?access_token={signalr.redact.REDACTED}"


def test_connection_tokens_and_jwt_prefixes_never_show_in_text() -> None:
    line = f"401 GET /client/?hub=chat&id=SeCrEtToKeN123 token {TOKEN[:20]}… and {TOKEN[:12]}"
    out = redact_text(line)
    assert "SeCrEtToKeN123" not in out and "id=~" in out
    assert TOKEN[:12] not in out
