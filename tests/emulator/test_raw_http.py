"""The emulator process under raw bytes: credentials that are not UTF-8, absurd claims and odd queries end as 400 or
401 on every endpoint (never 500), and no connection token, access token or key reaches its stderr."""

from __future__ import annotations

import asyncio
import base64
import os
import re
from collections.abc import Callable

import aiohttp
import jwt

from signalr.redact import connection_token_tag
from signalr.tokens import mint_token

from .conftest import HANDSHAKE, EmulatorProcess

RunEmulator = Callable[..., EmulatorProcess]

WS_HEADERS = (
    b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)) + b"\r\n"
)
# (method, target, extra header lines): every route of the emulator that takes a token.
ENDPOINTS: list[tuple[bytes, bytes, bytes]] = [
    (b"POST", b"/client/negotiate?hub=chat&negotiateVersion=1", b""),
    (b"GET", b"/client/?hub=chat&id=unknown", b""),
    (b"GET", b"/client/?hub=chat&id=unknown", b"Accept: text/event-stream\r\n"),
    (b"GET", b"/client/?hub=chat", WS_HEADERS),
    (b"GET", b"/client/?hub=chat&id=unknown", WS_HEADERS),
    (b"POST", b"/client/?hub=chat&id=unknown", b""),
    (b"DELETE", b"/client/?hub=chat&id=unknown", b""),
    (b"GET", b"/server/?hub=chat", WS_HEADERS),
    (b"POST", b"/api/hubs/chat/:send?api-version=2022-06-01", b""),
    (b"POST", b"/api/v1/hubs/chat", b""),
    (b"HEAD", b"/api/hubs/chat/connections/x?api-version=2022-06-01", b""),
]


async def raw_status(port: int, method: bytes, target: bytes, headers: bytes, body: bytes = b"") -> int:
    """Send one request as raw bytes and return the status of its answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            method + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n" + headers + b"\r\n" + body
        )
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 5)
        assert line.startswith(b"HTTP/1."), line
        return int(line.split()[1])
    finally:
        writer.close()


def huge_exp_token(access_key: str, audience: str) -> str:
    return jwt.encode({"aud": audience, "exp": 10**400}, access_key.encode(), algorithm="HS256")


async def test_hostile_credentials_are_400_or_401_on_every_endpoint(run_emulator: RunEmulator) -> None:
    emulator = run_emulator("--service-mode", "default")
    failures: list[str] = []
    for method, target, extra in ENDPOINTS:
        path = target.split(b"?")[0].decode()
        audience = "http://127.0.0.1" + (path if path.startswith("/api") else f"{path.rstrip('/')}/?hub=chat")
        cases = {
            "non-utf8 header": (target, b"Authorization: Bearer \xff\xfe\x80abc\r\n"),
            "non-utf8 header scheme": (target, b"Authorization: \xc3\x28 x\r\n"),
            "non-utf8 query token": (target + b"&access_token=%FF%FE%80", b""),
            "raw non-utf8 query token": (target + b"&access_token=\xff\xfe", b""),
            "exp 10**400": (
                target,
                b"Authorization: Bearer " + huge_exp_token(emulator.access_key, audience).encode() + b"\r\n",
            ),
        }
        for name, (full_target, auth) in cases.items():
            status = await raw_status(emulator.port, method, full_target, extra + auth)
            if status not in (400, 401):
                failures.append(f"{method.decode()} {target.decode()} {name}: {status}")
    assert not failures, failures
    log = emulator.process.stderr()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


async def test_an_odd_negotiate_version_is_an_error_answer_not_a_500(run_emulator: RunEmulator) -> None:
    emulator = run_emulator()
    token = mint_token(emulator.access_key, "http://127.0.0.1/client/?hub=chat")
    auth = b"Authorization: Bearer " + token.encode() + b"\r\n"
    for version in (b"1%1F", b"1\x1f", b"%FF", b"99999999999999999999999", b"1%00", b"-1"):
        target = b"/client/negotiate?hub=chat&negotiateVersion=" + version
        status = await raw_status(emulator.port, b"POST", target, auth)
        assert status in (200, 400), (version, status)
    assert "Traceback" not in emulator.process.stderr()


async def test_no_connection_token_access_token_or_key_reaches_stderr(run_emulator: RunEmulator) -> None:
    emulator = run_emulator("--log-level", "debug")
    alice = mint_token(emulator.access_key, "http://127.0.0.1/client/?hub=chat", claims={"nameid": "alice"})
    mallory = mint_token(emulator.access_key, "http://127.0.0.1/client/?hub=chat", claims={"nameid": "mallory"})
    wrong_key = mint_token("not-the-key-0123456789-0123456789-0123456789", "http://127.0.0.1/client/?hub=chat")
    subscription_key = "planted-subscription-key-5551234"
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {alice}"}
        async with session.post(f"{emulator.base}/client/negotiate?hub=chat&negotiateVersion=1", headers=headers) as r:
            connection_token = (await r.json())["connectionToken"]
        url = f"{emulator.base}/client/?hub=chat&id={connection_token}&subscription-key={subscription_key}"
        async with session.get(url, headers=headers) as r:
            assert r.status == 200
        async with session.post(url, headers=headers, data=HANDSHAKE) as r:
            assert r.status == 200
        # 401s: a token signed with another key, and one in an unexpected query parameter; 403: another user.
        for target, auth in [
            (url, {"Authorization": f"Bearer {wrong_key}"}),
            (f"{url}&token={alice}&note=eyJhbGciOiJIUzI1NiJ9", {}),
            (f"{url}&access_token={alice}", {}),
            (url, {"Authorization": f"Bearer {mallory}"}),
        ]:
            async with session.post(target, headers=auth, data=b'{"type":6}\x1e') as r:
                assert r.status in (401, 403)
        async with session.delete(url, headers=headers) as r:
            assert r.status == 202
    emulator.stop()
    log = emulator.process.stderr()
    for secret in (connection_token, alice, mallory, wrong_key, subscription_key, emulator.access_key):
        assert secret not in log, secret
    assert not re.search(r"eyJ[A-Za-z0-9_-]{4,}", log), log
    # The lines about the connection name it by its tag, so they can still be matched.
    assert log.count(f"id={connection_token_tag(connection_token)}") >= 4, log
    assert "403 POST" in log and "401 POST" in log
