"""Typed keys of what the aiohttp application holds: the settings, the hub, and the mode's link to the service (the REST
client in Serverless mode, the server connections in Default mode, the Web PubSub SDK client for Azure Web PubSub)."""

from __future__ import annotations

from aiohttp import web
from azure.messaging.webpubsubservice.aio import WebPubSubServiceClient

from .config import Settings
from .hub import ChatHub
from .rest_client import ServiceRestClient
from .server_connections import ServerConnections

__all__ = ["CONNECTED", "HUB", "REST", "SERVER_CONNECTIONS", "SETTINGS", "WEBPUBSUB_CLIENT", "ConnectedSet"]


class ConnectedSet:
    """Connection ids whose upstream ``connected`` event arrived and whose ``disconnected`` did not, bounded: the
    oldest are forgotten past ``limit`` (a forgotten client's invocations are then refused, never accepted)."""

    def __init__(self, limit: int = 100_000) -> None:
        self._ids: dict[str, None] = {}
        self._limit = limit

    def add(self, connection_id: str) -> None:
        self._ids[connection_id] = None
        if len(self._ids) > self._limit:
            del self._ids[next(iter(self._ids))]

    def discard(self, connection_id: str) -> None:
        self._ids.pop(connection_id, None)

    def __contains__(self, connection_id: object) -> bool:
        return connection_id in self._ids


SETTINGS = web.AppKey("settings", Settings)
HUB = web.AppKey("hub", ChatHub)
REST = web.AppKey("rest", ServiceRestClient)
SERVER_CONNECTIONS = web.AppKey("server_connections", ServerConnections)
CONNECTED = web.AppKey("connected", ConnectedSet)
WEBPUBSUB_CLIENT = web.AppKey("webpubsub_client", WebPubSubServiceClient)
