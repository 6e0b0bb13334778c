"""What every client request on ``/client/`` shares: the service, auth, the connection its ``id=`` names, and binding a
transport to it (status codes and texts of ASP.NET Core's connection dispatcher, ``docs/protocol.md`` §3). Auth:
``Authorization: Bearer`` everywhere, the ``access_token`` query only on a WebSocket upgrade or an SSE GET, and only
without the header (trap 13).
"""

from __future__ import annotations

import logging

from aiohttp import web

from signalr.negotiate import TransportType
from signalr.query import split_query

from .answers import Refused, hub_query, plain_text, request_line, unauthorized
from .auth import CheckedTokens, ClientIdentity, Unauthorized, authenticate_client, bearer_token
from .connection import ClientConnection
from .hub import SERVICE_KEY, SignalRService
from .server_connections import request_headers

__all__ = ["authenticate", "check_transport", "client_query", "find_connection", "service_of", "start_transport"]

log = logging.getLogger("emulator")

# Query keys kept out of X-ASRS-Client-Query (and OpenConnection): the connection token and the access token are
# secrets, ``_`` is noise; these match exactly, as the service reads them. An APIM subscription key is a secret too and
# is dropped whatever its case.
_PRIVATE_QUERY_KEYS = frozenset({"id", "access_token", "_"})
_SUBSCRIPTION_KEY = "subscription-key"
# The token each connection's repeated requests (polls, POSTs) passed the full check with: bounded, and an entry holds
# no connection, so a forgotten connection's one ages out.
_CHECKED_TOKENS = CheckedTokens(8192)


def service_of(request: web.Request) -> SignalRService:
    return request.app[SERVICE_KEY]


def authenticate(request: web.Request, hub: str, *, allow_query: bool) -> ClientIdentity:
    try:
        return authenticate_client(request, hub, service_of(request).settings.access_key, allow_query=allow_query)
    except Unauthorized as exc:
        log.info("401 %s: %s", request_line(request), exc)
        raise Refused(unauthorized(exc)) from None


def client_query(request: web.Request) -> str:
    """``X-ASRS-Client-Query``: the connect query with ``?``, without the secrets and the cache buster."""
    kept = [
        part.raw
        for part in split_query(request.rel_url.raw_query_string)
        if part.raw and part.name not in _PRIVATE_QUERY_KEYS and part.name.lower() != _SUBSCRIPTION_KEY
    ]
    return "?" + "&".join(kept) if kept else ""


def find_connection(
    request: web.Request, *, allow_query_token: bool, repeated: bool = False
) -> tuple[ClientConnection, ClientIdentity]:
    """The connection named by ``id=`` and the request's identity, after auth. Refuses 400 / 401 / 404 with
    ASP.NET's texts. ``repeated``: a request a client makes again and again on its connection (a poll, a POST, a
    DELETE), whose token is checked in full once and then taken again while it is the same (:class:`CheckedTokens`);
    a WebSocket upgrade or an event stream comes once and is always checked in full."""
    token = request.rel_url.query.get("id")
    if not token:
        raise Refused(plain_text(400, "Connection ID required"))
    service = service_of(request)
    connection = service.lookup(token)
    hub = hub_query(request, default=connection.hub if connection else None)
    if connection is not None and repeated:
        identity = _checked_identity(request, token, hub, allow_query=allow_query_token)
    else:
        identity = authenticate(request, hub, allow_query=allow_query_token)
    if connection is None or connection.hub != hub:
        raise Refused(plain_text(404, "No Connection with that ID"))
    if connection.owner != identity.owner:
        # As ASP.NET Core refuses a request whose NameIdentifier differs from the negotiating user's: the token in
        # ``id=`` alone must not let another identity send as, read from or stop this connection.
        log.info(
            "403 %s: the access token is not the one of the identity that negotiated id=%s",
            request_line(request),
            connection.connection_id,
        )
        raise Refused(plain_text(403, "Forbidden"))
    return connection, identity


def _checked_identity(request: web.Request, connection_token: str, hub: str, *, allow_query: bool) -> ClientIdentity:
    """:func:`authenticate`, skipped while the request carries the very token this connection's last request passed
    the check with and that token is still within its ``nbf``/``exp``."""
    access_key = service_of(request).settings.access_key
    bearer = bearer_token(request, allow_query=allow_query)
    if bearer is not None:
        identity = _CHECKED_TOKENS.identity(connection_token, bearer, hub, access_key)
        if identity is not None:
            return identity
    identity = authenticate(request, hub, allow_query=allow_query)
    if bearer is not None:
        _CHECKED_TOKENS.remember(connection_token, bearer, hub, access_key, identity)
    return identity


def start_transport(
    connection: ClientConnection, transport: TransportType, request: web.Request, identity: ClientIdentity
) -> None:
    """Bind the transport. As in ASP.NET Core, the user is the one of the request that starts the transport."""
    connection.user_id = identity.user_id
    connection.claims = identity.claims
    connection.client_query = client_query(request)
    if service_of(request).settings.service_mode != "serverless":
        # An app server that carries the client gets them in OpenConnection; Serverless mode keeps no copy.
        connection.request_headers = request_headers(request.headers.items())
    connection.attach(transport)
    if transport is not TransportType.LONG_POLLING and request.transport is not None:
        # A WebSocket or an event stream owns its socket, so dropping the connection may cut it; polls come and go.
        connection.abort_transport = request.transport.abort


def check_transport(connection: ClientConnection, wanted: TransportType) -> None:
    if connection.transport is None:
        return
    if connection.transport is not wanted:
        raise Refused(plain_text(400, "Cannot change transports mid-connection"))
    if wanted is not TransportType.LONG_POLLING:
        # A second WebSocket or event stream on one id (§3.5).
        raise Refused(plain_text(409, "Connection is already active."))
