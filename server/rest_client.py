"""A client for the service's data-plane REST API, version 2022-06-01 (``docs/protocol.md`` §6.1).

Built directly on aiohttp rather than azure-core: the app server needs four POSTs, one token rule and one retry rule,
and aiohttp is already the stack of every server here (``docs/server.md`` explains the choice).

Retries are limited to failures *before* the request reached the service (connection refused, DNS): a send is not
idempotent, and retrying after a timeout or a dropped response could deliver a chat message twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from flow.hops import Lifeline
from flow.ids import FLOW_ID_HEADER
from signalr.connection_string import ConnectionString
from signalr.redact import redact_text
from signalr.tokens import DEFAULT_LIFETIME, mint_token

from .flow import AppFlow
from .hub import DeliveryFailed, HubAction, SendToAll, SendToConnection, SendToGroup, SendToUser

__all__ = ["API_VERSION", "RestError", "ServiceRestClient"]

API_VERSION = "2022-06-01"
_RETRY_DELAYS = (0.2, 0.5)
_REFRESH_MARGIN = 300  # re-mint a cached token this many seconds before it expires
_MAX_CACHED_TOKENS = 512
_MAX_ERROR_BODY = 4096

log = logging.getLogger("server.rest")


class RestError(DeliveryFailed):
    """A send that failed or was refused; ``status`` is the HTTP status, or ``None`` when no response arrived."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class _TokenCache:
    """Bearer tokens per audience, reused until :data:`_REFRESH_MARGIN` seconds before they expire."""

    def __init__(self, access_key: str, lifetime: int) -> None:
        self._access_key = access_key
        self._lifetime = lifetime
        self._tokens: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def get(self, audience: str) -> str:
        now = time.time()
        cached = self._tokens.get(audience)
        if cached is not None and cached[1] - now > _REFRESH_MARGIN:
            self._tokens.move_to_end(audience)
            return cached[0]
        token = mint_token(self._access_key, audience, lifetime=self._lifetime, now=now)
        self._tokens[audience] = (token, now + self._lifetime)
        self._tokens.move_to_end(audience)
        while len(self._tokens) > _MAX_CACHED_TOKENS:
            self._tokens.popitem(last=False)
        return token


class ServiceRestClient:
    """Sends hub messages through the REST API of the service named by ``connection``.

    Call :meth:`start` before the first send (inside the event loop) and :meth:`close` when done. Each send raises
    :class:`RestError` on failure; a ``202 Accepted`` means queued, not delivered (§6.1). With ``flow`` (flow on),
    each call is reported as a ``rest`` hop and carries its message's flow id as ``X-Flow-Id``.
    """

    def __init__(
        self, connection: ConnectionString, hub: str, *, timeout: float = 10.0, flow: AppFlow | None = None
    ) -> None:
        if connection.access_key is None:
            raise ValueError("the REST client needs an AccessKey connection string")
        self._base = connection.server_endpoint.rstrip("/")
        self._audience_base = connection.audience_base
        self._hub = quote(hub.lower(), safe="")
        self._tokens = _TokenCache(connection.access_key, DEFAULT_LIFETIME)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._flow = flow

    async def start(self) -> None:
        """Open the HTTP session; call once, inside the running event loop."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        """Close the HTTP session; pending sends fail."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, action: HubAction, flow_id: str | None = None) -> None:
        """Perform one :data:`~server.hub.HubAction` (the Serverless-mode :class:`~server.hub.ActionSink`)."""
        match action:
            case SendToAll():
                await self.send_to_all(action.target, action.arguments, flow_id=flow_id)
            case SendToConnection():
                await self.send_to_connection(action.connection_id, action.target, action.arguments, flow_id=flow_id)
            case SendToUser():
                await self.send_to_user(action.user_id, action.target, action.arguments, flow_id=flow_id)
            case SendToGroup():
                await self.send_to_group(action.group, action.target, action.arguments, flow_id=flow_id)

    async def send_to_all(
        self, target: str, arguments: Sequence[Any], excluded: Sequence[str] = (), *, flow_id: str | None = None
    ) -> None:
        """``POST /api/hubs/{hub}/:send``, optionally excluding connection ids."""
        query = "".join(f"&excluded={quote(c, safe='')}" for c in excluded)
        await self._post(f"api/hubs/{self._hub}/:send", target, arguments, query, flow_id=flow_id)

    async def send_to_connection(
        self, connection_id: str, target: str, arguments: Sequence[Any], *, flow_id: str | None = None
    ) -> None:
        """``POST /api/hubs/{hub}/connections/{connectionId}/:send``."""
        path = f"api/hubs/{self._hub}/connections/{quote(connection_id, safe='')}/:send"
        await self._post(path, target, arguments, flow_id=flow_id)

    async def send_to_user(
        self, user_id: str, target: str, arguments: Sequence[Any], *, flow_id: str | None = None
    ) -> None:
        """``POST /api/hubs/{hub}/users/{user}/:send``: every connection whose token names this user."""
        await self._post(
            f"api/hubs/{self._hub}/users/{quote(user_id, safe='')}/:send", target, arguments, flow_id=flow_id
        )

    async def send_to_group(
        self, group: str, target: str, arguments: Sequence[Any], *, flow_id: str | None = None
    ) -> None:
        """``POST /api/hubs/{hub}/groups/{group}/:send``."""
        await self._post(
            f"api/hubs/{self._hub}/groups/{quote(group, safe='')}/:send", target, arguments, flow_id=flow_id
        )

    async def _post(
        self, path: str, target: str, arguments: Sequence[Any], extra_query: str = "", *, flow_id: str | None = None
    ) -> None:
        flow = self._flow
        if flow is None:
            await self._post_once(path, target, arguments, extra_query, None)
            return
        started = time.monotonic()
        status: int | None = None
        try:
            status = await self._post_once(path, target, arguments, extra_query, flow_id)
        except RestError as exc:
            status = exc.status
            raise
        finally:
            outcome = str(status) if status is not None else "no answer"
            label = f"POST /{path} {outcome}: {target}"
            flow.emit(Lifeline.APP, Lifeline.SERVICE, "rest", label, started=started, status=status, flow=flow_id)

    async def _post_once(
        self, path: str, target: str, arguments: Sequence[Any], extra_query: str, flow_id: str | None
    ) -> int:
        """One send (retried only while nothing reached the service); returns the 2xx status."""
        if self._session is None:
            raise RestError("the REST client is not started")
        url = f"{self._base}/{path}?api-version={API_VERSION}{extra_query}"
        # aud as the .NET Management SDK signs it: Endpoint scheme and host (no port), path and api-version (§6.1,
        # trap 17); the service compares it to the request URL.
        audience = f"{self._audience_base}{path}?api-version={API_VERSION}"
        body = json.dumps({"target": target, "arguments": list(arguments)}, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self._tokens.get(audience)}"}
        if flow_id is not None:
            headers[FLOW_ID_HEADER] = flow_id
        started = time.monotonic()
        for attempt in range(len(_RETRY_DELAYS) + 1):
            try:
                async with self._session.post(URL(url, encoded=True), data=body, headers=headers) as response:
                    elapsed = (time.monotonic() - started) * 1000
                    if 200 <= response.status < 300:
                        log.info("REST POST /%s -> %d (%.0f ms)", path, response.status, elapsed)
                        return response.status
                    detail = await _error_detail(response)
                    log.warning("REST POST /%s -> %d (%.0f ms): %s", path, response.status, elapsed, detail)
                    raise RestError(f"REST POST /{path} returned {response.status}: {detail}", response.status)
            except aiohttp.ClientConnectorError as exc:
                # Nothing reached the service yet, so a retry cannot duplicate the message.
                if attempt < len(_RETRY_DELAYS):
                    log.warning("REST POST /%s: cannot connect (%s), retrying", path, exc.strerror or exc)
                    await asyncio.sleep(_RETRY_DELAYS[attempt])
                    continue
                raise RestError(f"REST POST /{path}: cannot connect to {self._base}: {exc.strerror or exc}") from None
            except TimeoutError:
                raise RestError(f"REST POST /{path}: no response within {self._timeout.total} s") from None
            except aiohttp.ClientError as exc:
                raise RestError(f"REST POST /{path}: {type(exc).__name__}: {redact_text(str(exc))}") from None
        raise AssertionError("unreachable: the last attempt returns or raises")


async def _error_detail(response: aiohttp.ClientResponse) -> str:
    """The ``message`` of a 2022-06-01 ``ErrorDetail`` body, else the start of the body as text."""
    raw = await response.content.read(_MAX_ERROR_BODY)
    text = raw.decode("utf-8", errors="replace")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("message"), str):
        text = obj["message"]
    text = " ".join(text.split())[:300]
    return redact_text(text) or response.reason or "no details"
