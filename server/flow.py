"""The app server on the flow stream (``flow/``): its own hop events, and the collector it hosts for the demo.

:class:`AppFlow` builds and publishes the app server's hops (role ``app``). It exists only while a publisher is
enabled: ``create_app`` keeps ``None`` otherwise, so each hot path costs one ``is None`` check and the server serves
exactly as before. It reports (docs/architecture.md §3):

- negotiate answered: ``redirect`` (app → client, where the client is sent) or ``negotiate`` (refused);
- the service's message received: ``upstream`` (Serverless ``/upstream``, Web PubSub ``/eventhandler``) or
  ``server-connection`` (Default mode's ``ConnectionData``), with the flow id the service passed along (``X-Flow-Id``
  or the service protocol's tracing id), else the one the app server computes (``flow.ids.flow_id``);
- the hub's sends: ``rest`` (REST API and Web PubSub SDK calls, status and ms) or ``server-connection`` (service
  messages), each carrying the flow id back (``X-Flow-Id`` header, or the tracing id).

With ``chat-server --flow-port PORT`` the server hosts the :class:`~flow.collector.FlowCollector` every other role
publishes into (``--flow-to 127.0.0.1:PORT``); its own hops go straight in (``FlowPublisher.local``). It then serves:

- ``GET /flow``: Server-Sent Events, one ``data: <hop json>`` per hop, the last :data:`REPLAY` first, then every new
  one (https://html.spec.whatwg.org/multipage/server-sent-events.html); a comment every :data:`KEEPALIVE_S` seconds;
  403 for a peer that is not on this machine; 503 past :data:`MAX_STREAMS` streams; a reader too slow to keep up
  with :data:`QUEUE_LIMIT` pending hops is ended (the browser's EventSource reconnects and gets the replay);
- ``GET /flow/info``: ``{"enabled": true, "udp": "127.0.0.1:<port>"}`` (403 likewise).

Without ``--flow-port`` both answer 404.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from flow.collector import FlowCollector
from flow.hops import Hop, Lifeline, Role
from flow.ids import FLOW_ID_HEADER, flow_id, parse_flow_id
from flow.publisher import FlowPublisher

__all__ = [
    "COLLECTOR",
    "FLOW",
    "KEEPALIVE_S",
    "MAX_STREAMS",
    "MERMAID_JS",
    "QUEUE_LIMIT",
    "REPLAY",
    "AppFlow",
    "add_flow_routes",
    "handle_flow",
    "handle_flow_info",
    "handle_mermaid_js",
    "is_loopback",
    "message_flow_id",
]

log = logging.getLogger("server.flow")

# The Mermaid browser bundle (npm `mermaid`, installed by `make node`), for the web page's diagram.
MERMAID_JS = Path(__file__).resolve().parents[1].joinpath("node_modules", "mermaid", "dist", "mermaid.min.js")
REPLAY = 200
KEEPALIVE_S = 15.0
MAX_STREAMS = 16
QUEUE_LIMIT = 2000


class AppFlow:
    """The app server's hops, published through ``publisher`` (enabled). ``service`` is ``signalr`` or
    ``webpubsub``; ``mode`` ``default`` or ``serverless`` (SignalR only)."""

    def __init__(self, publisher: FlowPublisher, service: str, mode: str | None) -> None:
        self.publisher = publisher
        self.service = service
        self.mode = mode

    def emit(
        self,
        source: Lifeline,
        target: Lifeline,
        kind: str,
        label: str,
        *,
        started: float | None = None,
        status: int | None = None,
        flow: str | None = None,
        connection_id: str | None = None,
        count: int | None = None,
        size: int | None = None,
    ) -> None:
        """One hop reported by the app server; ``started`` (``time.monotonic()``) gives its duration. A value outside
        the hop contract loses the hop, never the request."""
        duration = None if started is None else max(0.0, (time.monotonic() - started) * 1000)
        try:
            hop = Hop.make(
                Role.APP,
                source,
                target,
                kind,
                label,
                status=status if status is None or 100 <= status <= 4999 else None,
                duration_ms=duration,
                flow_id=flow,
                connection_id=connection_id if _plain_id(connection_id) else None,
                mode=self.mode,
                service=self.service,
                count=count,
                bytes=size,
            )
        except ValueError:
            return
        self.publisher.emit(hop)

    def negotiated(self, method: str, path: str, started: float, status: int, where: str | None) -> None:
        """A negotiate answered: redirected to ``where`` (the host the client is sent to), or refused (``status``)."""
        if where is not None:
            self.emit(
                Lifeline.APP,
                Lifeline.CLIENT,
                "redirect",
                f"{method} {path} {status} → redirect to {where}",
                started=started,
                status=status,
            )
        else:
            label = f"{method} {path} {status}: no redirect"
            self.emit(Lifeline.APP, Lifeline.CLIENT, "negotiate", label, started=started, status=status)


def _plain_id(value: str | None) -> bool:
    """Whether a connection id (from a request header) can ride a hop: 1 to 128 printable characters."""
    return value is not None and 0 < len(value) <= 128 and value.isprintable()


def message_flow_id(passed: str | None, connection_id: str, invocation_id: str | None) -> str | None:
    """The flow id of a client's message: the one the service passed along (``X-Flow-Id``, already parsed), else the
    one the contract derives from the caller's connection id and the invocation id, else None (a fire-and-forget
    ``send`` without one)."""
    if passed is not None:
        return passed
    if invocation_id is None:
        return None
    return flow_id(connection_id, invocation_id)


def header_flow_id(request: web.Request) -> str | None:
    """The ``X-Flow-Id`` a request carries, when it is a flow id (anything else counts as none)."""
    return parse_flow_id(request.headers.get(FLOW_ID_HEADER))


def redirect_host(url: str) -> str:
    """Where a negotiate answer sends the client: the URL's host and port only (never its query, which holds the
    token)."""
    try:
        return urlsplit(url).netloc or "?"
    except ValueError:
        return "?"


# --- the collector and its stream ------------------------------------------------------------------------------------

COLLECTOR = web.AppKey("flow_collector", FlowCollector)
FLOW = web.AppKey("flow", AppFlow)


class _Streams:
    """The open ``/flow`` streams, each as the queue it reads (``None`` in it ends the stream)."""

    def __init__(self) -> None:
        self.queues: set[asyncio.Queue[Hop | None]] = set()


_STREAMS = web.AppKey("flow_streams", _Streams)


def is_loopback(remote: str | None) -> bool:
    """Whether a peer address (``request.remote``) is this machine's (127.0.0.0/8, ::1, or an IPv4-mapped one)."""
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _refusal(request: web.Request) -> web.Response | None:
    """404 when flow is off, 403 for a peer that is not on this machine; None when the request may go on."""
    if COLLECTOR not in request.app:
        return web.Response(status=404, text="flow is off: start chat-server with --flow-port\n")
    if not is_loopback(request.remote):
        log.warning("flow: refused %s (403): the hop stream is served to this machine only", request.remote)
        return web.Response(status=403, text="the hop stream is served to this machine only\n")
    return None


async def handle_flow_info(request: web.Request) -> web.Response:
    """``GET /flow/info``: where the collector listens (404 when flow is off, 403 from another machine)."""
    refused = _refusal(request)
    if refused is not None:
        return refused
    host, port = request.app[COLLECTOR].address
    return web.json_response({"enabled": True, "udp": f"{host}:{port}"}, headers={"Cache-Control": "no-store"})


async def handle_flow(request: web.Request) -> web.StreamResponse:
    """``GET /flow``: the hop stream (see the module docstring)."""
    refused = _refusal(request)
    if refused is not None:
        return refused
    streams = request.app[_STREAMS].queues
    if len(streams) >= MAX_STREAMS:
        return web.Response(status=503, text=f"too many hop streams open (limit {MAX_STREAMS})\n")
    collector = request.app[COLLECTOR]
    queue: asyncio.Queue[Hop | None] = asyncio.Queue()
    overflow = False

    def deliver(hop: Hop) -> None:
        nonlocal overflow
        if queue.qsize() >= QUEUE_LIMIT:
            overflow = True
            queue.put_nowait(None)
        elif not overflow:
            queue.put_nowait(hop)

    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "X-Accel-Buffering": "no",
        }
    )
    streams.add(queue)
    unsubscribe = collector.subscribe(deliver)
    try:
        await response.prepare(request)
        replay = collector.hops(REPLAY)
        await response.write(b"retry: 2000\n\n" + b"".join(_event(hop) for hop in replay))
        while True:
            try:
                hop = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if hop is None:
                if overflow:
                    await response.write(b": this reader fell behind; reconnect for the latest hops\n\n")
                break
            await response.write(_event(hop))
    except ConnectionError:
        pass  # the reader left
    finally:
        unsubscribe()
        streams.discard(queue)
    return response


def _event(hop: Hop) -> bytes:
    return b"data: " + hop.to_json() + b"\n\n"


async def _end_streams(app: web.Application) -> None:
    for queue in list(app[_STREAMS].queues):
        queue.put_nowait(None)


async def _close_collector(app: web.Application) -> None:
    app[COLLECTOR].close()


def add_flow_routes(app: web.Application, collector: FlowCollector | None) -> None:
    """``/flow``, ``/flow/info`` and ``/lib/mermaid.min.js`` on ``app``. With a ``collector`` (started by the caller)
    the stream is on: open streams end on shutdown and the collector is closed on cleanup."""
    app[_STREAMS] = _Streams()
    if collector is not None:
        app[COLLECTOR] = collector
        app.on_shutdown.append(_end_streams)
        app.on_cleanup.append(_close_collector)
    app.router.add_get("/flow", handle_flow)
    app.router.add_get("/flow/info", handle_flow_info)
    app.router.add_get("/lib/mermaid.min.js", handle_mermaid_js)


async def handle_mermaid_js(request: web.Request) -> web.StreamResponse:
    """``GET /lib/mermaid.min.js``: the Mermaid browser bundle from ``node_modules`` (404 until installed). Served as
    a file (5 MB): a browser's revalidation gets 304."""
    if not MERMAID_JS.is_file():
        text = "// mermaid is not installed: run `make node`, then reload\n"
        return web.Response(status=404, text=text, content_type="application/javascript")
    headers = {
        "Content-Type": "application/javascript; charset=utf-8",
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    return web.FileResponse(MERMAID_JS, headers=headers)
