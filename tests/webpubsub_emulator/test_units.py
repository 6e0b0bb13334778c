"""The sans-I/O pieces: connection strings, tokens, the OData filter and event-handler templates."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import jwt
import pytest
from azure.messaging.webpubsubservice import WebPubSubServiceClient

from emulator.webpubsub.odata_filter import FilterError, compile_filter
from emulator.webpubsub.settings import EventHandlerTemplate, SettingsError
from webpubsub.connection_string import ConnectionStringError, parse_connection_string
from webpubsub.tokens import (
    TokenError,
    client_audience_matches,
    mint_client_token,
    mint_rest_token,
    verify_client_token,
    verify_rest_token,
)

KEY = "k" * 43


def test_connection_string_as_the_sdk_reads_it() -> None:
    parsed = parse_connection_string(f" Endpoint=http://127.0.0.1;Port=8889;AccessKey={KEY};Version=1.0; ")
    assert parsed.endpoint == "http://127.0.0.1:8889"
    assert parsed.client_endpoint == parsed.endpoint
    assert parsed.client_base_url("chat") == "ws://127.0.0.1:8889/client/hubs/chat"
    assert parsed.origin == "127.0.0.1:8889"
    assert KEY not in repr(parsed) and KEY not in parsed.redacted()
    sdk = WebPubSubServiceClient.from_connection_string(
        f"Endpoint=http://127.0.0.1;Port=8889;AccessKey={KEY};Version=1.0;", hub="chat"
    )
    token = sdk.get_client_access_token()["token"]
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == parsed.client_audience("chat")
    gateway = parse_connection_string(f"Endpoint=https://svc.example;AccessKey={KEY};ClientEndpoint=https://gw:8443")
    assert gateway.client_base_url("chat") == "wss://gw:8443/client/hubs/chat"
    assert gateway.origin == "svc.example"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (f"AccessKey={KEY}", "Endpoint"),
        ("Endpoint=http://h", "AccessKey"),
        (f"Endpoint=ftp://h;AccessKey={KEY}", "Endpoint"),
        (f"Endpoint=http://h;AccessKey={KEY};Port=0", "Port"),
        (f"Endpoint=http://h;AccessKey={KEY};Port=x", "Port"),
        (f"Endpoint=http://h:1;AccessKey={KEY};Port=2", "Endpoint"),
        (f"Endpoint=http://h;AccessKey={KEY};endpoint=http://g", "Duplicate"),
        (f"Endpoint=http://h;AccessKey={KEY};junk", "key=value"),
        (f"Endpoint=http://h;AccessKey={KEY};ClientEndpoint=gw", "ClientEndpoint"),
    ],
)
def test_bad_connection_strings_name_the_key_never_the_secret(text: str, needle: str) -> None:
    with pytest.raises(ConnectionStringError) as error:
        parse_connection_string(text)
    assert needle in str(error.value) and KEY not in str(error.value)


def test_client_tokens() -> None:
    aud = "http://127.0.0.1:8889/client/hubs/chat"
    token = mint_client_token(KEY, aud, user_id="u", roles=["webpubsub.joinLeaveGroup"], groups=["g"])
    claims = verify_client_token(token, KEY, "Chat")
    assert (claims.user_id, claims.roles, claims.groups) == ("u", ("webpubsub.joinLeaveGroup",), ("g",))
    anonymous = verify_client_token(mint_client_token(KEY, aud), KEY, "chat")
    assert (anonymous.user_id, anonymous.roles, anonymous.groups) == (None, (), ())
    single = jwt.encode({"aud": aud, "exp": time.time() + 60, "role": "r", "webpubsub.group": "g"}, KEY)
    assert verify_client_token(single, KEY, "chat").roles == ("r",)
    for bad, reason in [
        (mint_client_token(KEY, aud, lifetime=-5), "expired"),
        (mint_client_token("x" * 43, aud), "signature"),
        (mint_client_token(KEY, aud.replace("chat", "other")), "audience"),
        (jwt.encode({"aud": aud, "exp": time.time() + 60, "role": [1]}, KEY), "role"),
        (jwt.encode({"aud": aud, "exp": time.time() + 60, "sub": {"x": 1}}, KEY), "malformed"),
        (jwt.encode({"aud": aud}, KEY), "exp"),
        ("a" * 5000, "too long"),
    ]:
        with pytest.raises(TokenError) as error:
            verify_client_token(bad, KEY, "chat")
        assert reason in str(error.value)
    assert client_audience_matches("https://x/client/?hub=CHAT", "chat")
    assert not client_audience_matches("https://x/client/?hub=chat&hub=other", "chat")
    assert not client_audience_matches("https://x/server/?hub=chat", "chat")


def test_rest_tokens() -> None:
    url = "http://127.0.0.1:8889/api/hubs/chat/:send?api-version=2024-12-01"
    assert verify_rest_token(mint_rest_token(KEY, url), KEY, url)["aud"] == url
    with pytest.raises(TokenError):
        verify_rest_token(mint_rest_token(KEY, url.replace("chat", "other")), KEY, url)
    with pytest.raises(TokenError):
        verify_rest_token(mint_rest_token(KEY, url, lifetime=-1), KEY, url)


@dataclass
class Conn:
    connection_id: str
    user_id: str | None
    groups: set[str] = field(default_factory=set)


PEOPLE = [
    Conn("c1", "user1", {"group1"}),
    Conn("c2", "USER1", {"group2"}),
    Conn("c3", "user-ab-de", {"group1", "group2"}),
    Conn("c4", None),
    Conn("c5", "o'brien"),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("userId eq 'user1'", ["c1"]),
        ("tolower(userId) eq 'user1'", ["c1", "c2"]),
        ("userId eq null", ["c4"]),
        ("userId ne 'user1'", ["c2", "c3", "c4", "c5"]),
        ("'group1' in groups", ["c1", "c3"]),
        ("'group1' in groups and not ('group2' in groups)", ["c1"]),
        ("userId in ('user1', 'USER1')", ["c1", "c2"]),
        ("length(groups) gt 1", ["c3"]),
        ("length(userId) le 5 and length(userId) gt 3", ["c1", "c2"]),
        ("substring(userId,5,2) eq 'ab'", ["c3"]),
        ("endswith(userId,'de') or startswith(userId, 'o')", ["c3", "c5"]),
        ("indexof(userId,'-ab-') ge 0", ["c3"]),
        ("contains(userId, 'SER')", ["c2"]),
        ("userId eq 'o''brien'", ["c5"]),
        ("connectionId ne 'c1' and userId eq 'user1' or connectionId eq 'c2'", ["c2"]),
        ("true", ["c1", "c2", "c3", "c4", "c5"]),
        ("not (length(userId) gt 5)", ["c1", "c2", "c4"]),
        ("concat(userId, '!') eq 'user1!'", ["c1"]),
        ("trim(toupper(userId)) eq 'USER1'", ["c1", "c2"]),
    ],
)
def test_filter_selects(text: str, expected: list[str]) -> None:
    predicate = compile_filter(text)
    assert [c.connection_id for c in PEOPLE if predicate(c)] == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "userId eq",
        "userId eq 'a' and",
        "nobody eq 'x'",
        "userId eq 1",
        "not length(userId) gt 5",
        "'a' in userId",
        "groups eq 'a'",
        "unknown(userId)",
        "userId eq 'unterminated",
        "(" * 100 + "true" + ")" * 100,
        " or ".join(["true"] * 500),
        "userId $ 'x'",
        "length(userId, userId) eq 1",
    ],
)
def test_bad_filters_are_refused(text: str) -> None:
    with pytest.raises(FilterError):
        compile_filter(text)


def test_event_handler_templates() -> None:
    plain = EventHandlerTemplate.parse("http://127.0.0.1:5000/eventhandler/{event}")
    assert plain.hub is None and plain.url("chat", "connect") == "http://127.0.0.1:5000/eventhandler/connect"
    scoped = EventHandlerTemplate.parse("Chat=http://h/api/{hub}/{event}?code=x=y")
    assert scoped.hub == "chat" and scoped.url("chat", "validate") == "http://h/api/chat/validate?code=x=y"
    for bad in ["ftp://h/{event}", "http://h/{category}", "http://{event}.h/", "1hub=http://h", "http://h/{event"]:
        with pytest.raises(SettingsError):
            EventHandlerTemplate.parse(bad)


def test_each_hub_gets_its_own_event_handler_else_the_shared_one() -> None:
    from emulator.webpubsub.settings import WebPubSubSettings

    shared = EventHandlerTemplate.parse("http://h/shared/{hub}/{event}")
    chat = EventHandlerTemplate.parse("chat=http://h/chat/{event}")
    settings = WebPubSubSettings(event_handlers=(shared, chat))
    assert settings.handler_for("chat") is chat
    assert settings.handler_for("other") is shared
    assert WebPubSubSettings(event_handlers=(chat,)).handler_for("other") is None
