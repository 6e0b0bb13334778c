"""The API configurations of API Management in front of Azure SignalR Service and Azure Web PubSub, as models
(docs/apim.md). The first two are Microsoft's doc on SignalR behind API Management
(https://learn.microsoft.com/azure/azure-signalr/signalr-howto-work-with-apim):

- ``websocket``: an HTTP API ``client/negotiate`` (OPTIONS and POST ``/``) plus a WebSocket API
  ``client``. Serves negotiate and WebSockets only: SSE and LongPolling requests get APIM's 404.
- ``sse-lp``: one HTTP API ``client`` with negotiate, connect (POST), preflights and ``connect get``
  (GET ``/``) under ``forward-request buffer-response="false"`` so SSE streams are not held back.
  It has no ``DELETE /`` (the doc's gap, docs/apim.md §6): `with_delete` adds it.

APIM serves exactly one of them per instance, because both use the suffix ``client``.

- ``webpubsub``: one WebSocket API ``client/hubs/<hub>`` in front of Azure Web PubSub, the setup of
  https://techcommunity.microsoft.com/blog/appsonazureblog/expand-your-application-with-real-time-messaging-api-capability-with-web-pubsub-/3039913
  (docs/apim.md §9). Clients use the service's client access URL with the host swapped for the gateway's.
"""

from __future__ import annotations

import re
from dataclasses import replace
from enum import StrEnum

from gateway.model import (
    Api,
    ApimModel,
    ApiType,
    ForwardRequest,
    ModelError,
    Operation,
    Policies,
    Service,
    template_key,
)

__all__ = [
    "CONNECT_DELETE",
    "DEFAULT_HUB",
    "ProfileName",
    "build_profile",
    "check_hub",
    "sse_lp_profile",
    "webpubsub_profile",
    "websocket_profile",
    "with_buffered_responses",
    "with_delete",
    "with_stripped_subscription_key",
    "with_subscription_required",
    "without_options",
]


class ProfileName(StrEnum):
    WEBSOCKET = "websocket"
    SSE_LP = "sse-lp"
    WEBPUBSUB = "webpubsub"


#: The hub of the ``webpubsub`` profile unless ``--hub`` names another (the chat's hub).
DEFAULT_HUB = "chat"
# A hub name as the Web PubSub SDK describes it ("should start with alphabetic characters and only contain
# alpha-numeric characters or underscore"), at most 128 characters like the REST API's pattern for it
# (https://github.com/Azure/azure-sdk-for-python/blob/main/sdk/webpubsub/azure-messaging-webpubsubservice/azure/messaging/webpubsubservice/_operations/_operations.py).
_HUB = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,127}")


CONNECT_DELETE = Operation(name="connect-delete", display_name="connect delete", method="DELETE", url_template="/")


def websocket_profile() -> ApimModel:
    """Negotiate over an HTTP API and the connection over a WebSocket API (seed doc, option 1)."""
    return ApimModel(
        profile=ProfileName.WEBSOCKET.value,
        apis=(
            Api(
                name="signalr-negotiate",
                display_name="SignalR negotiate",
                type=ApiType.HTTP,
                suffix="client/negotiate",
                service_url="https://{signalr}/client/negotiate/",
                operations=(
                    Operation("negotiate-preflight", "OPTIONS", "/", display_name="negotiate preflight"),
                    Operation("negotiate", "POST", "/", display_name="negotiate"),
                ),
            ),
            Api(
                name="signalr-connect",
                display_name="SignalR connect",
                type=ApiType.WEBSOCKET,
                suffix="client",
                service_url="wss://{signalr}/client/",
            ),
        ),
    )


def sse_lp_profile() -> ApimModel:
    """Negotiate and the SSE/LongPolling connection over one HTTP API (seed doc, option 2)."""
    unbuffered = Policies(forward_request=ForwardRequest(buffer_response=False))
    return ApimModel(
        profile=ProfileName.SSE_LP.value,
        apis=(
            Api(
                name="signalr",
                display_name="SignalR",
                type=ApiType.HTTP,
                suffix="client",
                service_url="https://{signalr}/client/",
                operations=(
                    Operation("negotiate-preflight", "OPTIONS", "/negotiate", display_name="negotiate preflight"),
                    Operation("negotiate", "POST", "/negotiate", display_name="negotiate"),
                    Operation("connect-preflight", "OPTIONS", "/", display_name="connect preflight"),
                    Operation("connect", "POST", "/", display_name="connect"),
                    Operation("connect-get", "GET", "/", display_name="connect get", policies=unbuffered),
                ),
            ),
        ),
    )


def check_hub(hub: str) -> str:
    """The hub name unchanged if Azure Web PubSub accepts it; raises `ModelError` naming ``--hub`` otherwise."""
    if not _HUB.fullmatch(hub):
        shown = hub if len(hub) <= 40 else hub[:40] + "…"
        raise ModelError(
            f"--hub: {shown!r} is not a Web PubSub hub name (a letter, then letters, digits or '_'; "
            "at most 128 characters)"
        )
    return hub


def webpubsub_profile(hub: str = DEFAULT_HUB) -> ApimModel:
    """Azure Web PubSub's client endpoint for one hub as one WebSocket API: suffix ``client/hubs/<hub>``, Web service
    URL ``wss://<resource>.webpubsub.azure.com/client/hubs/<hub>``, no subscription required. Raises `ModelError`
    for a hub name the service refuses."""
    check_hub(hub)
    return ApimModel(
        profile=ProfileName.WEBPUBSUB.value,
        service=Service.WEBPUBSUB,
        apis=(
            Api(
                name="webpubsub-client",
                display_name="Web PubSub client",
                type=ApiType.WEBSOCKET,
                suffix=f"client/hubs/{hub}",
                service_url=f"wss://{{signalr}}/client/hubs/{hub}",
            ),
        ),
    )


def with_delete(model: ApimModel) -> ApimModel:
    """Add ``connect-delete`` (``DELETE /``, no policy) to every HTTP API that serves ``GET /``
    without a DELETE: the operation LongPolling's stop() needs (docs/apim.md §6).
    A model without such an API (the ``websocket`` profile) is returned unchanged."""

    def extended(api: Api) -> Api:
        routes = {(op.method, template_key(op.url_template)) for op in api.operations}
        if api.is_websocket or ("GET", "/") not in routes or ("DELETE", "/") in routes:
            return api
        return replace(api, operations=(*api.operations, CONNECT_DELETE))

    return replace(model, apis=tuple(map(extended, model.apis)))


def with_buffered_responses(model: ApimModel) -> ApimModel:
    """Turn APIM's default response buffering back on wherever a policy disabled it: the variant
    "without the policy", under which Server-Sent Events visibly stall (docs/apim.md §8)."""

    def buffered(op: Operation) -> Operation:
        fr = op.policies.forward_request
        if fr is None or fr.buffer_response:
            return op
        fr = replace(fr, buffer_response=True)
        return replace(op, policies=Policies(None if fr.is_default() else fr))

    return replace(
        model, apis=tuple(replace(api, operations=tuple(map(buffered, api.operations))) for api in model.apis)
    )


def without_options(model: ApimModel) -> ApimModel:
    """Every HTTP API without its OPTIONS operations: the API as imported without the guide's preflight step, so a
    browser's CORS preflight matches no operation and gets APIM's 404 (docs/apim.md §2 rule 3, §5). Only the local
    gateway runs it (``--no-options``); it is a misconfiguration, never exported. Raises `ModelError` for an API
    that would be left without operations."""

    def stripped(api: Api) -> Api:
        if api.is_websocket:
            return api
        kept = tuple(op for op in api.operations if op.method != "OPTIONS")
        if not kept:
            raise ModelError(f"--no-options: API '{api.name}' has only OPTIONS operations; nothing would be left")
        return replace(api, operations=kept)

    return replace(model, apis=tuple(map(stripped, model.apis)))


def with_subscription_required(model: ApimModel, required: bool = True) -> ApimModel:
    """Set `subscription_required` on every API."""
    return replace(model, apis=tuple(replace(api, subscription_required=required) for api in model.apis))


def with_stripped_subscription_key(model: ApimModel, strip: bool = True) -> ApimModel:
    """Every API removes the subscription key (header and query) before forwarding, or keeps it (APIM's default)."""
    return replace(model, apis=tuple(replace(api, strip_subscription_key=strip) for api in model.apis))


def build_profile(
    name: str,
    *,
    delete: bool = False,
    buffer_sse: bool = False,
    no_options: bool = False,
    hub: str | None = None,
) -> ApimModel:
    """A built-in profile by name (``websocket``, ``sse-lp`` or ``webpubsub``), optionally with the LongPolling
    ``DELETE /`` operation, with response buffering back on and/or without its OPTIONS operations.
    ``hub`` is the ``webpubsub`` profile's hub (default `DEFAULT_HUB`).
    Raises ValueError for an unknown name, and `ModelError` for a hub given to another profile or a bad hub name."""
    try:
        profile = ProfileName(name)
    except ValueError:
        choices = ", ".join(p.value for p in ProfileName)
        raise ValueError(f"unknown profile {name!r} (use {choices})") from None
    if profile is ProfileName.WEBPUBSUB:
        model = webpubsub_profile(DEFAULT_HUB if hub is None else hub)
    elif hub is not None:
        raise ModelError(f"--hub applies to the webpubsub profile only, not to {profile.value}")
    elif profile is ProfileName.WEBSOCKET:
        model = websocket_profile()
    else:
        model = sse_lp_profile()
    if delete:
        model = with_delete(model)
    if buffer_sse:
        model = with_buffered_responses(model)
    if no_options:
        model = without_options(model)
    return model
