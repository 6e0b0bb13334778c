"""``chat-demo``: the whole APIM flow on one machine, from one command.

Starts three processes on loopback — ``signalr-emulator`` (the service), ``apim-gateway`` (APIM, in front of the
service) and ``chat-server`` (the app server, whose connection string names the gateway as ``ClientEndpoint``) — then
opens the terminal chat, or with ``--no-tui`` prints one JSON line and serves until SIGINT/SIGTERM.

``--service webpubsub`` runs the same Chatroom on Azure Web PubSub: ``webpubsub-emulator`` (its event handler is the
chat server's ``/eventhandler``, on a port picked before anything starts), ``apim-gateway --profile webpubsub`` and
``chat-server --service webpubsub``; the terminal chat learns the service from the negotiate answer.

Every server publishes its hop events (``--flow-to 127.0.0.1:PORT``) to the collector ``chat-server`` hosts
(``--flow-port PORT``, a UDP port picked here), which serves them as ``GET /flow``: the terminal chat's Flow view (F11)
follows that stream, and ``--record FILE`` writes every journey as Markdown with Mermaid sequence diagrams.

The servers are started as console scripts, not imported: each role stays its own process, as in Azure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp

from flow.journey import JourneyBook
from flow.record import Recorder
from signalr.client import TransportChoice

from .flow_feed import FlowFeed
from .protocol_choice import PROTOCOL_NAMES, protocol_named, why_not

PROFILES = ("websocket", "sse-lp")
SERVICE_MODES = ("default", "serverless")
SERVICES = ("signalr", "webpubsub")
WEBPUBSUB_PROFILE = "webpubsub"
SIGNALR_ONLY = ("--transport", "--protocol", "--service-mode", "--strict-apim", "--with-delete")
START_TIMEOUT = 30.0
RECORD_FLUSH_INTERVAL = 1.0
"""Seconds between two looks for journeys complete enough to be written to the ``--record`` file."""


class DemoError(Exception):
    """A server of the demo could not start; the message says which and why."""


def _ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands out for ``bind(port 0)`` (Linux's default when it cannot be read)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A free loopback port of ``kind`` that a server started later can still have.

    The port is picked below the kernel's ephemeral range: a port the kernel handed out for ``bind(0)`` could be handed
    out again to the emulator (which listens on port 0) or to any client socket before the server that needs it binds
    it. Falls back to the kernel's pick when no port below the range is free after a few tries.
    """
    low, _ = _ephemeral_range()
    candidates = random.sample(range(max(1024, low - 12000), low), k=32) if low > 2048 else []
    for port in [*candidates, 0]:
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise DemoError("no free port on 127.0.0.1")


def _free_udp_port() -> int:
    return _free_port(socket.SOCK_DGRAM)


def _script(name: str) -> str:
    """The console script ``name`` next to this interpreter (the project's virtual environment), else on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise DemoError(f"{name} is not installed: run `make demo` from the repository")
    return found


@dataclass
class Child:
    """One server process of the demo and the first line it printed when ready."""

    name: str
    process: asyncio.subprocess.Process
    ready_line: str

    async def stop(self, timeout: float = 10.0) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()


@dataclass
class Demo:
    """The three servers, their URLs, and the gateway's current profile."""

    profile: str
    service_port: int
    gateway_port: int
    server_port: int
    with_delete: bool = False
    log: IO[str] | None = None
    service_mode: str = "default"
    service_connection_string: str = ""
    service: str = "signalr"
    """``signalr`` (Azure SignalR Service) or ``webpubsub`` (Azure Web PubSub)."""
    flow_port: int = 0
    """The UDP port of chat-server's hop collector; every other server publishes its hops there."""
    children: dict[str, Child] = field(default_factory=dict)

    @property
    def flow_to(self) -> list[str]:
        """The option that makes a server publish its hops to the collector."""
        return ["--flow-to", f"127.0.0.1:{self.flow_port}"]

    @property
    def flow_url(self) -> str:
        """chat-server's hop stream (Server-Sent Events)."""
        return f"http://127.0.0.1:{self.server_port}/flow"

    @property
    def service_command(self) -> str:
        return "webpubsub-emulator" if self.service == "webpubsub" else "signalr-emulator"

    @property
    def service_url(self) -> str:
        return f"http://127.0.0.1:{self.service_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/"

    @property
    def chat_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/chat"

    def summary(self) -> dict[str, str]:
        """The ``--no-tui`` line; Web PubSub has no service mode."""
        info = {
            "chat_url": self.chat_url,
            "web_url": self.web_url,
            "gateway_url": self.gateway_url,
            "service_url": self.service_url,
            "profile": self.profile,
            "service": self.service,
            "flow_url": self.flow_url,
        }
        if self.service == "signalr":
            info["service_mode"] = self.service_mode
        return info

    async def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=self.log if self.log is not None else None,
            env=full_env,
            start_new_session=True,
        )
        assert process.stdout is not None
        try:
            raw = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            raw = b""
        line = raw.decode(errors="replace").strip()
        if not line:
            await Child(name, process, "").stop()
            raise DemoError(f"{name} did not start: {self._last_log_line() or 'see its error above'}")
        child = Child(name, process, line)
        self.children[name] = child
        return child

    def _last_log_line(self) -> str:
        """The last line the servers logged, when their logs go to a file (the TUI owns the terminal)."""
        if self.log is None:
            return ""
        self.log.flush()
        lines = Path(self.log.name).read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""

    async def start_service(self) -> None:
        if self.service == "webpubsub":
            await self.start_webpubsub()
            return
        # The emulator makes a fresh AccessKey and prints it in its connection string, which goes to the app
        # server through its environment: the key never stands on a command line, where `ps` would show it.
        argv = [_script("signalr-emulator"), "--port", str(self.service_port), "--service-mode", self.service_mode]
        argv += self.flow_to
        if self.service_mode == "serverless":
            # Serverless: client invocations reach the app server as upstream webhooks.
            argv += ["--upstream", f"http://127.0.0.1:{self.server_port}/upstream/{{hub}}/{{category}}/{{event}}"]
        child = await self._spawn("signalr-emulator", argv)
        match = re.search(r"Port=(\d+);", child.ready_line)
        if match is None or "AccessKey=" not in child.ready_line:
            raise DemoError("signalr-emulator printed no connection string")
        self.service_port = int(match.group(1))
        self.service_connection_string = child.ready_line.rstrip(";") + ";"

    async def start_webpubsub(self) -> None:
        """``webpubsub-emulator`` with the chat server's event handler (its port is known before it starts); as for
        SignalR, the fresh AccessKey goes to the app server through its environment, never a command line."""
        handler = f"http://127.0.0.1:{self.server_port}/eventhandler"
        argv = [_script("webpubsub-emulator"), "--port", str(self.service_port), "--event-handler", handler]
        argv += self.flow_to
        child = await self._spawn("webpubsub-emulator", argv)
        match = re.search(r"Port=(\d+);", child.ready_line)
        if match is None or "AccessKey=" not in child.ready_line:
            raise DemoError("webpubsub-emulator printed no connection string")
        self.service_port = int(match.group(1))
        self.service_connection_string = child.ready_line.rstrip(";") + ";"

    async def start_gateway(self) -> None:
        argv = [
            _script("apim-gateway"),
            "--backend",
            self.service_url,
            "--profile",
            self.profile,
            "--port",
            str(self.gateway_port),
            *self.flow_to,
        ]
        if self.with_delete:
            argv.append("--with-delete")
        await self._spawn("apim-gateway", argv)

    async def start_server(self) -> None:
        connection_string = f"{self.service_connection_string}ClientEndpoint={self.gateway_url};"
        flow = ["--flow-port", str(self.flow_port)]
        if self.service == "webpubsub":
            await self._spawn(
                "chat-server",
                [_script("chat-server"), "--service", "webpubsub", "--port", str(self.server_port), *flow],
                env={"Azure__WebPubSub__ConnectionString": connection_string},
            )
            return
        await self._spawn(
            "chat-server",
            [_script("chat-server"), "--port", str(self.server_port), "--service-mode", self.service_mode, *flow],
            env={"Azure__SignalR__ConnectionString": connection_string},
        )
        if self.service_mode == "default":
            await self._wait_for_server_connections()

    async def _wait_for_server_connections(self) -> None:
        """Default mode: a client is refused until the app server's server connections are up, so wait for them
        (``/healthz`` counts them)."""
        url = f"http://127.0.0.1:{self.server_port}/healthz"
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT
        async with aiohttp.ClientSession() as session:
            while asyncio.get_running_loop().time() < deadline:
                with contextlib.suppress(aiohttp.ClientError, ValueError):
                    async with session.get(url) as response:
                        status = (await response.json()).get("server_connections", {})
                        if status.get("connected", 0) >= status.get("wanted", 1):
                            return
                await asyncio.sleep(0.05)
        raise DemoError(f"chat-server opened no server connection: {self._last_log_line() or 'see its log above'}")

    async def start(self) -> None:
        await self.start_service()
        await self.start_gateway()
        await self.start_server()

    async def switch_profile(self, profile: str) -> None:
        """Restart the gateway with ``profile`` on the same port (APIM serves one profile per suffix)."""
        if profile not in PROFILES:
            raise DemoError(f"unknown APIM profile {profile!r}")
        if profile == self.profile:
            return
        gateway = self.children.pop("apim-gateway", None)
        if gateway is not None:
            await gateway.stop()
        self.profile = profile
        await self.start_gateway()

    async def stop(self) -> None:
        for name in ("chat-server", "apim-gateway", self.service_command):
            child = self.children.pop(name, None)
            if child is not None:
                await child.stop()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chat-demo",
        description="Run the local SignalR service (or Web PubSub), the APIM gateway and the app server, then chat "
        "through them.",
    )
    parser.add_argument(
        "--service",
        choices=SERVICES,
        default="signalr",
        help="the Azure service: signalr (Azure SignalR Service) or webpubsub (Azure Web PubSub)",
    )
    parser.add_argument(
        "--profile",
        choices=(*PROFILES, WEBPUBSUB_PROFILE),
        default=None,
        help="APIM profile of the gateway (webpubsub for --service webpubsub)",
    )
    parser.add_argument(
        "--service-mode",
        choices=SERVICE_MODES,
        default=None,
        help="how the service reaches the app server: default (server connections) or serverless (upstream + REST)",
    )
    parser.add_argument("--transport", choices=("websockets", "sse", "longpolling", "sse-lp"), default=None)
    parser.add_argument(
        "--protocol",
        choices=PROTOCOL_NAMES,
        default=None,
        help="hub protocol the chat speaks (default json; MessagePack cannot go over sse)",
    )
    parser.add_argument("--name", default=None, help="chat name (asked for when omitted)")
    parser.add_argument("--no-tui", action="store_true", help="serve only; print one JSON line when ready")
    parser.add_argument("--strict-apim", action="store_true", help="never switch the gateway profile")
    parser.add_argument("--with-delete", action="store_true", help="add the DELETE operation LongPolling needs")
    parser.add_argument("--service-port", type=int, default=0)
    parser.add_argument("--gateway-port", type=int, default=0)
    parser.add_argument("--server-port", type=int, default=0)
    parser.add_argument(
        "--record",
        metavar="FILE",
        default=None,
        help="write every message's journey to FILE as Markdown with Mermaid sequence diagrams while the demo runs",
    )
    return parser


def _resolve(args: argparse.Namespace) -> tuple[str, str]:
    """The profile and transport to start with: each defaults to match the other.

    Raises :class:`ValueError` with the reason for options that do not go with the service.
    """
    if args.service == "webpubsub":
        given = [
            option
            for option in SIGNALR_ONLY
            if getattr(args, option.removeprefix("--").replace("-", "_")) not in (None, False)
        ]
        if given:
            raise ValueError(f"{', '.join(given)} apply to SignalR only (Web PubSub has one WebSocket transport)")
        if args.profile not in (None, WEBPUBSUB_PROFILE):
            raise ValueError(f"--profile {args.profile} is a SignalR profile; Web PubSub's is {WEBPUBSUB_PROFILE}")
        args.profile, args.transport, args.protocol = WEBPUBSUB_PROFILE, "websockets", "json"
        return args.profile, args.transport
    if args.profile == WEBPUBSUB_PROFILE:
        raise ValueError("--profile webpubsub needs --service webpubsub")
    if args.service_mode is None:
        args.service_mode = "default"
    if args.protocol is None:
        args.protocol = "json"
    if args.profile is None:
        args.profile = "sse-lp" if args.transport in ("sse", "longpolling", "sse-lp") else "websocket"
    if args.transport is None:
        args.transport = "websockets" if args.profile == "websocket" else "sse-lp"
    return args.profile, args.transport


def _record_title(args: argparse.Namespace) -> str:
    if args.service == "webpubsub":
        return "chat-demo: Azure Web PubSub through APIM"
    mode = (args.service_mode or "default").capitalize()
    transport = TransportChoice(args.transport).label
    return f"chat-demo: Azure SignalR Service, {mode} mode, {transport} through APIM (profile {args.profile})"


async def _record(recorder: Recorder, feed: FlowFeed | None) -> None:
    """Write the journeys as they complete; with ``feed``, follow the app server's hop stream into the recording
    (without the terminal chat, which otherwise shares its journeys with the recorder)."""
    follow = asyncio.ensure_future(feed.run()) if feed is not None else None
    try:
        while True:
            await asyncio.sleep(RECORD_FLUSH_INTERVAL)
            recorder.flush()
    finally:
        if follow is not None:
            follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follow


async def _serve(demo: Demo) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps(demo.summary()), flush=True)
    waiters = [asyncio.ensure_future(c.process.wait()) for c in demo.children.values()]
    stopper = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait([stopper, *waiters], return_when=asyncio.FIRST_COMPLETED)
    for task in (stopper, *waiters):
        task.cancel()
    if stopper not in done:
        crashed = [c.name for c in demo.children.values() if c.process.returncode is not None]
        raise DemoError(f"{', '.join(crashed)} exited unexpectedly")


async def _run_tui(demo: Demo, args: argparse.Namespace, journeys: JourneyBook | None) -> None:
    from .app import ChatApp, freeze_startup_heap

    freeze_startup_heap()
    if demo.service == "webpubsub":
        # One WebSocket API at the gateway: no profile to switch; the app server's negotiate answers for Web PubSub.
        webpubsub = ChatApp(
            demo.chat_url,
            TransportChoice.WEBSOCKETS,
            name=args.name,
            gateway_profile=demo.profile,
            service="webpubsub",
            flow_url=demo.flow_url,
            journeys=journeys,
        )
        await webpubsub.run_async()
        return

    app = ChatApp(
        demo.chat_url,
        TransportChoice(args.transport),
        name=args.name,
        gateway_profile=demo.profile,
        profile_switcher=demo.switch_profile,
        strict_apim=args.strict_apim,
        service_mode=demo.service_mode,
        protocol=protocol_named(args.protocol),
        flow_url=demo.flow_url,
        journeys=journeys,
    )
    await app.run_async()


async def _main(args: argparse.Namespace) -> int:
    ports = {k: getattr(args, k) or _free_port() for k in ("gateway_port", "server_port")}
    flow_port = _free_udp_port()
    recorder: Recorder | None = None
    if args.record is not None:
        try:
            recorder = Recorder(args.record, title=_record_title(args))
        except OSError as exc:
            raise DemoError(f"cannot write the recording {args.record}: {exc.strerror or exc}") from None
    log: IO[str] | None = None
    if not args.no_tui:
        # The terminal belongs to the chat UI: the servers' logs go to a file instead.
        log = tempfile.NamedTemporaryFile("w", prefix="chat-demo-", suffix=".log", delete=False)
    demo = Demo(
        args.profile,
        args.service_port,
        ports["gateway_port"],
        ports["server_port"],
        args.with_delete,
        log,
        service_mode=args.service_mode or "default",
        service=args.service,
        flow_port=flow_port,
    )
    recording: asyncio.Task[None] | None = None
    try:
        await demo.start()
        if recorder is not None:
            recorder_feed = FlowFeed(demo.flow_url, recorder.add) if args.no_tui else None
            recording = asyncio.ensure_future(_record(recorder, recorder_feed))
        if args.no_tui:
            await _serve(demo)
        else:
            await _run_tui(demo, args, recorder.book if recorder is not None else None)
    finally:
        if recording is not None:
            recording.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recording
        await demo.stop()
        if log is not None:
            log.close()
            print(f"server logs: {log.name}", file=sys.stderr)
        if recorder is not None:
            path = recorder.close()
            problem = f" (not complete: {recorder.error})" if recorder.error is not None else ""
            print(f"flow recording: {path} ({recorder.written} journeys){problem}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        _resolve(args)
    except ValueError as exc:
        parser.error(str(exc))
    problem = why_not(TransportChoice(args.transport), protocol_named(args.protocol), lambda choice: choice.value)
    if problem is not None:
        parser.error(f"--protocol {args.protocol} with --transport {args.transport}: {problem}")
    try:
        return asyncio.run(_main(args))
    except DemoError as exc:
        print(f"chat-demo: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
