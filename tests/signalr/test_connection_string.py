"""Connection strings: every row of docs/protocol.md §1's validation table, the endpoint rules and the doc's vectors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signalr.connection_string import ConnectionString, ConnectionStringError, is_http_url, parse_connection_string

KEY = "S3cretAccessKey+/0123456789ABCDEFGHIJKLMNO="
MISSING_ENDPOINT = "Connection string missing required properties endpoint."
BAD_PORT = "Invalid value for port property, it must be an positive integer between (0, 65536)."


def error_of(text: str) -> str:
    with pytest.raises(ConnectionStringError) as caught:
        parse_connection_string(text)
    return str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", MISSING_ENDPOINT),
        (";;;", MISSING_ENDPOINT),
        ("Endpoint=https://x", MISSING_ENDPOINT),  # fewer than two parts, even with a valid endpoint
        ("Endpoint=https://x;", MISSING_ENDPOINT),
        (f"AccessKey={KEY};Version=1.0", MISSING_ENDPOINT),
        (
            f"Endpoint=https://x;AccessKey={KEY};endpoint=https://y",
            "Duplicate properties found in connection string: endpoint.",
        ),
        (
            f"Endpoint=https://x;AccessKey={KEY};ACCESSKEY={KEY}",
            "Duplicate properties found in connection string: ACCESSKEY.",
        ),
        (f"Endpoint=ftp://x;AccessKey={KEY}", "Invalid value for endpoint property, it must be a valid URI."),
        (
            f"Endpoint=x.service.signalr.net;AccessKey={KEY}",
            "Invalid value for endpoint property, it must be a valid URI.",
        ),
        (f"Endpoint=/relative;AccessKey={KEY}", "Invalid value for endpoint property, it must be a valid URI."),
        (f"Endpoint=http://;AccessKey={KEY}", "Invalid value for endpoint property, it must be a valid URI."),
        (f"Endpoint=http://x:99999;AccessKey={KEY}", "Invalid value for endpoint property, it must be a valid URI."),
        (f"Endpoint=https://x;AccessKey={KEY};Version=abc", "Version abc is not supported."),
        (f"Endpoint=https://x;AccessKey={KEY};Version=1.x", "Version 1.x is not supported."),
        (f"Endpoint=https://x;AccessKey={KEY};Version=2.0", "Version 2.0 is not supported."),
        (f"Endpoint=https://x;AccessKey={KEY};Version=", "Version  is not supported."),
        (f"Endpoint=https://x;AccessKey={KEY};Port=0", BAD_PORT),
        (f"Endpoint=https://x;AccessKey={KEY};Port=65536", BAD_PORT),
        (f"Endpoint=https://x;AccessKey={KEY};Port=-1", BAD_PORT),
        (f"Endpoint=https://x;AccessKey={KEY};Port=abc", BAD_PORT),
        (f"Endpoint=https://x;AccessKey={KEY};Port=8.5", BAD_PORT),
        (f"Endpoint=https://x;AccessKey={KEY};Port=", BAD_PORT),
        (f"Endpoint=https://x;AccessKey={KEY};Port=²", BAD_PORT),  # str.isdigit() says yes, int() says no
        (f"Endpoint=https://x;AccessKey={KEY};Port=٣٤", BAD_PORT),  # Arabic-Indic digits
        (
            f"Endpoint=https://x;AccessKey={KEY};ClientEndpoint=apim1.azure-api.net",
            "Invalid value for clientEndpoint property, it must be a valid URI.",
        ),
        (
            f"Endpoint=https://x;AccessKey={KEY};ClientEndpoint=ws://apim1",
            "Invalid value for clientEndpoint property, it must be a valid URI.",
        ),
        (
            f"Endpoint=https://x;AccessKey={KEY};ServerEndpoint=nope",
            "Invalid value for serverEndpoint property, it must be a valid URI.",
        ),
        (
            "Endpoint=https://x;AuthType=azure.app;TenantId=t;ClientSecret=s",
            "Connection string missing required properties clientId.",
        ),
        (
            "Endpoint=https://x;AuthType=azure.app;ClientId=c;ClientSecret=s",
            "Connection string missing required properties tenantId.",
        ),
        (
            "Endpoint=https://x;AuthType=azure.app;ClientId=c;TenantId=t",
            "Connection string missing required properties clientSecret or clientCert.",
        ),
        ("Endpoint=https://x;Version=1.0", "accesskey is required."),
        ("Endpoint=https://x;AccessKey=;Version=1.0", "accesskey is required."),
        ("Endpoint=https://x;AuthType=none;Version=1.0", "accesskey is required."),
    ],
)
def test_validation_table_messages(text: str, message: str) -> None:
    assert error_of(text) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # Checks run in the SDK's order: the first failing row wins.
        ("Endpoint=ftp://x;endpoint=ftp://y", "Duplicate properties found in connection string: endpoint."),
        ("Endpoint=ftp://x;Version=9;Port=0", "Invalid value for endpoint property, it must be a valid URI."),
        ("Endpoint=https://x;Version=9;Port=0", "Version 9 is not supported."),
        ("Endpoint=https://x;Port=0;ClientEndpoint=bad", BAD_PORT),
        (
            "Endpoint=https://x;ClientEndpoint=bad;ServerEndpoint=bad",
            "Invalid value for clientEndpoint property, it must be a valid URI.",
        ),
        ("Endpoint=https://x;ServerEndpoint=bad", "Invalid value for serverEndpoint property, it must be a valid URI."),
    ],
)
def test_checks_run_in_sdk_order(text: str, message: str) -> None:
    assert error_of(text) == message


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://x", True),
        ("http://127.0.0.1:65535/chat?x=1", True),
        ("http://[::1]:8080/", True),
        ("ws://x", False),
        ("x.example", False),
        ("http://", False),
        ("http://:5000/chat", False),  # a port but no host
        ("http://x:99999", False),
        ("http://[::1/chat", False),
    ],
)
def test_is_http_url_is_the_endpoint_rule(url: str, ok: bool) -> None:
    """The rule behind the endpoint rows above, which the client also applies to hub and redirect URLs."""
    assert is_http_url(url) is ok


@pytest.mark.parametrize("version", ["1.0", "1.10", "1.0-preview", "1.0.1", "1.0_beta"])
def test_supported_versions(version: str) -> None:
    assert parse_connection_string(f"Endpoint=https://x;AccessKey={KEY};Version={version}").version == version


@pytest.mark.parametrize("port", ["1", "443", "65535", "08888"])
def test_valid_ports(port: str) -> None:
    assert parse_connection_string(f"Endpoint=https://x;AccessKey={KEY};Port={port}").port == int(port)


def test_keys_are_case_insensitive_values_are_not() -> None:
    cs = parse_connection_string(
        f"ENDPOINT=https://Res.Example;accessKEY={KEY};vErSiOn=1.0;pOrT=444;clientendpoint=https://A"
    )
    assert cs.access_key == KEY
    assert cs.version == "1.0"
    assert cs.port == 444
    assert cs.client_endpoint == "https://A"


def test_parts_are_trimmed_and_parts_without_equals_are_skipped() -> None:
    cs = parse_connection_string(f"  Endpoint = https://x.example/ ; junk ; AccessKey = {KEY} ;")
    assert cs.endpoint == "https://x.example"
    assert cs.access_key == KEY


def test_value_is_split_at_the_first_equals_only() -> None:
    assert parse_connection_string("Endpoint=https://x;AccessKey=abc==").access_key == "abc=="


def test_blank_part_counts_towards_two_parts_like_the_sdk() -> None:
    # StringSplitOptions.RemoveEmptyEntries keeps " ": two parts, so the next check (accesskey) is the one that fails.
    assert error_of("Endpoint=https://x; ") == "accesskey is required."


def test_entra_types_need_no_access_key() -> None:
    for auth in ("aad", "azure", "azure.msi", "AAD"):
        cs = parse_connection_string(f"Endpoint=https://x;AuthType={auth};Version=1.0")
        assert cs.access_key is None
        assert cs.auth_type == auth
    cs = parse_connection_string("Endpoint=https://x;AuthType=azure.app;ClientId=c;TenantId=t;ClientCert=/p.pem")
    assert cs.access_key is None


def test_uses_entra_id_whenever_auth_type_names_it_access_key_or_not() -> None:
    for auth in ("aad", "azure", "azure.msi", "Azure.MSI"):
        assert parse_connection_string(f"Endpoint=https://x;AccessKey={KEY};AuthType={auth}").uses_entra_id
        assert parse_connection_string(f"Endpoint=https://x;AuthType={auth}").uses_entra_id
    assert not parse_connection_string(f"Endpoint=https://x;AccessKey={KEY};AuthType=none").uses_entra_id
    assert not parse_connection_string(f"Endpoint=https://x;AccessKey={KEY}").uses_entra_id


def test_endpoint_loses_trailing_slashes_client_endpoint_does_not() -> None:
    cs = parse_connection_string(f"Endpoint=https://x.example//;AccessKey={KEY};ClientEndpoint=https://gw.example/")
    assert cs.endpoint == "https://x.example"
    assert cs.client_endpoint == "https://gw.example/"
    assert cs.client_base == "https://gw.example/"


def test_port_changes_endpoint_only() -> None:
    # The §1 vector: clients to http://bbb/ (port 80), server traffic to http://aaa:400, aud without a port.
    cs = parse_connection_string("endpoint=http://aaa:500;accesskey=K;port=400;clientEndpoint=http://bbb")
    assert cs.endpoint == "http://aaa:400"
    assert cs.server_endpoint == "http://aaa:400"
    assert cs.client_endpoint == "http://bbb"
    assert cs.client_base == "http://bbb/"
    assert cs.client_audience("chat") == "http://aaa/client/?hub=chat"


def test_client_endpoint_keeps_its_own_port() -> None:
    cs = parse_connection_string("Endpoint=http://aaa;AccessKey=K;Port=400;ClientEndpoint=http://bbb:9000")
    assert cs.client_base == "http://bbb:9000/"


def test_port_on_ipv6_endpoint() -> None:
    cs = parse_connection_string("Endpoint=http://[::1];AccessKey=K;Port=8888")
    assert cs.endpoint == "http://[::1]:8888"
    assert cs.client_audience("chat") == "http://::1/client/?hub=chat"


def test_client_endpoint_defaults_to_endpoint_with_port() -> None:
    cs = parse_connection_string(
        "Endpoint=http://localhost;Port=8888;AccessKey=ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH;Version=1.0;"
    )
    # The emulator string of §1: clients to http://localhost:8888/client/…, aud on http://localhost/.
    assert cs.client_base == "http://localhost:8888/"
    assert cs.client_audience("chat") == "http://localhost/client/?hub=chat"
    assert cs.server_endpoint == "http://localhost:8888"


def test_apim_form() -> None:
    cs = parse_connection_string(
        f"Endpoint=https://res1.service.signalr.net;AccessKey={KEY};ClientEndpoint=https://apim1.azure-api.net;Version=1.0;"
    )
    assert cs.client_base == "https://apim1.azure-api.net/"
    assert cs.client_audience("Chat") == "https://res1.service.signalr.net/client/?hub=chat"
    assert cs.server_endpoint == "https://res1.service.signalr.net"


@pytest.mark.parametrize(
    ("client_endpoint", "base"),
    [
        ("https://h", "https://h/"),
        ("https://h/", "https://h/"),
        # Trap 4: AbsoluteUri keeps a path without a trailing "/", so the SDK's plain concatenation gives
        # https://h/basepathclient/?hub=…
        ("https://h/basepath", "https://h/basepath"),
        ("https://h/basepath/", "https://h/basepath/"),
    ],
)
def test_client_base_absolute_uri_rule(client_endpoint: str, base: str) -> None:
    cs = parse_connection_string(f"Endpoint=https://x;AccessKey={KEY};ClientEndpoint={client_endpoint}")
    assert cs.client_base == base


def test_audience_base_drops_port_and_path() -> None:
    cs = parse_connection_string(f"Endpoint=https://x.example:4443/some/path;AccessKey={KEY}")
    assert cs.audience_base == "https://x.example/"


def test_server_endpoint_is_used_for_rest_and_trimmed() -> None:
    cs = parse_connection_string(f"Endpoint=https://x;AccessKey={KEY};ServerEndpoint=https://internal.example/")
    assert cs.server_endpoint == "https://internal.example"
    assert cs.client_audience("chat") == "https://x/client/?hub=chat"


@pytest.mark.parametrize(
    "text",
    [
        f"Endpoint=https://x;AccessKey={KEY};endpoint=https://y",
        f"Endpoint=ftp://x;AccessKey={KEY}",
        f"Endpoint=https://x;AccessKey={KEY};Version=abc",
        f"Endpoint=https://x;AccessKey={KEY};Port=abc",
        f"Endpoint=https://x;AccessKey={KEY};ClientEndpoint=bad",
        f"Endpoint=https://x;AccessKey={KEY};ServerEndpoint=bad",
        f"AccessKey={KEY};Version=1.0",
        f"AccessKey={KEY}",
        f"Endpoint=https://x;AccessKey={KEY};AccessKey={KEY}",
    ],
)
def test_access_key_never_in_error_messages(text: str) -> None:
    assert KEY not in error_of(text)
    assert "S3cret" not in error_of(text)


def test_access_key_not_in_repr_str_or_redacted() -> None:
    cs = parse_connection_string(f"Endpoint=https://x;AccessKey={KEY};ClientEndpoint=https://gw;Version=1.0")
    for text in (repr(cs), str(cs), cs.redacted()):
        assert KEY not in text
    assert cs.redacted() == "Endpoint=https://x;AccessKey=***;ClientEndpoint=https://gw;Version=1.0;"


def test_redacted_form_is_parseable_and_equivalent() -> None:
    cs = parse_connection_string(f"Endpoint=https://x;AccessKey={KEY};Port=444")
    again = parse_connection_string(cs.redacted())
    assert again.endpoint == cs.endpoint
    assert again.access_key == "***"


def test_dataclass_is_frozen() -> None:
    cs = parse_connection_string(f"Endpoint=https://x;AccessKey={KEY}")
    with pytest.raises(AttributeError):
        cs.endpoint = "https://evil"  # type: ignore[misc]


@given(st.text(max_size=200))
def test_any_text_parses_or_raises_connection_string_error(text: str) -> None:
    try:
        cs = parse_connection_string(text)
    except ConnectionStringError:
        return
    assert isinstance(cs, ConnectionString)
    assert cs.client_base.endswith("/") or "/" in cs.client_base.split("://", 1)[1]
    cs.client_audience("chat")


@given(
    st.lists(
        st.sampled_from(
            [
                "Endpoint=https://x",
                f"AccessKey={KEY}",
                "Port=1",
                "Port=x",
                "Version=1.0",
                "ClientEndpoint=http://c",
                "junk",
                " ",
            ]
        ),
        max_size=8,
    )
)
def test_shuffled_parts_never_leak_the_key(parts: list[str]) -> None:
    try:
        parse_connection_string(";".join(parts))
    except ConnectionStringError as exc:
        assert KEY not in str(exc)


def test_server_connection_url_and_audience() -> None:
    local = parse_connection_string("Endpoint=http://127.0.0.1;Port=8888;AccessKey=k;Version=1.0;")
    assert local.server_connection_url("Chat", "c-1") == "ws://127.0.0.1:8888/server/?hub=chat&cid=c-1"
    assert local.server_audience("Chat") == "http://127.0.0.1/server/?hub=chat"
    proxied = parse_connection_string(
        "Endpoint=https://res.service.signalr.net;AccessKey=k;ServerEndpoint=https://gw.example/signalr;Version=1.0;"
    )
    # Server connections go to the ServerEndpoint; the token audience stays on the Endpoint.
    assert proxied.server_connection_url("chat", "x") == "wss://gw.example/signalr/server/?hub=chat&cid=x"
    assert proxied.server_audience("chat") == "https://res.service.signalr.net/server/?hub=chat"
