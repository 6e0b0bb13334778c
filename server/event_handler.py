"""``/eventhandler``: Azure Web PubSub's event handler for the Chatroom (CloudEvents in HTTP binary mode,
https://learn.microsoft.com/azure/azure-web-pubsub/reference-cloud-events, read by :mod:`webpubsub.events`).

``OPTIONS`` is the abuse-protection check: a request with ``WebHook-Request-Origin`` is answered 200 with
``WebHook-Allowed-Origin: *``, one without it 400.

``POST``, in this order: ``ce-connectionId`` present (400), ``ce-signature`` is the HMAC of that id under our AccessKey
(401, so a forged request never reaches anything else), the body fits :data:`webpubsub.events.MAX_EVENT_BODY` (413),
the other attributes are a Web PubSub event for our hub (400). Then:

- ``connect`` → 200 ``{}``: accepted, the user stays the one the access token names;
- ``connected`` / ``disconnected`` → 204, logged;
- user event ``broadcastMessage`` with JSON ``{"name": str, "message": str}`` → ``send_to_all`` of
  ``{"name", "message", "target": "broadcastMessage"}``; ``echo`` → ``send_to_connection`` to the caller with
  ``" (echo from server)"`` appended and ``"target": "echo"``; both answer 204 once the service took the send (202),
  502 when it did not;
- any other event, or data of another shape → 400 with a plain-text reason (the service then fails the caller's
  request).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web
from azure.core.exceptions import AzureError, HttpResponseError

from flow.hops import Lifeline
from flow.ids import FLOW_ID_HEADER
from signalr.redact import redact_text
from webpubsub.events import (
    HEADER_CONNECTION_ID,
    HEADER_SIGNATURE,
    MAX_EVENT_BODY,
    WEBHOOK_REQUEST_ORIGIN,
    EventKind,
    EventRequest,
    InvalidEvent,
    abuse_protection_headers,
    decode_user_data,
    parse_connect_body,
    parse_disconnected_body,
    parse_event_request,
    signature_matches,
)

from .flow import FLOW, AppFlow, header_flow_id
from .hub import ECHO_SUFFIX
from .state import SETTINGS, WEBPUBSUB_CLIENT
from .upstream import read_body

__all__ = ["BROADCAST_EVENT", "ECHO_EVENT", "EVENT_HANDLER_PATH", "handle_event", "handle_event_options"]

EVENT_HANDLER_PATH = "/eventhandler"
BROADCAST_EVENT = "broadcastMessage"
ECHO_EVENT = "echo"
_MAX_ID = 256
_MAX_NAME = 128

log = logging.getLogger("server.eventhandler")


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message + "\n", content_type="text/plain")


def _plain(value: str, limit: int = 64) -> str:
    """A header value made safe for a log line or an error message."""
    return repr(value[:limit])


async def handle_event_options(request: web.Request) -> web.Response:
    """``OPTIONS /eventhandler``: the abuse-protection handshake."""
    allowed = abuse_protection_headers(request.headers)
    if allowed is None:
        log.warning("abuse protection refused (400): no %s header", WEBHOOK_REQUEST_ORIGIN)
        return _text(400, f"Abuse protection: the {WEBHOOK_REQUEST_ORIGIN} header is missing.")
    log.info("abuse protection: delivery allowed for %s", _plain(request.headers[WEBHOOK_REQUEST_ORIGIN]))
    return web.Response(status=200, headers=allowed)


def _chat_message(request: EventRequest) -> tuple[str, str]:
    """``name`` and ``message`` of a chat event's JSON data; raises :class:`InvalidEvent` for anything else."""
    data_type, data = decode_user_data(request.content_type, request.body)
    if data_type != "json":
        raise InvalidEvent(f"The {request.event_name} event needs JSON data (dataType json), not {data_type}.")
    if not isinstance(data, dict):
        raise InvalidEvent(f'The {request.event_name} event needs a JSON object {{"name": …, "message": …}}.')
    name, message = data.get("name"), data.get("message")
    if not isinstance(name, str) or not isinstance(message, str):
        raise InvalidEvent(f'The {request.event_name} event needs "name" and "message" strings.')
    if not name or len(name) > _MAX_NAME:
        raise InvalidEvent(f'The {request.event_name} event\'s "name" must have 1 to {_MAX_NAME} characters.')
    return name, message


def _failure(exc: BaseException) -> str:
    """The first line of what went wrong with a send, secrets redacted."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    lines = str(exc).splitlines()
    return f"{type(exc).__name__} {redact_text(lines[0]) if lines else ''}".rstrip()


async def _send(request: web.Request, event: EventRequest, name: str, message: str) -> web.Response:
    """Send the chat message of a ``broadcastMessage`` (to all) or an ``echo`` (to the caller) through the SDK."""
    settings = request.app[SETTINGS]
    client = request.app[WEBPUBSUB_CLIENT]
    flow = request.app.get(FLOW)
    # Flow on: the send carries the flow id the event came with, and is reported (status, ms) as a `rest` hop.
    options: dict[str, Any] = {}
    flow_id: str | None = None
    statuses: list[int] = []
    if flow is not None:
        flow_id = _event_arrived(flow, request, event)
        # The SDK's `cls` hook sees the pipeline response: it gives the send's HTTP status.
        options["cls"] = lambda response, *_: statuses.append(response.http_response.status_code)
        if flow_id is not None:
            options["headers"] = {FLOW_ID_HEADER: flow_id}
    started = time.monotonic()
    try:
        async with asyncio.timeout(settings.rest_timeout):
            if event.event_name == BROADCAST_EVENT:
                payload = {"name": name, "message": message, "target": BROADCAST_EVENT}
                await client.send_to_all(payload, content_type="application/json", **options)
            else:
                payload = {"name": name, "message": message + ECHO_SUFFIX, "target": ECHO_EVENT}
                await client.send_to_connection(
                    event.connection_id, payload, content_type="application/json", **options
                )
    except (AzureError, TimeoutError) as exc:
        log.error("%s from %s: the send failed: %s", event.event_name, _plain(event.connection_id), _failure(exc))
        if flow is not None:
            failed = exc.status_code if isinstance(exc, HttpResponseError) else None
            _report_send(flow, event, failed, started, flow_id)
        return _text(502, f"The {event.event_name} message could not be sent through Azure Web PubSub.")
    if flow is not None:
        _report_send(flow, event, statuses[0] if statuses else None, started, flow_id)
    user = event.user_id or "anonymous"
    log.info("%s from %s (user %s)", event.event_name, _plain(event.connection_id), _plain(user))
    return web.Response(status=204)


def _event_arrived(flow: AppFlow, request: web.Request, event: EventRequest) -> str | None:
    """Report a chat event as it arrives (before the send); returns its flow id (the one the service passed)."""
    flow_id = header_flow_id(request)
    flow.emit(
        Lifeline.SERVICE,
        Lifeline.APP,
        "upstream",
        f"POST /eventhandler user event {event.event_name}",
        started=request.get(_ARRIVED),
        flow=flow_id,
        connection_id=event.connection_id,
        size=len(event.body),
    )
    request[_REPORTED] = True
    return flow_id


def _report_send(flow: AppFlow, event: EventRequest, status: int | None, started: float, flow_id: str | None) -> None:
    call = "send_to_all" if event.event_name == BROADCAST_EVENT else "send_to_connection"
    outcome = str(status) if status is not None else "no answer"
    flow.emit(
        Lifeline.APP,
        Lifeline.SERVICE,
        "rest",
        f"{call} {outcome}: {event.event_name}",
        started=started,
        status=status,
        flow=flow_id,
    )


# Set on a request whose hop was reported on arrival (a chat event), so it is not reported again at its end.
_REPORTED = web.RequestKey("flow_reported", bool)
# When the request arrived (time.monotonic()), kept while flow is on.
_ARRIVED = web.RequestKey("flow_arrived", float)


async def handle_event(request: web.Request) -> web.Response:
    """``POST /eventhandler[/…]``: one CloudEvent; see the module docstring for the checks and each status.

    Flow on (``server/flow.py``): a chat event is reported as it arrives, every other request once answered: a
    system event (connect, connected, disconnected) as ``connect``, a refusal as ``upstream`` with its status."""
    flow = request.app.get(FLOW)
    if flow is None:
        return await _handle(request)
    started = request[_ARRIVED] = time.monotonic()
    response = await _handle(request)
    if not request.get(_REPORTED, False):
        headers = request.headers
        event = headers.get("ce-type", "?")[:64]
        # A connection's system events set it up or end it: they never belong to a message's journey.
        system = event.startswith("azure.webpubsub.sys.") and response.status < 300
        flow.emit(
            Lifeline.SERVICE,
            Lifeline.APP,
            "connect" if system else "upstream",
            f"POST /eventhandler {event} {response.status}",
            started=started,
            status=response.status,
            flow=header_flow_id(request),
            connection_id=headers.get(HEADER_CONNECTION_ID) if response.status != 400 else None,
        )
    return response


async def _handle(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    connection_id = request.headers.get(HEADER_CONNECTION_ID, "")
    if not connection_id or len(connection_id) > _MAX_ID or not connection_id.isprintable():
        log.warning("event refused (400): missing or invalid %s", HEADER_CONNECTION_ID)
        return _text(400, f"Missing or invalid {HEADER_CONNECTION_ID} header.")
    if not signature_matches(request.headers.get(HEADER_SIGNATURE, ""), connection_id, settings.access_key):
        log.warning("event refused (401): %s does not match connection %s", HEADER_SIGNATURE, _plain(connection_id))
        return _text(401, f"Missing or invalid {HEADER_SIGNATURE} header.")
    body = await read_body(request, MAX_EVENT_BODY)
    if body is None:
        log.warning("event refused (413): body larger than %d bytes", MAX_EVENT_BODY)
        return _text(413, f"The event body is larger than {MAX_EVENT_BODY} bytes.")
    try:
        event = parse_event_request(request.headers, body)
        if event.hub.lower() != settings.hub.lower():
            raise InvalidEvent(f"ce-hub {_plain(event.hub)} is not this server's hub {settings.hub!r}.")
        if event.kind is EventKind.CONNECT:
            parse_connect_body(body)
            log.info("connect: %s (user %s) accepted", _plain(connection_id), _plain(event.user_id or "anonymous"))
            return web.json_response({})
        if event.kind is EventKind.CONNECTED:
            log.info("connected: %s (user %s)", _plain(connection_id), _plain(event.user_id or "anonymous"))
            return web.Response(status=204)
        if event.kind is EventKind.DISCONNECTED:
            reason = parse_disconnected_body(body)
            log.info("disconnected: %s (%s)", _plain(connection_id), _plain(redact_text(reason or "no reason"), 200))
            return web.Response(status=204)
        if event.event_name not in (BROADCAST_EVENT, ECHO_EVENT):
            raise InvalidEvent(
                f"Unknown event {_plain(event.event_name)}: this hub handles {BROADCAST_EVENT!r} and {ECHO_EVENT!r}."
            )
        name, message = _chat_message(event)
    except InvalidEvent as exc:
        log.warning("event refused (400): %s", redact_text(str(exc)))
        return _text(400, str(exc))
    return await _send(request, event, name, message)
