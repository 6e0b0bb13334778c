"""The responses the gateway itself produces, byte for byte as APIM sends them (docs/apim.md §2, §3).

Everything else the client sees comes from the backend, untouched.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

__all__ = [
    "ACCESS_DENIED_INVALID_KEY",
    "ACCESS_DENIED_MISSING_KEY",
    "BAD_REQUEST",
    "RESOURCE_NOT_FOUND",
    "GatewayResponse",
    "access_denied",
    "bad_request",
    "internal_server_error",
    "resource_not_found",
]

RESOURCE_NOT_FOUND = b'{ "statusCode": 404, "message": "Resource not found" }'
BAD_REQUEST = b'{ "statusCode": 400, "message": "Bad request" }'
ACCESS_DENIED_MISSING_KEY = (
    b'{ "statusCode": 401, "message": "Access denied due to missing subscription key. '
    b'Make sure to include subscription key when making requests to an API." }'
)
ACCESS_DENIED_INVALID_KEY = (
    b'{ "statusCode": 401, "message": "Access denied due to invalid subscription key. '
    b'Make sure to provide a valid key for an active subscription." }'
)


@dataclass(frozen=True)
class GatewayResponse:
    """A complete response produced by the gateway (not the backend).

    headers: besides these, the HTTP layer adds only Content-Length (= len(body)) and Date.
    """

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


_JSON = ("Content-Type", "application/json")


def resource_not_found() -> GatewayResponse:
    """404 for a path that matches no API or no operation [field: widely quoted body]."""
    return GatewayResponse(404, "Not Found", (_JSON,), RESOURCE_NOT_FOUND)


def access_denied(*, missing: bool, realm: str, header_name: str) -> GatewayResponse:
    """401 for a missing or an invalid subscription key [field].

    realm: the gateway's base URL + "/" + the API suffix.
    header_name: the API's subscription key header name.
    """
    challenge = f'AzureApiManagementKey realm="{realm}",name="{header_name}",type="header"'
    body = ACCESS_DENIED_MISSING_KEY if missing else ACCESS_DENIED_INVALID_KEY
    return GatewayResponse(401, "Access Denied", (_JSON, ("WWW-Authenticate", challenge)), body)


def bad_request() -> GatewayResponse:
    """400 for a request the gateway cannot forward as received (e.g. a header value with a control character or
    an undecodable byte) [unverified: APIM's own body for this case is not documented]."""
    return GatewayResponse(400, "Bad Request", (_JSON,), BAD_REQUEST)


def internal_server_error(activity_id: str | None = None) -> GatewayResponse:
    """500 for a backend timeout [field], also used for an unreachable backend [unverified]."""
    activity = activity_id or str(uuid.uuid4())
    body = f'{{ "statusCode": 500, "message": "Internal server error", "activityId": "{activity}" }}'
    return GatewayResponse(500, "Internal Server Error", (_JSON,), body.encode())
