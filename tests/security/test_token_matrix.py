"""The token matrix: every kind of bad access token against every surface of the service that takes one.

Surfaces: client negotiate, WebSocket connect (header and ``access_token`` query), SSE connect, LongPolling poll, the
REST API, and the server-connection endpoint of Default mode. Variants: forged (other key), expired, not yet valid,
``alg: none``, an RS256 header over an HS256 signature (algorithm confusion), no audience, another hub's audience, a
REST audience, a tampered payload, undecodable bytes, an exp no float holds, a cut token, no token at all. Only the
good token gets in; every bad one gets 401 (never a 500, never a connection).
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from signalr.tokens import mint_token
from tests.support.stack import EmulatorProcess, start_emulator

KEY = "TokenMatrixKey0123456789abcdefghijklmnopqrstuvw"
OTHER_KEY = "NotTheServiceKey0123456789abcdefghijklmnopqrstu"
CLIENT_AUD = "http://127.0.0.1/client/?hub=chat"
SERVER_AUD = "http://127.0.0.1/server/?hub=chat"


def _b64(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _tamper(token: str) -> str:
    header, _, signature = token.split(".")
    return f"{header}.{_b64({'aud': CLIENT_AUD, 'exp': 4_000_000_000, 'nameid': 'admin'})}.{signature}"


def variants(aud: str) -> dict[str, str | None]:
    """Bad tokens for a surface whose good token has audience ``aud`` (``None``: no token at all)."""
    now = time.time()
    good = mint_token(KEY, aud)
    return {
        "forged": mint_token(OTHER_KEY, aud),
        "expired": mint_token(KEY, aud, lifetime=60, now=now - 3600),
        "not-yet-valid": mint_token(KEY, aud, now=now + 3600),
        "alg-none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64({'aud': aud, 'exp': now + 600})}.",
        "alg-confusion": f"{_b64({'alg': 'RS256', 'typ': 'JWT'})}.{good.split('.')[1]}.{good.split('.')[2]}",
        "no-audience": mint_token(KEY, "", claims={}).replace(_b64({}), _b64({})),
        "other-hub": mint_token(KEY, aud.replace("hub=chat", "hub=other").replace("/hubs/chat/", "/hubs/other/")),
        "rest-audience": mint_token(KEY, "http://127.0.0.1/api/hubs/chat/:send?api-version=2022-06-01"),
        "tampered": _tamper(good),
        "undecodable": good[:-4] + "\u00ff\u00fe==",
        "huge-exp": f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64({'aud': aud, 'exp': 10**400})}.x",
        "cut": good[: len(good) // 2],
        "missing": None,
    }


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    running = start_emulator("--service-mode", "classic", "--access-key", KEY)
    yield running
    running.stop()


def raw_request(port: int, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> int:
    """One HTTP/1.1 request over a plain socket (so undecodable header bytes go out as they are); the status."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    return int(head.split(b" ", 2)[1])


def _bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


WS_HEADERS = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}
WS_HEADERS["Sec-WebSocket-Key"] = base64.b64encode(b"0123456789abcdef").decode()

Surface = Callable[[EmulatorProcess, str | None], int]
SURFACES: dict[str, tuple[str, Surface, int]] = {
    # name: (audience, request, status of the good token)
    "negotiate": (
        CLIENT_AUD,
        lambda e, t: raw_request(e.port, "POST", "/client/negotiate?hub=chat", _bearer(t)),
        200,
    ),
    "ws-header": (
        CLIENT_AUD,
        lambda e, t: raw_request(e.port, "GET", "/client/?hub=chat", {**WS_HEADERS, **_bearer(t)}),
        101,
    ),
    "ws-query": (
        CLIENT_AUD,
        lambda e, t: raw_request(
            e.port, "GET", "/client/?hub=chat" + (f"&access_token={t}" if t is not None else ""), WS_HEADERS
        ),
        101,
    ),
    "rest-send": (
        "http://127.0.0.1/api/hubs/chat/:send?api-version=2022-06-01",
        lambda e, t: raw_request(
            e.port,
            "POST",
            "/api/hubs/chat/:send?api-version=2022-06-01",
            {"Content-Type": "application/json", **_bearer(t)},
            b'{"target":"x","arguments":[]}',
        ),
        202,
    ),
    "server-connection": (
        SERVER_AUD,
        lambda e, t: raw_request(e.port, "GET", "/server/?hub=chat&cid=1", {**WS_HEADERS, **_bearer(t)}),
        101,
    ),
}


@pytest.mark.parametrize("surface", list(SURFACES))
def test_only_the_good_token_gets_in(emulator: EmulatorProcess, surface: str) -> None:
    aud, request, good_status = SURFACES[surface]
    assert request(emulator, mint_token(KEY, aud)) == good_status
    refused = {name: request(emulator, token) for name, token in variants(aud).items()}
    if surface == "rest-send":
        # The REST audience is the request URL: the "rest-audience" variant is this surface's good token.
        refused.pop("rest-audience")
    if surface == "ws-query":
        # Undecodable bytes in the request line itself: the HTTP parser refuses the request before any token check.
        assert refused.pop("undecodable") == 400
    assert refused == dict.fromkeys(refused, 401)


@pytest.mark.parametrize(("connect", "accept"), [("sse", "text/event-stream"), ("longpolling", "*/*")])
def test_connect_requests_with_bad_tokens_never_reach_a_connection(
    emulator: EmulatorProcess, connect: str, accept: str
) -> None:
    """SSE and LongPolling connects need a negotiated id; with a bad token they are refused before the id matters."""
    good = mint_token(KEY, CLIENT_AUD)
    body = raw_negotiate(emulator, good)
    target = f"/client/?hub=chat&id={body['connectionToken']}"
    for name, token in variants(CLIENT_AUD).items():
        status = raw_request(emulator.port, "GET", target, {"Accept": accept, **_bearer(token)})
        assert status == 401, name


def raw_negotiate(emulator: EmulatorProcess, token: str) -> dict[str, str]:
    request = (
        f"POST /client/negotiate?hub=chat&negotiateVersion=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", emulator.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    parsed: dict[str, str] = json.loads(body)
    return parsed
