"""Posting client events to the event handler, as the service does
(https://learn.microsoft.com/azure/azure-web-pubsub/reference-cloud-events).

Before the first event of a hub goes to a handler, abuse protection: ``OPTIONS`` on the template with ``{event}`` =
``validate`` and ``WebHook-Request-Origin: <the emulator's host>``; delivery is allowed when the answer is 2xx with
``WebHook-Allowed-Origin`` ``*`` or that host (https://learn.microsoft.com/azure/azure-web-pubsub/concept-service-internals
#upstream-and-validation). An allowed result is remembered; a refusal is not, so a handler that starts later is
tried again on the next event.

Every event is a CloudEvents POST in binary mode (:mod:`webpubsub.events` builds the headers, signed with the
AccessKey). ``connect`` and user events are blocking: :meth:`EventHandlerClient.post` returns the answer (bounded in
size and time) or raises :class:`HandlerFailed` with a reason the client can be told. ``connected`` and
``disconnected`` only get logged when they fail.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
import uuid
from dataclasses import dataclass

import aiohttp

from flow.ids import FLOW_ID_HEADER
from signalr.redact import redact_url
from webpubsub.events import (
    ABUSE_PROTECTION_METHOD,
    AWPS_VERSION,
    HEADER_AWPS_VERSION,
    MAX_EVENT_BODY,
    WEBHOOK_REQUEST_ORIGIN,
    EventKind,
    abuse_protection_allows,
    event_headers,
)

from .flow import WebPubSubFlow
from .settings import EventHandlerTemplate, WebPubSubSettings

__all__ = ["EventAnswer", "EventHandlerClient", "HandlerFailed"]

log = logging.getLogger("webpubsub.emulator")


class HandlerFailed(Exception):
    """The event handler could not be reached, refused the event, or answered something unusable; ``status`` is its
    HTTP status when it answered at all."""

    def __init__(self, message: str, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class EventAnswer:
    """A 2xx answer to an event: status, Content-Type, body (at most :data:`MAX_EVENT_BODY` bytes) and the
    ``ce-connectionState`` it set, if any."""

    status: int
    content_type: str
    body: bytes
    states: str | None


@dataclass(frozen=True)
class EventTarget:
    """Who an event is about."""

    hub: str
    connection_id: str
    user_id: str | None
    subprotocol: str | None
    states: str | None


class EventHandlerClient:
    """One HTTP client for every event handler of the emulator; :meth:`close` it when the service stops."""

    def __init__(self, settings: WebPubSubSettings, origin: str, flow: WebPubSubFlow | None = None) -> None:
        """``flow``: the service's hop events (off when None or disabled)."""
        self._settings = settings
        self._flow = flow if flow is not None else WebPubSubFlow(None)
        self._origin = origin
        self._session: aiohttp.ClientSession | None = None
        self._allowed: set[tuple[str, str]] = set()

    def handles(self, hub: str) -> bool:
        """Whether ``hub`` has an event handler."""
        return self._settings.handler_for(hub) is not None

    def _client(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            # No cookies, no proxies from the environment: events go where the template says.
            session = self._session = aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(), trust_env=False, auto_decompress=False
            )
        return session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _read_bounded(self, response: aiohttp.ClientResponse) -> bytes:
        body = bytearray()
        async for chunk in response.content.iter_chunked(65536):
            body += chunk
            if len(body) > MAX_EVENT_BODY:
                raise HandlerFailed(
                    f"The event handler's answer is larger than {MAX_EVENT_BODY} bytes.", response.status
                )
        return bytes(body)

    async def _validate(self, handler: EventHandlerTemplate, hub: str) -> None:
        key = (handler.url_template, hub)
        if key in self._allowed:
            return
        url = handler.url(hub, "validate")
        timeout = aiohttp.ClientTimeout(total=self._settings.event_handler_timeout)
        headers = {WEBHOOK_REQUEST_ORIGIN: self._origin, HEADER_AWPS_VERSION: AWPS_VERSION}
        try:
            async with self._client().request(
                ABUSE_PROTECTION_METHOD, url, headers=headers, timeout=timeout, allow_redirects=False
            ) as response:
                await self._read_bounded(response)
                allowed = abuse_protection_allows(response.status, response.headers, self._origin)
                status = response.status
        except HandlerFailed:
            raise
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise HandlerFailed(f"The event handler {redact_url(url)} is unreachable ({_reason(exc)}).") from None
        if not allowed:
            raise HandlerFailed(
                f"The event handler {redact_url(url)} did not allow delivery (abuse protection: OPTIONS answered "
                f"{status} without WebHook-Allowed-Origin for {self._origin})."
            )
        log.info("event handler %s allowed delivery for hub %s", redact_url(url), hub)
        self._allowed.add(key)

    async def post(
        self,
        target: EventTarget,
        kind: EventKind,
        body: bytes,
        *,
        event_name: str = "",
        content_type: str = "application/json; charset=utf-8",
        flow_id: str | None = None,
    ) -> EventAnswer:
        """Deliver one event and return the handler's 2xx answer. Raises :class:`HandlerFailed` when there is no
        handler for the hub, abuse protection fails, the handler cannot be reached in time, answers non-2xx (its
        status and body are kept) or answers more than :data:`MAX_EVENT_BODY` bytes.

        While flow is on the POST is reported (``upstream``, status and ms) and ``flow_id`` rides on it as
        ``X-Flow-Id``."""
        flow = self._flow
        if not flow.enabled:
            return await self._post(target, kind, body, event_name, content_type, None)
        name = event_name if kind is EventKind.USER else kind.value
        started = time.monotonic()
        try:
            answer = await self._post(target, kind, body, event_name, content_type, flow_id)
        except HandlerFailed as exc:
            flow.event_posted(target.connection_id, name, exc.status, started, flow_id, failed=True)
            raise
        flow.event_posted(target.connection_id, name, answer.status, started, flow_id)
        return answer

    async def _post(
        self,
        target: EventTarget,
        kind: EventKind,
        body: bytes,
        event_name: str,
        content_type: str,
        flow_id: str | None,
    ) -> EventAnswer:
        handler = self._settings.handler_for(target.hub)
        name = event_name if kind is EventKind.USER else kind.value
        if handler is None:
            raise HandlerFailed(f"No event handler is registered for hub {target.hub}.")
        await self._validate(handler, target.hub)
        url = handler.url(target.hub, name)
        headers = event_headers(
            hub=target.hub,
            kind=kind,
            connection_id=target.connection_id,
            access_keys=[self._settings.access_key],
            event_id=str(uuid.uuid4()),
            time=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            origin=self._origin,
            event_name=event_name,
            user_id=target.user_id,
            subprotocol=target.subprotocol,
            states=target.states,
            content_type=content_type,
        )
        if flow_id is not None:
            headers[FLOW_ID_HEADER] = flow_id
        timeout = aiohttp.ClientTimeout(total=self._settings.event_handler_timeout)
        try:
            async with self._client().post(
                url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            ) as response:
                answer = await self._read_bounded(response)
                status = response.status
                answer_type = response.headers.get("Content-Type", "")
                states = response.headers.get("ce-connectionState")
        except HandlerFailed:
            raise
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise HandlerFailed(f"The event handler {redact_url(url)} is unreachable ({_reason(exc)}).") from None
        if not 200 <= status < 300:
            raise HandlerFailed(f"The event handler answered {status} to the {name} event.", status, answer)
        return EventAnswer(status, answer_type, answer, states)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "no answer in time"
    return type(exc).__name__
