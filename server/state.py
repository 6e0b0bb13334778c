"""Typed keys of what the aiohttp application holds: the settings, the hub, and the mode's link to the service (the REST
client in Serverless mode, the server connections in Default mode)."""

from __future__ import annotations

from aiohttp import web

from .config import Settings
from .hub import ChatHub
from .rest_client import ServiceRestClient
from .server_connections import ServerConnections

__all__ = ["HUB", "REST", "SERVER_CONNECTIONS", "SETTINGS"]

SETTINGS = web.AppKey("settings", Settings)
HUB = web.AppKey("hub", ChatHub)
REST = web.AppKey("rest", ServiceRestClient)
SERVER_CONNECTIONS = web.AppKey("server_connections", ServerConnections)
