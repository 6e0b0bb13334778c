"""Typed keys of what the aiohttp application holds: the settings, the hub and the REST client."""

from __future__ import annotations

from aiohttp import web

from .config import Settings
from .hub import ChatHub
from .rest_client import ServiceRestClient

__all__ = ["HUB", "REST", "SETTINGS"]

SETTINGS = web.AppKey("settings", Settings)
HUB = web.AppKey("hub", ChatHub)
REST = web.AppKey("rest", ServiceRestClient)
