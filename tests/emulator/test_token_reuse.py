"""A LongPolling or SSE client repeats its token with every poll and POST: the emulator checks it in full once per
connection and takes the very same token string again while it is still valid (``emulator/auth.py``,
:class:`CheckedTokens`). What a client observes must not change: an expired token, a token with another signature
or another identity's token on the same connection is refused as before."""

from __future__ import annotations

import time

import pytest

from emulator.auth import CheckedTokens, ClientIdentity
from tests.emulator.conftest import HANDSHAKE, Emulator, records

PING = b'{"type":6}\x1e'


async def open_lp(emulator: Emulator, token: str) -> str:
    """A handshaken LongPolling connection negotiated and used with ``token``; its connect URL."""
    negotiated = await emulator.negotiate(token=token)
    url = emulator.connect_url(negotiated["connectionToken"])
    headers = emulator.auth(token)
    async with emulator.session.get(url, headers=headers) as response:
        assert response.status == 200
    async with emulator.session.post(url, data=HANDSHAKE, headers=headers) as response:
        assert response.status == 200
    async with emulator.session.get(url, headers=headers) as response:
        assert records(await response.read()) == [{}]
    return url


async def refusal(emulator: Emulator, method: str, url: str, token: str) -> tuple[int, str]:
    """The status and WWW-Authenticate of one request with ``token``."""
    async with emulator.session.request(method, url, headers=emulator.auth(token), data=PING) as response:
        await response.read()
        return response.status, response.headers.get("WWW-Authenticate", "")


async def test_the_same_token_keeps_working_for_every_poll_and_post(emulator: Emulator) -> None:
    token = emulator.client_token(claims={"nameid": "alice"})
    url = await open_lp(emulator, token)
    for n in range(3):
        async with emulator.session.post(url, data=PING, headers=emulator.auth(token)) as response:
            assert response.status == 200
        await emulator.broadcast("news", n)
        async with emulator.session.get(url, headers=emulator.auth(token)) as response:
            assert records(await response.read()) == [{"type": 1, "target": "news", "arguments": [n]}]


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_a_token_that_passed_is_refused_once_it_has_expired(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    token = emulator.client_token(claims={"nameid": "alice"}, lifetime=600)
    url = await open_lp(emulator, token)
    async with emulator.session.post(url, data=PING, headers=emulator.auth(token)) as response:
        assert response.status == 200
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 601)
    status, challenge = await refusal(emulator, method, url, token)
    assert status == 401
    assert challenge == 'Bearer error="invalid_token", error_description="The token is expired"'


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_another_token_string_on_the_same_connection_is_checked_in_full(emulator: Emulator, method: str) -> None:
    token = emulator.client_token(claims={"nameid": "alice"})
    url = await open_lp(emulator, token)
    forged = emulator.client_token(claims={"nameid": "alice"}, key="another key, at least thirty-two bytes long")
    status, challenge = await refusal(emulator, method, url, forged)
    assert status == 401
    assert challenge == 'Bearer error="invalid_token", error_description="The signature is invalid"'
    status, _ = await refusal(emulator, method, url, emulator.client_token(claims={"nameid": "mallory"}))
    assert status == 403
    status, _ = await refusal(emulator, method, url, emulator.client_token(hub="other", claims={"nameid": "alice"}))
    assert status == 401  # an audience for another hub


async def test_an_sse_stream_token_is_reused_by_its_posts(emulator: Emulator) -> None:
    token = emulator.client_token(claims={"nameid": "alice"})
    negotiated = await emulator.negotiate(token=token)
    url = emulator.connect_url(negotiated["connectionToken"])
    headers = {"Accept": "text/event-stream", **emulator.auth(token)}
    async with emulator.session.get(url, headers=headers) as stream:
        assert stream.status == 200
        assert await stream.content.readuntil(b"\r\n") == b":\r\n"
        async with emulator.session.post(url, data=HANDSHAKE, headers=emulator.auth(token)) as response:
            assert response.status == 200
        assert await stream.content.readuntil(b"\r\n\r\n") == b"data: {}\x1e\r\n\r\n"
        forged = emulator.client_token(claims={"nameid": "alice"}, key="another key, at least thirty-two bytes long")
        async with emulator.session.post(url, data=PING, headers=emulator.auth(forged)) as response:
            assert response.status == 401


# --- CheckedTokens ------------------------------------------------------------------------------------------------


def identity(exp: float, nbf: float | None = None) -> ClientIdentity:
    claims: dict[str, object] = {"exp": exp, "nameid": "alice"}
    if nbf is not None:
        claims["nbf"] = nbf
    return ClientIdentity(claims, "alice", "user:alice")


def test_checked_tokens_give_the_identity_only_for_the_same_token_hub_and_key() -> None:
    checked = CheckedTokens(8)
    alice = identity(time.time() + 60)
    checked.remember("conn", "token", "chat", "key", alice)
    assert checked.identity("conn", "token", "chat", "key") is alice
    assert checked.identity("conn", "token2", "chat", "key") is None
    assert checked.identity("conn", "token", "other", "key") is None
    assert checked.identity("conn", "token", "chat", "key2") is None
    assert checked.identity("conn2", "token", "chat", "key") is None


def test_checked_tokens_forget_a_token_outside_its_nbf_and_exp() -> None:
    checked = CheckedTokens(8)
    checked.remember("expired", "token", "chat", "key", identity(time.time() - 1))
    checked.remember("early", "token", "chat", "key", identity(time.time() + 60, nbf=time.time() + 30))
    assert checked.identity("expired", "token", "chat", "key") is None
    assert checked.identity("early", "token", "chat", "key") is None
    assert len(checked) == 0


def test_checked_tokens_hold_at_most_their_size_dropping_the_oldest() -> None:
    checked = CheckedTokens(2)
    for name in ("a", "b", "c"):
        checked.remember(name, "token", "chat", "key", identity(time.time() + 60))
    assert len(checked) == 2
    assert checked.identity("a", "token", "chat", "key") is None
    assert checked.identity("c", "token", "chat", "key") is not None
