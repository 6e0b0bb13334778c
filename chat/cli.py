"""``chat``: the terminal chat. Options come from the command line, then the environment, then ``./.env``.

    chat [--url http://localhost:5000/chat] [--transport websockets|sse|longpolling|sse-lp]
         [--protocol json|messagepack] [--name NAME] [--subscription-key KEY] [--flow-url URL]
    chat probe [--url …] [--subscription-key KEY] [--origin URL] [--no-echo] [--json] [--timeout S]

``chat probe`` checks the app server and the APIM in front of the service transport by transport
(``chat/probe/cli.py``).

When the app server answers negotiate for Azure Web PubSub, the chat goes on over Web PubSub with the client access
URL it returned (``chat/service_connection.py``): one WebSocket, reliable JSON subprotocol; ``--transport`` and
``--protocol`` do not apply there.

``--flow-url`` (``chat-demo`` passes it) is the app server's hop stream (``http://127.0.0.1:PORT/flow``): the Flow view
(F11) then shows every hop of a message, not only the chat's own.

Environment: ``CHAT_URL``, ``CHAT_TRANSPORT``, ``CHAT_PROTOCOL``, ``CHAT_NAME``, ``APIM_SUBSCRIPTION_KEY``. A bad option
prints one line on stderr and exits 2; so does MessagePack with ``--transport sse`` (ServerSentEvents carries only
text). The subscription key is sent as ``Ocp-Apim-Subscription-Key`` on every request and is never shown (not in the
title, the status bar, the trace or error lines).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from dotenv import load_dotenv

from signalr.client import TransportChoice
from signalr.connection_string import is_http_url
from signalr.hub_protocol import HubProtocol
from signalr.json_protocol import JSON

from .names import name_problem
from .protocol_choice import PROTOCOL_NAMES, protocol_named, why_not

__all__ = ["DEFAULT_URL", "SUBSCRIPTION_KEY_HEADER", "ChatOptions", "OptionError", "main", "parse_options"]

DEFAULT_URL = "http://localhost:5000/chat"
SUBSCRIPTION_KEY_HEADER = "Ocp-Apim-Subscription-Key"
_TRANSPORTS = [choice.value for choice in TransportChoice]


class OptionError(Exception):
    """An option's value is unusable; the message names the option and what is accepted."""


@dataclass(frozen=True)
class ChatOptions:
    """The resolved options of one ``chat`` run."""

    url: str
    transport: TransportChoice
    name: str | None
    subscription_key: str | None = field(default=None, repr=False)
    protocol: HubProtocol = JSON
    """The hub protocol to speak (``--protocol``; JSON by default)."""
    flow_url: str | None = None
    """The app server's hop stream (``--flow-url``), followed by the Flow view; ``None`` outside the local demo."""

    @property
    def headers(self) -> dict[str, str]:
        """Headers for every request: the subscription key, when there is one."""
        return {SUBSCRIPTION_KEY_HEADER: self.subscription_key} if self.subscription_key else {}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One clear line instead of argparse's usage block.
        raise OptionError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="chat",
        description="Terminal chat for the SignalR Chatroom sample, through Azure SignalR Service and APIM; an app "
        "server on Azure Web PubSub is followed there (its negotiate answer says so), where --transport and --protocol "
        "do not apply.",
    )
    parser.add_argument("--url", help=f"the app server's hub URL (env CHAT_URL; default {DEFAULT_URL})")
    parser.add_argument("--transport", help=f"one of {', '.join(_TRANSPORTS)} (env CHAT_TRANSPORT; default websockets)")
    parser.add_argument(
        "--protocol",
        help=f"hub protocol, one of {', '.join(PROTOCOL_NAMES)} (env CHAT_PROTOCOL; default json); "
        "MessagePack cannot go over sse",
    )
    parser.add_argument("--name", help="chat name; asked for when omitted (env CHAT_NAME)")
    parser.add_argument(
        "--subscription-key",
        help="APIM subscription key, sent as the Ocp-Apim-Subscription-Key header (env APIM_SUBSCRIPTION_KEY)",
    )
    parser.add_argument(
        "--flow-url",
        help="the app server's hop stream, e.g. http://127.0.0.1:5000/flow (chat-demo passes it): the Flow view (F11) "
        "then shows the server hops too",
    )
    return parser


def _url_problem(url: str) -> str:
    """What to fix in a ``url`` that :func:`is_http_url` (the client's own rule) refused: the port, or the whole URL."""
    whole = f"--url must be an absolute http:// or https:// URL of the hub, e.g. {DEFAULT_URL}"
    try:
        parts = urlsplit(url)
    except ValueError:  # for example an unclosed IPv6 bracket
        return whole
    try:
        _ = parts.port
    except ValueError:
        return "--url has an invalid port"
    return whole


def parse_options(argv: list[str] | None, environ: dict[str, str] | None = None) -> ChatOptions:
    """Resolve the options: ``argv`` wins over ``environ`` (default: the process environment after ``.env``)."""
    args = _parser().parse_args(argv)
    env = os.environ if environ is None else environ
    url = args.url if args.url is not None else env.get("CHAT_URL") or DEFAULT_URL
    if not is_http_url(url):
        raise OptionError(_url_problem(url))
    transport_name = args.transport if args.transport is not None else env.get("CHAT_TRANSPORT") or "websockets"
    try:
        transport = TransportChoice(transport_name.strip().lower())
    except ValueError:
        raise OptionError(f"--transport must be one of {', '.join(_TRANSPORTS)}") from None
    protocol = _protocol(args.protocol if args.protocol is not None else env.get("CHAT_PROTOCOL") or "json")
    problem = why_not(transport, protocol, lambda choice: choice.value)
    if problem is not None:
        raise OptionError(f"--protocol {protocol.name} with --transport {transport.value}: {problem}")
    name = args.name if args.name is not None else env.get("CHAT_NAME") or None
    if name is not None:
        problem = name_problem(name)
        if problem:
            raise OptionError(f"--name: {problem}")
    key = args.subscription_key if args.subscription_key is not None else env.get("APIM_SUBSCRIPTION_KEY")
    if key is not None and (not key.strip() or any(c in key for c in "\r\n")):
        raise OptionError("--subscription-key must be a non-empty single-line value")
    flow_url = args.flow_url
    if flow_url is not None and not is_http_url(flow_url):
        raise OptionError("--flow-url must be an absolute http:// URL of the app server's /flow stream")
    return ChatOptions(
        url=url, transport=transport, name=name, subscription_key=key or None, protocol=protocol, flow_url=flow_url
    )


def _protocol(name: str) -> HubProtocol:
    """The hub protocol ``name`` (any case) names; :class:`OptionError` listing the known names otherwise."""
    wanted = name.strip().lower()
    if wanted not in PROTOCOL_NAMES:
        raise OptionError(f"--protocol must be one of {', '.join(PROTOCOL_NAMES)}")
    return protocol_named(wanted)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``chat``: 0 after a normal quit, 2 for bad options, 1 if the UI failed."""
    load_dotenv(Path.cwd() / ".env", override=False)
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["probe"]:
        from .probe.cli import main as probe_main  # imported late so that plain `chat` starts as fast as before

        return probe_main(args[1:])
    try:
        options = parse_options(args)
    except OptionError as exc:
        print(f"chat: error: {exc}", file=sys.stderr)
        return 2

    from .app import ChatApp, freeze_startup_heap  # imported late so `chat --help` and option errors stay fast

    app = ChatApp(
        options.url,
        options.transport,
        name=options.name,
        headers=options.headers,
        protocol=options.protocol,
        flow_url=options.flow_url,
    )
    freeze_startup_heap()
    try:
        app.run()
    except KeyboardInterrupt:
        return 0
    return 0 if app.return_code in (None, 0) else 1


if __name__ == "__main__":
    sys.exit(main())
