"""Hostile input on every client-facing parser: each bad record closes only its own connection with a reason, each
bad REST body is a JSON 400, and the service keeps serving everyone else."""

from __future__ import annotations

import json
import random

import aiohttp
import pytest

from signalr.tokens import mint_token

from .conftest import Emulator, records, ws_next_non_ping

HOSTILE_RECORDS: list[bytes] = [
    b"[" * 50_000 + b"]" * 50_000 + b"\x1e",  # deep nesting
    b'{"type":1,"target":"x","arguments":[NaN]}\x1e',
    b'{"type":1,"target":"x","arguments":[1e999]}\x1e',
    b'{"type":1,"target":"x","arguments":[' + b"9" * 5000 + b"]}\x1e",  # more digits than int() takes
    b'{"type":true}\x1e',
    b'{"type":1,"invocationId":5,"target":"x","arguments":[]}\x1e',
    b'{"type":1,"target":"x","arguments":{}}\x1e',
    b'{"type":3,"invocationId":"1","result":1,"error":"both"}\x1e',
    b"\x1e",  # an empty record
    b'{"type":1,"target":"\xff\xfe","arguments":[]}\x1e',  # invalid UTF-8
    b"\x00\x01\x02\x1e",
]


def _random_records(count: int) -> list[bytes]:
    """Fixed-seed random bytes ending in a separator: reproducible, bounded fuzzing."""
    generator = random.Random(20240601)
    return [bytes(generator.randrange(256) for _ in range(generator.randrange(1, 64))) + b"\x1e" for _ in range(count)]


@pytest.mark.parametrize("payload", HOSTILE_RECORDS + _random_records(8), ids=lambda p: repr(p[:24]))
async def test_hostile_websocket_record_closes_only_that_connection(emulator: Emulator, payload: bytes) -> None:
    bad, bad_id = await emulator.open_ws()
    await bad.send_bytes(payload)
    reply = await ws_next_non_ping(bad)
    assert reply[-1]["type"] == 7 and reply[-1]["error"], reply
    assert (await bad.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE
    good, _ = await emulator.open_ws()
    await emulator.broadcast("broadcastMessage", "still", "serving")
    assert await ws_next_non_ping(good) == [
        {"type": 1, "target": "broadcastMessage", "arguments": ["still", "serving"]}
    ]
    await good.close()
    status, _, _ = await emulator.rest("HEAD", f"/api/hubs/chat/connections/{bad_id}?api-version=2022-06-01")
    assert status == 404


@pytest.mark.parametrize("payload", HOSTILE_RECORDS, ids=lambda p: repr(p[:24]))
async def test_hostile_post_body_closes_only_that_connection(emulator: Emulator, payload: bytes) -> None:
    url, _ = await emulator.open_lp()
    headers = emulator.auth(emulator.client_token())
    async with emulator.session.post(url, data=payload, headers=headers) as response:
        assert response.status == 200
    async with emulator.session.get(url, headers=headers) as response:
        reply = records(await response.read())
        assert reply[-1]["type"] == 7 and reply[-1]["error"]
    _, good_id = await emulator.open_lp()
    status, _, _ = await emulator.rest("HEAD", f"/api/hubs/chat/connections/{good_id}?api-version=2022-06-01")
    assert status == 200


@pytest.mark.parametrize(
    "raw",
    [
        b'{"target":"x","arguments":[' + b"[" * 50_000 + b"]" * 50_000 + b"]}",
        b'{"target":"x","arguments":[NaN]}',
        b'{"target":"x","arguments":[-Infinity]}',
        b'{"target":"x","arguments":[1e999]}',
        b'{"target":"x","arguments":[' + b"9" * 5000 + b"]}",
    ],
    ids=["deep", "nan", "infinity", "huge-float", "huge-int"],
)
async def test_hostile_rest_bodies_are_400_json(emulator: Emulator, raw: bytes) -> None:
    ws, _ = await emulator.open_ws()
    status, body, _ = await emulator.rest("POST", "/api/hubs/chat/:send?api-version=2022-06-01", raw=raw)
    assert status == 400, body
    assert body.startswith(b'{"code": "BadRequest"')
    with pytest.raises(TimeoutError):
        await ws.receive(timeout=0.2)  # nothing unparseable reached the client
    await ws.close()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe", "The request body is not valid JSON."),  # not UTF-8
        (b"\xef\xbb\xbf{}", "The request body is not valid JSON."),  # a UTF-8 BOM is not JSON
        (b'{"target":"x"', "The request body is not valid JSON."),
        (b'{"target":"x","arguments":[NaN]}', "The request body is not valid JSON."),
        (b"[" * 100_000, "The request body is not valid JSON."),
        (b'["x"]', "The request body must be a JSON object."),
        (b"1e999", "The request body is not valid JSON."),
        (b"null", "The request body must be a JSON object."),
    ],
)
async def test_rest_body_errors_are_exact(emulator: Emulator, raw: bytes, message: str) -> None:
    status, body, _ = await emulator.rest("POST", "/api/hubs/chat/:send?api-version=2022-06-01", raw=raw)
    assert status == 400
    assert json.loads(body) == {"code": "BadRequest", "message": message, "target": "body"}


@pytest.mark.parametrize(
    "claims",
    [{"exp": "tomorrow"}, {"aud": ["http://127.0.0.1/client/?hub=chat"]}, {"aud": 5}],
    ids=["exp-string", "aud-list", "aud-number"],
)
async def test_tokens_with_hostile_claims_are_401(emulator: Emulator, claims: dict[str, object]) -> None:
    import jwt

    payload = {"aud": "http://127.0.0.1/client/?hub=chat", "exp": 4102444800, **claims}
    token = jwt.encode(payload, emulator.access_key.encode(), algorithm="HS256")
    async with emulator.session.post(
        f"{emulator.base}/client/negotiate?hub=chat", headers=emulator.auth(token)
    ) as response:
        assert response.status == 401


async def test_unsigned_token_is_401(emulator: Emulator) -> None:
    """``alg: none`` must never pass."""
    import base64
    import json

    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    token = part({"alg": "none", "typ": "JWT"}) + "." + part({"aud": "http://127.0.0.1/client/?hub=chat"}) + "."
    async with emulator.session.post(
        f"{emulator.base}/client/negotiate?hub=chat", headers=emulator.auth(token)
    ) as response:
        assert response.status == 401
    rest_token = mint_token(emulator.access_key, "http://127.0.0.1/api/hubs/chat/:send", lifetime=-10)
    status, _, _ = await emulator.rest(
        "POST", "/api/hubs/chat/:send?api-version=2022-06-01", {"target": "x"}, token=rest_token
    )
    assert status == 401
