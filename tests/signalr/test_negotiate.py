"""Negotiate: the app server's redirect (§2), the client URL rules (§3.1, traps 5–7), service replies (§3.2, §3.3)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from signalr.connection_string import parse_connection_string
from signalr.hub_protocol import TransferFormat
from signalr.negotiate import (
    ALL_TRANSPORTS,
    MAX_REDIRECTS,
    AvailableTransport,
    NegotiateError,
    NegotiateRedirect,
    NegotiateResult,
    TransportType,
    build_redirect,
    connect_url,
    negotiate_url,
    new_request_id,
    parse_negotiate_response,
    requested_version,
    service_negotiate_response,
)
from signalr.tokens import verify_token

KEY = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH"
APIM = parse_connection_string(
    f"Endpoint=https://res1.service.signalr.net;AccessKey={KEY};ClientEndpoint=https://apim1.azure-api.net;Version=1.0;"
)
EMULATOR = parse_connection_string(f"Endpoint=http://localhost;Port=8888;AccessKey={KEY};Version=1.0;")
NOW = 1_700_000_000
V1_BODY = (
    b'{"negotiateVersion":1,"connectionId":"807809a5-31bf-470d-9e23-afaee35d8a0d",'
    b'"connectionToken":"05265228-1e2c-46c5-82a1-6a5bcc3f0143","availableTransports":['
    b'{"transport":"WebSockets","transferFormats":["Text","Binary"]},'
    b'{"transport":"ServerSentEvents","transferFormats":["Text"]},'
    b'{"transport":"LongPolling","transferFormats":["Text","Binary"]}]}'
)


# -- build_redirect --------------------------------------------------------------------------------


def test_redirect_url_of_the_doc() -> None:
    redirect = build_redirect(
        APIM, "chat", request_path="/chat/negotiate", request_query="negotiateVersion=1", request_id="AbCdEfGhIjk="
    )
    assert redirect.url == (
        "https://apim1.azure-api.net/client/?hub=chat&asrs.op=%2Fchat&negotiateVersion=1&asrs_request_id=AbCdEfGhIjk%3D"
    )


def test_sdk_test_vector() -> None:
    cs = parse_connection_string(f"Endpoint=https://x;AccessKey={KEY};ClientEndpoint=http://localhost3")
    redirect = build_redirect(
        cs, "chat", request_path="/user/path/negotiate", request_query="endpoint=chosen", request_id="a"
    )
    assert redirect.url == "http://localhost3/client/?hub=chat&asrs.op=%2Fuser%2Fpath&endpoint=chosen&asrs_request_id=a"


def test_hub_name_is_lower_cased_in_url_and_aud() -> None:
    redirect = build_redirect(APIM, "ChatSampleHub", request_path="/chat/negotiate", request_id="a", now=NOW)
    assert redirect.url.startswith("https://apim1.azure-api.net/client/?hub=chatsamplehub&asrs.op=%2Fchat&")
    claims = verify_token(redirect.access_token, KEY, None, now=NOW)
    assert claims["aud"] == "https://res1.service.signalr.net/client/?hub=chatsamplehub"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/chat/negotiate", "&asrs.op=%2Fchat&"),
        ("/chat/negotiate/", "&asrs.op=%2Fchat&"),  # trailing "/" tolerated
        ("/my chat/negotiate", "&asrs.op=%2Fmy+chat&"),  # form encoding: space → "+"
        ("/a/b/negotiate", "&asrs.op=%2Fa%2Fb&"),
    ],
)
def test_asrs_op_is_the_form_encoded_path_before_negotiate(path: str, expected: str) -> None:
    assert expected in build_redirect(APIM, "chat", request_path=path, request_id="a").url


def test_asrs_op_omitted_when_path_does_not_end_with_negotiate() -> None:
    url = build_redirect(APIM, "chat", request_path="/chat", request_id="a").url
    assert url == "https://apim1.azure-api.net/client/?hub=chat&asrs_request_id=a"


def test_client_query_is_copied_once() -> None:
    url = build_redirect(
        APIM,
        "chat",
        request_path="/chat/negotiate",
        request_query="?negotiateVersion=1&subscription-key=k1",
        request_id="a",
    ).url
    assert (
        url
        == "https://apim1.azure-api.net/client/?hub=chat&asrs.op=%2Fchat&negotiateVersion=1&subscription-key=k1&asrs_request_id=a"
    )
    assert url.count("negotiateVersion") == 1


def test_no_query() -> None:
    url = build_redirect(APIM, "chat", request_path="/chat/negotiate", request_id="a").url
    assert url == "https://apim1.azure-api.net/client/?hub=chat&asrs.op=%2Fchat&asrs_request_id=a"


def test_request_id_is_url_encoded() -> None:
    url = build_redirect(APIM, "chat", request_path="/chat/negotiate", request_id="a+b/c=").url
    assert url.endswith("&asrs_request_id=a%2Bb%2Fc%3D")


def test_generated_request_id() -> None:
    url = build_redirect(APIM, "chat", request_path="/chat/negotiate").url
    raw = url.rsplit("asrs_request_id=", 1)[1]
    assert raw.endswith("%3D")  # base64 of 8 bytes ends in "="


@pytest.mark.parametrize(
    ("client_endpoint", "prefix"),
    [
        ("https://gw.example/basepath/", "https://gw.example/basepath/client/?hub=chat&"),
        # Trap 4: plain concatenation onto an AbsoluteUri with a path but no trailing "/".
        ("https://gw.example/basepath", "https://gw.example/basepathclient/?hub=chat&"),
        ("http://gw.example:8080", "http://gw.example:8080/client/?hub=chat&"),
    ],
)
def test_client_endpoint_with_path(client_endpoint: str, prefix: str) -> None:
    cs = parse_connection_string(f"Endpoint=https://x;AccessKey={KEY};ClientEndpoint={client_endpoint}")
    assert build_redirect(cs, "chat", request_path="/chat/negotiate", request_id="a").url.startswith(prefix)


def test_token_audience_is_the_endpoint_without_port() -> None:
    redirect = build_redirect(EMULATOR, "chat", request_path="/chat/negotiate", request_id="a", now=NOW)
    assert redirect.url.startswith("http://localhost:8888/client/?hub=chat&")
    claims = verify_token(redirect.access_token, KEY, "http://localhost/client/?hub=chat", now=NOW + 1)
    assert claims == {"nbf": NOW, "iat": NOW, "exp": NOW + 3600, "aud": "http://localhost/client/?hub=chat"}


def test_token_audience_ignores_client_endpoint() -> None:
    redirect = build_redirect(APIM, "chat", request_path="/chat/negotiate", request_id="a", now=NOW)
    assert (
        verify_token(redirect.access_token, KEY, None, now=NOW)["aud"]
        == "https://res1.service.signalr.net/client/?hub=chat"
    )


def test_token_claims_and_lifetime() -> None:
    redirect = build_redirect(
        APIM,
        "chat",
        request_path="/chat/negotiate",
        request_id="a",
        now=NOW,
        lifetime=120,
        claims={"asrs.s.uid": "alice"},
    )
    claims = verify_token(redirect.access_token, KEY, None, now=NOW)
    assert claims["asrs.s.uid"] == "alice"
    assert claims["exp"] == NOW + 120


def test_redirect_json_field_order_and_secrecy() -> None:
    redirect = NegotiateRedirect("https://gw/client/?hub=chat", "eyJ.token.sig")
    assert redirect.to_json() == (
        b'{"negotiateVersion":0,"url":"https://gw/client/?hub=chat","accessToken":"eyJ.token.sig","availableTransports":[]}'
    )
    assert "eyJ.token.sig" not in repr(redirect)


def test_no_access_key_means_no_negotiate_endpoint() -> None:
    cs = parse_connection_string("Endpoint=https://x;AuthType=aad;Version=1.0")
    with pytest.raises(NegotiateError, match="Unable to get the negotiate endpoint"):
        build_redirect(cs, "chat", request_path="/chat/negotiate")


def test_new_request_id_shape() -> None:
    rid = new_request_id(now_ns=123_456_789_00)
    assert rid == base64.b64encode((123_456_789).to_bytes(8, "little")).decode()
    assert len(rid) == 12 and rid.endswith("=")
    assert len({new_request_id() for _ in range(50)}) > 1


# -- negotiate_url / connect_url --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # Trap 7: path + "negotiate" (a "/" inserted only when missing) + the original query.
        ("https://gw/client/?hub=chat&x=1", "https://gw/client/negotiate?hub=chat&x=1&negotiateVersion=1"),
        ("http://h/chat", "http://h/chat/negotiate?negotiateVersion=1"),
        ("http://h/chat/", "http://h/chat/negotiate?negotiateVersion=1"),
        ("http://h", "http://h/negotiate?negotiateVersion=1"),
        ("http://h:5000/chat?negotiateVersion=1", "http://h:5000/chat/negotiate?negotiateVersion=1"),
        # A redirect URL already carries negotiateVersion (trap 5): not added twice; %-escapes kept verbatim.
        (
            "https://apim1.azure-api.net/client/?hub=chat&asrs.op=%2Fchat&negotiateVersion=1&asrs_request_id=AbC%3D",
            "https://apim1.azure-api.net/client/negotiate?hub=chat&asrs.op=%2Fchat&negotiateVersion=1&asrs_request_id=AbC%3D",
        ),
        # §3.1: a hub URL that already ends in /negotiate gets a second one.
        ("http://h/chat/negotiate", "http://h/chat/negotiate/negotiate?negotiateVersion=1"),
        ("http://h/chat#fragment", "http://h/chat/negotiate?negotiateVersion=1"),
    ],
)
def test_negotiate_url(url: str, expected: str) -> None:
    assert negotiate_url(url) == expected


def test_negotiate_url_is_not_naive_concatenation() -> None:
    # aiosignalr's bug (Appendix A): url + "/negotiate" puts the path into the query.
    assert "?hub=chat/negotiate" not in negotiate_url("https://gw/client/?hub=chat")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://gw/client/?hub=chat&asrs.op=%2Fchat", "https://gw/client/?hub=chat&asrs.op=%2Fchat&id=tok-1"),
        ("http://h/chat", "http://h/chat?id=tok-1"),
    ],
)
def test_connect_url(url: str, expected: str) -> None:
    assert connect_url(url, "tok-1") == expected


# -- parse_negotiate_response --------------------------------------------------------------------------------


def test_parse_redirect() -> None:
    body = NegotiateRedirect("https://gw/client/?hub=chat", "eyJ.a.b").to_json()
    assert parse_negotiate_response(body) == NegotiateRedirect("https://gw/client/?hub=chat", "eyJ.a.b")


def test_parse_redirect_without_token() -> None:
    # Serverless negotiate may omit it; "" tells the caller to keep its current token (JS client behaviour).
    assert parse_negotiate_response(b'{"url":"https://gw/client/?hub=chat"}') == NegotiateRedirect(
        "https://gw/client/?hub=chat", ""
    )


def test_parse_v1() -> None:
    result = parse_negotiate_response(V1_BODY)
    assert result == NegotiateResult(
        "807809a5-31bf-470d-9e23-afaee35d8a0d",
        "05265228-1e2c-46c5-82a1-6a5bcc3f0143",
        1,
        (
            AvailableTransport(TransportType.WEBSOCKETS, frozenset({TransferFormat.TEXT, TransferFormat.BINARY})),
            AvailableTransport(TransportType.SERVER_SENT_EVENTS, frozenset({TransferFormat.TEXT})),
            AvailableTransport(TransportType.LONG_POLLING, frozenset({TransferFormat.TEXT, TransferFormat.BINARY})),
        ),
    )
    assert isinstance(result, NegotiateResult)
    assert result.available_transports == (
        TransportType.WEBSOCKETS,
        TransportType.SERVER_SENT_EVENTS,
        TransportType.LONG_POLLING,
    )
    assert result.transfer_formats(TransportType.SERVER_SENT_EVENTS) == frozenset({TransferFormat.TEXT})
    assert result.id_for_connect == "05265228-1e2c-46c5-82a1-6a5bcc3f0143"  # trap 6: the token, not the id


def test_parse_v0_uses_connection_id() -> None:
    result = parse_negotiate_response(
        b'{"connectionId":"abc","connectionToken":"ignored-under-v0","availableTransports":[{"transport":"LongPolling"}]}'
    )
    assert isinstance(result, NegotiateResult)
    assert result.negotiate_version == 0
    assert result.connection_token is None
    assert result.id_for_connect == "abc"
    assert result.available_transports == (TransportType.LONG_POLLING,)
    assert result.transfer_formats(TransportType.LONG_POLLING) == frozenset()  # none given: none usable


@pytest.mark.parametrize(
    ("formats", "expected"),
    [
        (b'["Text","Binary"]', {TransferFormat.TEXT, TransferFormat.BINARY}),
        (b'["Binary"]', {TransferFormat.BINARY}),
        (b"[]", set()),
        # Names are case-sensitive, as the JS client's TransferFormat[name] lookup is; unknown ones are ignored.
        (b'["text","BINARY","Carrier pigeon","Text"]', {TransferFormat.TEXT}),
        (b'[1,null,true,{"Text":1},["Binary"],"Binary"]', {TransferFormat.BINARY}),
        (b'"Text"', set()),
        (b'{"0":"Text"}', set()),
        (b"null", set()),
        (b"7", set()),
        (b'["Text","Text","Text"]', {TransferFormat.TEXT}),
    ],
    ids=[
        "both",
        "binary",
        "empty",
        "case-and-unknown",
        "non-strings",
        "string",
        "object",
        "null",
        "number",
        "repeated",
    ],
)
def test_parse_transfer_formats(formats: bytes, expected: set[TransferFormat]) -> None:
    body = b'{"negotiateVersion":1,"connectionId":"a","connectionToken":"t","availableTransports":[' + (
        b'{"transport":"WebSockets","transferFormats":' + formats + b"}]}"
    )
    result = parse_negotiate_response(body)
    assert isinstance(result, NegotiateResult)
    assert result.transfer_formats(TransportType.WEBSOCKETS) == frozenset(expected)
    assert result.transfer_formats(TransportType.LONG_POLLING) is None  # not offered at all


def test_parse_keeps_the_first_of_repeated_transports_and_many_formats_stay_bounded() -> None:
    body = (
        b'{"negotiateVersion":1,"connectionId":"a","connectionToken":"t","availableTransports":['
        b'{"transport":"LongPolling","transferFormats":["Text"]},'
        b'{"transport":"LongPolling","transferFormats":["Text","Binary"]},'
        b'{"transport":"WebSockets","transferFormats":[' + b",".join([b'"Binary"'] * 50_000) + b"]}]}"
    )
    result = parse_negotiate_response(body)
    assert isinstance(result, NegotiateResult)
    assert result.available_transports == (TransportType.LONG_POLLING, TransportType.WEBSOCKETS)
    assert result.transfer_formats(TransportType.LONG_POLLING) == frozenset({TransferFormat.TEXT})
    assert result.transfer_formats(TransportType.WEBSOCKETS) == frozenset({TransferFormat.BINARY})


def test_parse_skips_unknown_transports() -> None:
    body = (
        b'{"negotiateVersion":1,"connectionId":"a","connectionToken":"t",'
        b'"availableTransports":[{"transport":"Carrier"},"x",null,{"transport":"WebSockets"}]}'
    )
    result = parse_negotiate_response(body)
    assert isinstance(result, NegotiateResult)
    assert result.available_transports == (TransportType.WEBSOCKETS,)


def test_parse_error_field() -> None:
    with pytest.raises(NegotiateError) as caught:
        parse_negotiate_response(b'{"error":"The client requested a non-integer protocol version."}')
    assert str(caught.value) == "The client requested a non-integer protocol version."


def test_empty_error_field_is_not_an_error() -> None:
    assert isinstance(parse_negotiate_response(b'{"error":"","connectionId":"a"}'), NegotiateResult)


def test_parse_classic_aspnet_server() -> None:
    with pytest.raises(NegotiateError) as caught:
        parse_negotiate_response(b'{"Url":"/signalr","ConnectionToken":"x","ProtocolVersion":"1.5"}')
    assert str(caught.value) == (
        "Detected a connection attempt to an ASP.NET SignalR Server. This client only supports connecting to an "
        "ASP.NET Core SignalR Server. See https://aka.ms/signalr-core-differences for details."
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "Negotiate response is not valid JSON."),
        (b"<html>404</html>", "Negotiate response is not valid JSON."),
        (b"\xff\xfe", "Negotiate response is not valid JSON."),
        (b"[" * 100_000, "Negotiate response is not valid JSON."),
        (b'{"connectionId":"a","n":' + b"1" * 5000 + b"}", "Negotiate response is not valid JSON."),
        (b"[]", "Negotiate response is not a JSON object."),
        (b"null", "Negotiate response is not a JSON object."),
        (b"{}", "Negotiate response has no connectionId."),
        (b'{"connectionId":""}', "Negotiate response has no connectionId."),
        (b'{"connectionId":5}', "Negotiate response has no connectionId."),
        (
            b'{"connectionId":"a","negotiateVersion":"1"}',
            "Negotiate response has a negotiateVersion that is not an integer.",
        ),
        (
            b'{"connectionId":"a","negotiateVersion":true}',
            "Negotiate response has a negotiateVersion that is not an integer.",
        ),
        (
            b'{"connectionId":"a","negotiateVersion":1.5}',
            "Negotiate response has a negotiateVersion that is not an integer.",
        ),
        (
            b'{"connectionId":"a","availableTransports":5}',
            "Negotiate response has availableTransports that is not an array.",
        ),
        (
            b'{"connectionId":"a","availableTransports":{"transport":"WebSockets"}}',
            "Negotiate response has availableTransports that is not an array.",
        ),
    ],
)
def test_parse_garbage(body: bytes, message: str) -> None:
    with pytest.raises(NegotiateError) as caught:
        parse_negotiate_response(body)
    assert str(caught.value) == message


def test_null_version_counts_as_0() -> None:
    result = parse_negotiate_response(b'{"connectionId":"a","negotiateVersion":null,"availableTransports":null}')
    assert isinstance(result, NegotiateResult) and result.negotiate_version == 0 and result.available_transports == ()


def test_max_redirects() -> None:
    assert MAX_REDIRECTS == 100


# -- service side --------------------------------------------------------------------------------


def test_service_negotiate_response_v1_matches_aspnet_bytes() -> None:
    body = service_negotiate_response("807809a5-31bf-470d-9e23-afaee35d8a0d", "05265228-1e2c-46c5-82a1-6a5bcc3f0143", 1)
    assert body == V1_BODY


def test_service_negotiate_response_v0_omits_token() -> None:
    body = service_negotiate_response("id", "token", 0, transports=[])
    assert body == b'{"negotiateVersion":0,"connectionId":"id","availableTransports":[]}'
    assert json.loads(body).get("connectionToken") is None


@pytest.mark.parametrize(
    ("query", "version"),
    [
        ("negotiateVersion=1", 1),
        ("negotiateVersion=5", 1),  # min(requested, 1)
        ("negotiateVersion=0", 0),
        ("", 0),  # absent → 0
        ("hub=chat", 0),
        ("NEGOTIATEVERSION=1", 1),  # key matched case-insensitively
        ("hub=chat&negotiateVersion=1&x=y", 1),
        ("negotiateVersion=+1", 1),
        ("negotiateVersion=2147483647", 1),
        # Decoded as parse_qsl decodes a query: '+' is a space, percent-escapes in keys and values, empty fields.
        ("negotiateVersion=%2B1", 1),
        ("negotiate%56ersion=1", 1),
        ("negotiateVersion=+1+", 1),
        ("&&negotiateVersion=1&", 1),
        ("negotiateVersion=1&negotiateVersion=-1", 1),  # the first one counts
        ("negotiate+Version=1", 0),
        ("negotiateVersion+=1", 0),
    ],
)
def test_requested_version(query: str, version: int) -> None:
    assert requested_version(query) == version


@pytest.mark.parametrize("query", ["negotiateVersion", "negotiateVersion=", "x=1&negotiateVersion&negotiateVersion=1"])
def test_requested_version_without_a_value_is_non_integer(query: str) -> None:
    with pytest.raises(NegotiateError, match="non-integer"):
        requested_version(query)


@pytest.mark.parametrize(
    ("connection_id", "token"),
    [
        ("Ab-_09", "zZ_-1"),
        ('with"quote', "t"),
        ("id", "back\\slash"),
        ("é", "\u2028"),
        ("", ""),
    ],
)
@pytest.mark.parametrize("version", [0, 1])
def test_service_negotiate_response_is_the_compact_json_of_its_fields(
    connection_id: str, token: str, version: int
) -> None:
    body = service_negotiate_response(connection_id, token, version)
    fields: dict[str, Any] = {"negotiateVersion": version, "connectionId": connection_id}
    if version:
        fields["connectionToken"] = token
    fields["availableTransports"] = ALL_TRANSPORTS
    assert body == json.dumps(fields, separators=(",", ":")).encode()


@pytest.mark.parametrize("value", ["abc", "", "1.0", "1e3", "²", "١", "1_0", "2147483648", "99999999999999999999999"])
def test_requested_version_non_integer(value: str) -> None:
    with pytest.raises(NegotiateError) as caught:
        requested_version(f"negotiateVersion={value}")
    assert str(caught.value) == "The client requested a non-integer protocol version."


def test_requested_version_below_minimum() -> None:
    with pytest.raises(NegotiateError) as caught:
        requested_version("negotiateVersion=-1")
    assert str(caught.value) == "The client requested version '-1', but the server does not support this version."
