"""The probe's requests when the app server answers for Azure Web PubSub: the client access URL and the one transport
Web PubSub has, a WebSocket with the reliable JSON subprotocol.

:func:`probe_webpubsub` takes over from :func:`chat.probe.checks.run_probe` once the app server's negotiate answered
``{"service": "webpubsub", "hub", "url"}`` (:class:`signalr.negotiate.WebPubSubAnswer`). It looks at the client
access URL (where it points: APIM is recognised by its own 404 envelope on a route no operation serves, as for
SignalR; the token's lifetime and audience, decoded and never kept), then drives one WebSocket through it as the
official clients do (https://learn.microsoft.com/azure/azure-web-pubsub/howto-websocket-connect,
https://learn.microsoft.com/azure/azure-web-pubsub/reference-json-reliable-webpubsub-subprotocol):

- connect: the upgrade ``GET`` with ``Sec-WebSocket-Protocol: json.reliable.webpubsub.azure.v1`` (the token stays
  in the URL's ``access_token``; ``Ocp-Apim-Subscription-Key`` when a key is given), answered 101 with that
  subprotocol;
- connected message: the service's ``{"type": "system", "event": "connected"}``;
- echo: the event ``echo`` (``{"name", "message"}``, what the chat app server's event handler answers with
  ``send_to_connection``) with ``ackId`` 1: the ack and the echo coming back (``--no-echo`` skips it);
- close: a close frame with code 1000, which ends a reliable session at once.

Every wait is bounded by ``options.timeout``. Nothing here raises for network trouble; secrets are never recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar
from urllib.parse import parse_qsl, urlsplit

import aiohttp

from signalr.client.errors import apim_message, host_of
from signalr.client.http_context import HttpContext, to_url
from signalr.client.trace import Tracer
from signalr.negotiate import WebPubSubAnswer
from signalr.redact import redact_text, redact_url
from webpubsub.subprotocol import (
    RELIABLE_JSON_SUBPROTOCOL,
    Ack,
    Connected,
    DataType,
    Disconnected,
    InvalidMessage,
    Response,
    SendEvent,
    ServerMessage,
    decode_response,
    encode_request,
)

from . import webpubsub_verdict
from .checks import (
    MAX_BODY,
    SUBSCRIPTION_KEY_HEADER,
    _Answer,
    _ms,
    _net_error,
    _Probe,
    decode_token,
    host_kind,
    wait_for_change,
)
from .model import (
    WEBPUBSUB_TRANSPORT,
    HostKind,
    NegotiateFindings,
    NetError,
    Outcome,
    ProbeReport,
    Step,
    StepResult,
    Target,
    TokenInfo,
)

__all__ = ["ECHO_EVENT", "KIND", "http_url", "probe_webpubsub", "route_check_url"]

_T = TypeVar("_T")

KIND = WEBPUBSUB_TRANSPORT
ECHO_EVENT = "echo"
ECHO_ACK_ID = 1
MAX_MESSAGES = 1000
"""Messages kept while waiting for one (the service sends a handful; a flood is cut here)."""


def http_url(url: str) -> str:
    """``url`` with ``ws``/``wss`` turned into ``http``/``https`` (for plain HTTP requests to the same place)."""
    if url[:4].lower() == "wss:":
        return "https:" + url[4:]
    if url[:3].lower() == "ws:":
        return "http:" + url[3:]
    return url


def route_check_url(client_url: str) -> str:
    """``GET`` target on the client access URL's host that no APIM operation serves: ``<path>/negotiate`` (a
    WebSocket API serves only its own path), without the query (it holds the token)."""
    parts = urlsplit(http_url(client_url))
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/negotiate"


def _token_of(url: str) -> str:
    try:
        values = [v for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True) if k == "access_token"]
    except ValueError:
        return ""
    return values[-1] if values else ""


def _audience_hub(audience: str | None) -> str | None:
    """The hub a client token's ``aud`` names (``…/client/hubs/<hub>``), if it names one."""
    if not audience:
        return None
    path = urlsplit(audience).path.rstrip("/")
    prefix = "/client/hubs/"
    return path[len(prefix) :] if path.lower().startswith(prefix) else None


def _token_info(url: str, hub: str) -> TokenInfo:
    token = _token_of(url)
    if not token:
        return TokenInfo(problem="the client access URL carries no access_token")
    info = decode_token(token)
    named = _audience_hub(info.audience)
    if info.problem is None and named is not None and named.lower() != hub.lower():
        info = replace(info, problem=f"the token is for hub {named!r}, the app server named hub {hub!r}")
    return info


def _same_host(url: str, audience: str | None) -> bool:
    """Whether the client access URL goes to the host the token was minted for (the service's; no port in ``aud``)."""
    if not audience:
        return False
    try:
        return (urlsplit(http_url(url)).hostname or "").lower() == (urlsplit(audience).hostname or "").lower()
    except ValueError:
        return False


async def _url_findings(
    probe: _Probe, context: HttpContext, findings: NegotiateFindings, answer: WebPubSubAnswer
) -> NegotiateFindings:
    """Where the client access URL points and what its token says; one route check on its host."""
    url = answer.url
    token = _token_info(url, answer.hub)
    kind = host_kind(urlsplit(url).hostname or "")
    check_url = route_check_url(url)
    check = await probe.exchange(context, "GET", check_url, {"Origin": probe.origin})
    envelope = apim_message(check.status, check.body) if check.status is not None else None
    path = urlsplit(check_url).path
    if check.status is None:
        target, evidence = Target.UNREACHABLE, f"GET {path}: {check.reason}"
    elif check.status == 404 and envelope is not None:
        target, evidence = Target.GATEWAY, f"APIM's 404 envelope for GET {path}, a route no operation serves"
    elif kind is HostKind.WEBPUBSUB or _same_host(url, token.audience):
        target, evidence = Target.WEBPUBSUB, "the token's audience names this host: no gateway in between"
    elif host_of(http_url(url)) == host_of(probe.options.url):
        target, evidence = Target.APP_SERVER, "the client access URL points back at the app server"
    else:
        target, evidence = Target.NOT_WEBPUBSUB, f"GET {path} answered {check.status}, not APIM's 404 envelope"
    probe.result(
        None,
        Step.ROUTE_CHECK,
        "GET",
        check_url,
        check,
        ok=check.status is not None,
        detail=f"{target.value}: {evidence}",
    )
    return replace(
        findings,
        redirect=True,
        redirect_url=redact_url(url),
        redirect_host=host_of(http_url(url)),
        host_kind=kind,
        target=target,
        target_evidence=evidence,
        token=token,
        query_key=any(k.lower() == "subscription-key" for k, _ in parse_qsl(urlsplit(url).query)),
    )


class _Session:
    """What the service sent on the WebSocket, decoded; waits for what the probe expects."""

    def __init__(self) -> None:
        self.messages: list[Response] = []
        self.problem: str | None = None
        """Why no more messages will come: the socket closed, or a frame that is not the subprotocol's."""
        self.changed = asyncio.Event()

    def feed(self, text: str) -> None:
        try:
            message = decode_response(text)
        except InvalidMessage as exc:
            self.problem = self.problem or f"a frame that is not {RELIABLE_JSON_SUBPROTOCOL}: {redact_text(str(exc))}"
        else:
            if message is not None and len(self.messages) < MAX_MESSAGES:
                self.messages.append(message)
        self.changed.set()

    def end(self, why: str) -> None:
        self.problem = self.problem or why
        self.changed.set()

    def connected(self) -> tuple[bool, str] | None:
        for message in self.messages:
            if isinstance(message, Connected):
                who = f"user {message.user_id!r}" if message.user_id else "anonymous"
                return True, f"connected ({who})"
            if isinstance(message, Disconnected):
                return False, f"the service sent disconnected: {redact_text(message.message or '')[:200]}"
        if self.problem is not None:
            return False, self.problem
        return None

    def echo(self, nonce: str) -> tuple[bool, str, str | None] | None:
        """``(True, detail, None)`` once the ack and the echo came, ``(False, why, error name)`` when the service
        refused the event or the connection ended, else ``None``."""
        acked = echoed = False
        for message in self.messages:
            if isinstance(message, Ack) and message.ack_id == ECHO_ACK_ID:
                if not message.success:
                    name = message.error.name if message.error is not None else "unknown"
                    text = redact_text(message.error.message)[:200] if message.error is not None else ""
                    return False, f"the service refused the event: {name}" + (f" ({text})" if text else ""), name
                acked = True
            elif isinstance(message, ServerMessage) and isinstance(message.data, dict):
                if message.data.get("target") == ECHO_EVENT and nonce in str(message.data.get("message", "")):
                    echoed = True
            elif isinstance(message, Disconnected):
                return False, f"the service sent disconnected: {redact_text(message.message or '')[:200]}", None
        if acked and echoed:
            return True, "event acknowledged, echo came back", None
        if self.problem is not None:
            state = "acknowledged, then " if acked else ""
            return False, f"event {state}no echo: {self.problem}", None
        return None

    def acked(self) -> bool:
        return any(isinstance(m, Ack) and m.ack_id == ECHO_ACK_ID and m.success for m in self.messages)


class _WebPubSubRun:
    """One WebSocket through the client access URL: connect, connected message, echo, close."""

    def __init__(self, probe: _Probe, context: HttpContext, url: str) -> None:
        self.probe = probe
        self.context = context
        self.url = url
        self.session = _Session()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.reader: asyncio.Task[None] | None = None
        self.latency_ms: float | None = None

    def record(
        self,
        step: Step,
        outcome: Outcome,
        detail: str,
        started: float,
        *,
        status: int | None = None,
        error: NetError | None = None,
        error_name: str | None = None,
    ) -> None:
        method, url = {Step.CONNECT: ("GET", redact_url(self.url)), Step.ECHO: ("event", "")}.get(step, ("", ""))
        self.probe.record(
            StepResult(
                KIND,
                step,
                outcome,
                method=method,
                url=url,
                status=status,
                elapsed_ms=_ms(started),
                error=error,
                detail=redact_text(detail),
                error_name=error_name,
            )
        )

    async def run(self) -> None:
        try:
            if await self.connect() and await self.connected() and await self.echo():
                await self.close()
        finally:
            await self.release()

    async def release(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(BaseException):
                await self.reader
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 1.0)

    def headers(self) -> dict[str, str]:
        out = {"Origin": self.probe.origin}
        if self.probe.options.subscription_key:
            out[SUBSCRIPTION_KEY_HEADER] = self.probe.options.subscription_key
        return out

    async def connect(self) -> bool:
        probe, context = self.probe, self.context
        started = time.monotonic()
        try:
            async with asyncio.timeout(probe.timeout):
                self.ws = await context.session.ws_connect(
                    to_url(self.url),
                    protocols=(RELIABLE_JSON_SUBPROTOCOL,),
                    headers=self.headers(),
                    autoping=True,
                    max_msg_size=MAX_BODY,
                    timeout=aiohttp.ClientWSTimeout(ws_close=1.0),
                )
        except aiohttp.WSServerHandshakeError as exc:
            body, context.refused_upgrade_body = context.refused_upgrade_body, b""
            answer = _Answer(exc.status, exc.headers or {}, body, None, "", _ms(started))
            detail = f"the upgrade was answered {exc.status} instead of 101 Switching Protocols"
            probe.result(KIND, Step.CONNECT, "GET", self.url, answer, ok=False, detail=detail)
            return False
        except Exception as exc:
            error, reason = _net_error(exc)
            if error is NetError.TIMEOUT:
                reason = f"no answer to the upgrade within {probe.timeout:g} s"
            answer = _Answer(None, {}, b"", error, reason, _ms(started))
            probe.result(KIND, Step.CONNECT, "GET", self.url, answer, ok=False)
            return False
        ok = self.ws.protocol == RELIABLE_JSON_SUBPROTOCOL
        detail = (
            f"upgraded, subprotocol {RELIABLE_JSON_SUBPROTOCOL}"
            if ok
            else f"upgraded, but the answer names no subprotocol (Sec-WebSocket-Protocol: {self.ws.protocol or 'none'})"
        )
        self.record(Step.CONNECT, Outcome.OK if ok else Outcome.FAILED, detail, started, status=101)
        if ok:
            self.reader = asyncio.create_task(self.read())
        return ok

    async def read(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                self.session.feed(message.data)
            elif message.type is aiohttp.WSMsgType.BINARY:
                self.session.end("a binary frame, which the JSON subprotocol never sends")
        self.session.end(f"the service closed the WebSocket ({self.ws.close_code})")

    async def wait(self, check: Callable[[], _T | None], timeout: float) -> _T | None:
        """``check()``'s first value that is not None within ``timeout`` s, else None."""
        return await wait_for_change(self.session.changed, check, timeout)

    async def connected(self) -> bool:
        started = time.monotonic()
        state = await self.wait(self.session.connected, self.probe.timeout)
        if state is None:
            detail = f"no connected message within {self.probe.timeout:g} s"
            self.record(Step.CONNECTED, Outcome.FAILED, detail, started, error=NetError.TIMEOUT)
            return False
        self.record(Step.CONNECTED, Outcome.OK if state[0] else Outcome.FAILED, state[1], started)
        if state[0] and not self.probe.options.echo:
            self.latency_ms = sum(s.elapsed_ms or 0.0 for s in self.probe.steps.get(KIND, ()))
        return state[0]

    async def echo(self) -> bool:
        if not self.probe.options.echo:
            self.probe.record(StepResult(KIND, Step.ECHO, Outcome.SKIPPED, detail="--no-echo"))
            return True
        assert self.ws is not None
        nonce = secrets.token_hex(4)
        data = {"name": "probe", "message": f"probe {nonce}"}
        request = SendEvent(ECHO_EVENT, DataType.JSON, data, ack_id=ECHO_ACK_ID)
        started = time.monotonic()
        try:
            await asyncio.wait_for(self.ws.send_str(encode_request(request)), self.probe.timeout)
        except Exception as exc:
            self.record(Step.ECHO, Outcome.FAILED, f"cannot send the event: {_net_error(exc)[1]}", started)
            return False
        answer = await self.wait(lambda: self.session.echo(nonce), self.probe.timeout)
        if answer is None:
            if self.session.acked():
                detail = f"the event was acknowledged, but no echo came back within {self.probe.timeout:g} s"
                self.record(Step.ECHO, Outcome.FAILED, detail, started)
            else:
                detail = f"no ack for the event within {self.probe.timeout:g} s"
                self.record(Step.ECHO, Outcome.FAILED, detail, started, error=NetError.TIMEOUT)
            return False
        ok, detail, name = answer
        self.record(Step.ECHO, Outcome.OK if ok else Outcome.FAILED, detail, started, error_name=name)
        if ok:
            self.latency_ms = _ms(started)
        return ok

    async def close(self) -> None:
        assert self.ws is not None
        started = time.monotonic()
        try:
            await asyncio.wait_for(self.ws.close(), self.probe.timeout)
        except Exception as exc:
            self.record(Step.SOCKET_CLOSE, Outcome.FAILED, f"closing failed: {_net_error(exc)[1]}", started)
            return
        self.record(Step.SOCKET_CLOSE, Outcome.OK, f"WebSocket closed ({self.ws.close_code})", started)


async def probe_webpubsub(
    probe: _Probe, context: HttpContext, findings: NegotiateFindings, answer: WebPubSubAnswer, started: float
) -> ProbeReport:
    """The rest of a run whose app server answered for Web PubSub: the client access URL's findings, then the one
    WebSocket (bounded by ``options.timeout`` per wait), then the verdict."""
    findings = await _url_findings(probe, context, findings, answer)
    findings = replace(findings, checks=tuple(s for s in probe.steps[None] if s is not findings.step))
    ws_context = HttpContext(headers=None, access_token=None, tracer=Tracer(None))
    try:
        await _WebPubSubRun(probe, ws_context, answer.url).run()
    finally:
        await ws_context.close()
    steps = tuple(probe.steps.get(KIND, ()))
    return webpubsub_verdict.conclude(probe.options, findings, steps, elapsed_ms=_ms(started))
