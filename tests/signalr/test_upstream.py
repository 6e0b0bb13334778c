"""Upstream webhooks: X-ASRS-Signature and URL templates (docs/protocol.md §6.2, §6.3, trap 14)."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest

from signalr.protocols import PROTOCOLS
from signalr.upstream import (
    MEDIA_TYPES,
    UpstreamTemplate,
    UpstreamTemplateError,
    protocol_for_media_type,
    sign_connection_id,
    signature_header,
    verify_signature,
)

KEY = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH"
SECONDARY = "secondary-key-0123456789-abcdefghijklmnopq"
CONNECTION = "807809a5-31bf-470d-9e23-afaee35d8a0d"


def independent(key: str, connection_id: str) -> str:
    return "sha256=" + hmac.new(key.encode("utf-8"), connection_id.encode("utf-8"), hashlib.sha256).hexdigest().upper()


def test_signature_vector() -> None:
    assert sign_connection_id(KEY, CONNECTION) == independent(KEY, CONNECTION)
    assert re.fullmatch(r"sha256=[0-9A-F]{64}", sign_connection_id(KEY, CONNECTION))


def test_signature_uses_utf8_of_key_and_id() -> None:
    assert sign_connection_id("clé", "ид") == independent("clé", "ид")


def test_header_one_signature_per_key_comma_joined() -> None:
    header = signature_header([KEY, SECONDARY], CONNECTION)
    assert header == f"{independent(KEY, CONNECTION)},{independent(SECONDARY, CONNECTION)}"


def test_verify_accepts_any_matching_key_and_case() -> None:
    header = signature_header([KEY, SECONDARY], CONNECTION)
    assert verify_signature(header, [KEY], CONNECTION)
    assert verify_signature(header, [SECONDARY], CONNECTION)
    assert verify_signature(header.lower(), [KEY], CONNECTION)
    assert verify_signature(header.replace("sha256=", "SHA256="), [KEY], CONNECTION)
    assert verify_signature(f"sha256=00, {independent(KEY, CONNECTION)} ", [KEY], CONNECTION)
    assert verify_signature(independent(SECONDARY, CONNECTION), [KEY, SECONDARY], CONNECTION)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        ",",
        "sha256=",
        "sha256",
        independent(KEY, CONNECTION).removeprefix("sha256="),  # hex without the prefix
        independent(KEY, CONNECTION)[:-1],
        independent(KEY, CONNECTION) + "0",
        "sha1=" + independent(KEY, CONNECTION).removeprefix("sha256="),
        independent("wrong-key", CONNECTION),
        independent(KEY, "other-connection"),
        "sha256=" + "é" * 64,
        "x" * 10000,
    ],
)
def test_verify_rejects_bad_header_forms(header: str | None) -> None:
    assert not verify_signature(header, [KEY, SECONDARY], CONNECTION)


def test_verify_with_no_keys_rejects() -> None:
    assert not verify_signature(independent(KEY, CONNECTION), [], CONNECTION)


def test_default_template_matches_everything() -> None:
    template = UpstreamTemplate("http://127.0.0.1:5000/upstream/{hub}/{category}/{event}")
    assert template.matches("chat", "messages", "broadcastMessage")
    assert template.matches("x", "connections", "connected")
    assert (
        template.url("chat", "messages", "broadcastMessage")
        == "http://127.0.0.1:5000/upstream/chat/messages/broadcastMessage"
    )


def test_doc_vector() -> None:
    template = UpstreamTemplate("http://host.com/{hub}/api/{category}/{event}")
    assert template.url("chat", "messages", "broadcastMessage") == "http://host.com/chat/api/messages/broadcastMessage"


@pytest.mark.parametrize(
    ("pattern", "value", "match"),
    [
        ("*", "anything", True),
        ("chat", "chat", True),
        ("chat", "Chat", False),  # exact and case-sensitive in the emulator
        ("chat, other", "other", True),  # comma list, trimmed
        ("chat,other", "chatother", False),
        (" chat ", "chat", True),
        ("a,*", "zzz", True),
        ("", "chat", False),
    ],
)
def test_patterns(pattern: str, value: str, match: bool) -> None:
    assert UpstreamTemplate("http://h/", hub_pattern=pattern).matches(value, "messages", "e") is match
    assert UpstreamTemplate("http://h/", category_pattern=pattern).matches("chat", value, "e") is match
    assert UpstreamTemplate("http://h/", event_pattern=pattern).matches("chat", "messages", value) is match


def test_all_three_patterns_must_match() -> None:
    template = UpstreamTemplate("http://h/", hub_pattern="chat", category_pattern="messages", event_pattern="echo")
    assert template.matches("chat", "messages", "echo")
    assert not template.matches("chat", "connections", "echo")
    assert not template.matches("other", "messages", "echo")
    assert not template.matches("chat", "messages", "broadcastMessage")


@pytest.mark.parametrize(
    ("event", "escaped"),
    [
        ("a/b", "a%2Fb"),
        ("a b", "a%20b"),
        ("a?x=1#f", "a%3Fx%3D1%23f"),
        ("ünï", "%C3%BCn%C3%AF"),
        ("-._~", "-._~"),  # Uri.EscapeDataString keeps the unreserved characters
        ("{hub}", "%7Bhub%7D"),  # a value cannot inject another placeholder
        ("..", ".."),
    ],
)
def test_values_are_escaped_like_escape_data_string(event: str, escaped: str) -> None:
    template = UpstreamTemplate("http://h/{hub}/{event}")
    assert template.url("chat", "messages", event) == f"http://h/chat/{escaped}"


def test_placeholders_may_repeat_or_be_absent() -> None:
    assert UpstreamTemplate("http://h/{hub}/{hub}").url("c", "m", "e") == "http://h/c/c"
    assert UpstreamTemplate("http://h/fixed").url("c", "m", "e") == "http://h/fixed"


@pytest.mark.parametrize(
    "template",
    [
        "http://h/{nope}",
        "http://h/{Hub}",  # placeholders are case-sensitive: this one would be posted literally
        "http://h/{hub}/{}",
        "http://h/{hub}/{category}/{event}?x={connectionId}",
        "http://h/{hub",
        "http://h/hub}",
        "http://h/{{hub}}",
    ],
)
def test_template_with_anything_but_the_three_placeholders_is_refused(template: str) -> None:
    with pytest.raises(UpstreamTemplateError) as refused:
        UpstreamTemplate(template)
    assert "the placeholders are {hub}, {category} and {event}" in str(refused.value)
    assert isinstance(refused.value, ValueError)


def test_unknown_placeholder_is_named() -> None:
    with pytest.raises(UpstreamTemplateError, match=r"^unknown placeholder \{nope\}; "):
        UpstreamTemplate("http://h/{hub}/{nope}/{event}")
    with pytest.raises(UpstreamTemplateError, match=r"^'\{' without a closing '\}'; "):
        UpstreamTemplate("http://h/{hub}/{event")
    with pytest.raises(UpstreamTemplateError, match=r"^'\}' without an opening '\{'; "):
        UpstreamTemplate("http://h/}{hub}")


def test_the_three_placeholders_in_any_order_and_number_are_accepted() -> None:
    for template in ("http://h/", "http://h/{event}", "http://h/{event}/{hub}?c={category}&h={hub}"):
        assert UpstreamTemplate(template).url_template == template


def test_hostile_templates_are_refused_with_one_short_line() -> None:
    for template, shown in [
        ("http://h/{a\nb}", "'{a\\nb}'"),
        ("http://h/{" + "x" * 100_000 + "}", "'{" + "x" * 63 + "'"),
        ("http://h/" + "{x}" * 100_000, "{x}"),
    ]:
        with pytest.raises(UpstreamTemplateError) as refused:
            UpstreamTemplate(template)
        message = str(refused.value)
        assert message.startswith(f"unknown placeholder {shown}; ") and "\n" not in message and len(message) < 200


def test_upstream_media_types_name_the_hub_protocol() -> None:
    assert protocol_for_media_type("application/json") is PROTOCOLS["json"]
    assert protocol_for_media_type(" Application/X-MsgPack ") is PROTOCOLS["messagepack"]
    assert protocol_for_media_type("text/plain") is None
    assert protocol_for_media_type("") is None
    assert {MEDIA_TYPES[name] for name in PROTOCOLS} == {"application/json", "application/x-msgpack"}
