"""An app server on Azure Web PubSub answers negotiate with its client access URL: ``WebPubSubAnswer``."""

from __future__ import annotations

import json

import pytest

from signalr.negotiate import (
    MAX_WEBPUBSUB_URL,
    NegotiateError,
    NegotiateRedirect,
    WebPubSubAnswer,
    parse_negotiate_response,
)

URL = "ws://127.0.0.1:8080/client/hubs/chat?access_token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_webpubsub_answer_carries_url_and_hub() -> None:
    with pytest.raises(WebPubSubAnswer) as caught:
        parse_negotiate_response(body(service="webpubsub", hub="chat", url=URL))
    answer = caught.value
    assert isinstance(answer, NegotiateError)
    assert (answer.url, answer.hub) == (URL, "chat")
    assert str(answer).startswith("The app server answers for Azure Web PubSub, not SignalR")


def test_the_message_and_repr_never_hold_the_token() -> None:
    with pytest.raises(WebPubSubAnswer) as caught:
        parse_negotiate_response(body(service="webpubsub", hub="chat", url=URL))
    for text in (str(caught.value), repr(caught.value)):
        assert "access_token" not in text and "eyJ" not in text


@pytest.mark.parametrize("url", [URL.replace("ws://", "wss://"), "wss://x.webpubsub.azure.com/client/hubs/chat"])
def test_ws_and_wss_urls_are_taken(url: str) -> None:
    with pytest.raises(WebPubSubAnswer) as caught:
        parse_negotiate_response(body(service="webpubsub", hub="chat", url=url))
    assert caught.value.url == url


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        42,
        ["ws://h/"],
        "http://127.0.0.1:8080/client/hubs/chat",  # a WebSocket URL is wanted, not the negotiate's http
        "javascript:alert(1)",
        "ws:///client/hubs/chat",  # no host
        "ws://127.0.0.1:99999/client",  # bad port
        "ws://127.0.0.1/client\n/x",
        "ws://127.0.0.1/client hubs",
        "ws://127.0.0.1/" + "a" * MAX_WEBPUBSUB_URL,
    ],
)
def test_a_bad_url_is_a_clear_negotiate_error(url: object) -> None:
    with pytest.raises(NegotiateError) as caught:
        parse_negotiate_response(body(service="webpubsub", hub="chat", url=url))
    assert not isinstance(caught.value, WebPubSubAnswer)
    assert str(caught.value) == "The Web PubSub negotiate answer's url is not an absolute ws:// or wss:// URL."


@pytest.mark.parametrize("hub", [None, "", 7, {"a": 1}, "c\nhat", "h" * 129])
def test_a_bad_hub_is_a_clear_negotiate_error(hub: object) -> None:
    with pytest.raises(NegotiateError) as caught:
        parse_negotiate_response(body(service="webpubsub", hub=hub, url=URL))
    assert not isinstance(caught.value, WebPubSubAnswer)
    assert str(caught.value) == "The Web PubSub negotiate answer has no valid hub name."


@pytest.mark.parametrize("service", ["signalr", "WebPubSub", None, 1])
def test_another_service_value_is_read_as_signalr(service: object) -> None:
    # Only the exact "webpubsub" switches; anything else is the SignalR answer it otherwise is (a redirect here).
    reply = parse_negotiate_response(body(service=service, url="https://gw/client/?hub=chat", accessToken="t"))
    assert reply == NegotiateRedirect("https://gw/client/?hub=chat", "t")


def test_an_error_answer_wins() -> None:
    with pytest.raises(NegotiateError) as caught:
        parse_negotiate_response(body(error="Hub is down", service="webpubsub", hub="chat", url=URL))
    assert str(caught.value) == "Hub is down"
