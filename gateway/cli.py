"""``apim-gateway``: run the local API Management stand-in, or export its model as infrastructure code.

    apim-gateway --backend URL [--profile websocket|sse-lp|webpubsub] [--hub HUB] [--config FILE]
                 [--host 127.0.0.1] [--port 8080] [--subscription-key KEY]... [--with-delete] [--buffer-sse]
                 [--no-options] [--keep-host] [--strip-subscription-key] [--max-ws-message BYTES]
                 [--flow-to 127.0.0.1:PORT] [--loop auto|asyncio|uvloop]
    apim-gateway export --profile websocket|sse-lp|webpubsub [--hub HUB] --format bicep|azcli|terraform|arm
                 [--service-url https://<res>.service.signalr.net | https://<res>.webpubsub.azure.com]
                 [--apim-name NAME] [--with-delete] [--sku SKU] [--subscription-required]
                 [--strip-subscription-key] [--config FILE] [--output FILE]

``--flow-to`` publishes a hop event per forwarded request, WebSocket upgrade and relayed message to a loopback UDP
address (``flow/``; off by default, and then nothing changes).

``--profile webpubsub`` is Azure Web PubSub's client endpoint for one hub (``--hub``, default ``chat``) as one
WebSocket API ``client/hubs/<hub>`` (docs/apim.md §9); ``--backend`` is then the Web PubSub service (or its emulator).

``--buffer-sse``, ``--no-options`` and ``--keep-host`` (and leaving out ``--with-delete``) reproduce APIM
misconfigurations locally; each access line whose outcome one caused names it (`gateway.misconfig`), and ``export``
refuses them: it writes only working configurations.

When the gateway accepts connections it prints one line on stdout (flushed):
``APIM gateway listening on http://127.0.0.1:<port> (profile <p>) -> <backend>``.
Logs (one access line per request, secrets redacted) go to stderr. SIGINT/SIGTERM stop it (exit 0).
Bad input prints one line on stderr and exits 2; a runtime failure (port in use) exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from flow.publisher import FlowPublisher, add_flow_argument
from gateway.export import ExportError, ExportFormat, ExportOptions, export_model, signalr_host_from_url
from gateway.misconfig import Misconfigurations, rebuffered, removed_options
from gateway.model import DEFAULT_TIMEOUT_S, ApimModel, ModelError, Operation, load_model_file, resolve_backend
from gateway.profiles import (
    DEFAULT_HUB,
    ProfileName,
    build_profile,
    with_buffered_responses,
    with_delete,
    with_stripped_subscription_key,
    with_subscription_required,
    without_options,
)
from gateway.proxy import DEFAULT_MAX_WS_MESSAGE, ApimGateway
from gateway.redaction import RedactingFilter
from gateway.routing import ON_HANDSHAKE
from signalr.event_loop import add_loop_argument, running_loop_name
from signalr.http_limits import add_limit_arguments, install_bad_request_log_filter, limits_from_args

__all__ = ["listening_line", "main"]

PROG = "apim-gateway"
log = logging.getLogger("gateway")
_HUB_HELP = f"the webpubsub profile's hub: its API serves client/hubs/<hub> (default {DEFAULT_HUB})"


class UsageError(Exception):
    """Bad command-line input or configuration: exit 2."""


def listening_line(url: str, profile: str, backend: str) -> str:
    """The one stdout line that tells a parent process the gateway is ready."""
    return f"APIM gateway listening on {url} (profile {profile}) -> {backend}"


# Secrets given on the command line (subscription keys), scrubbed from error messages like tokens and JWTs.
_secrets = RedactingFilter()


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {_secrets.scrub(message)}", file=sys.stderr, flush=True)
    return code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line a user can act on, no usage dump (argparse's default prints the usage first).
        sys.exit(_fail(f"{message} (see {self.prog} --help)", 2))


def _run_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Local stand-in for Azure API Management in front of Azure SignalR Service or Azure Web PubSub "
        "(or their emulators). Subcommand: 'apim-gateway export --help' writes the same model as "
        "Bicep, ARM, az CLI or Terraform.",
    )
    parser.add_argument(
        "--backend",
        required=True,
        help="service URL, e.g. http://127.0.0.1:8888; a dead port reproduces an unreachable service URL (500), "
        "the app server's URL a service URL pointing at the wrong server (its 404s pass through)",
    )
    parser.add_argument(
        "--profile",
        choices=[p.value for p in ProfileName],
        help="built-in API configuration (default: websocket). websocket and sse-lp are the SignalR guide's; each "
        "reproduces the other's missing transports: websocket answers SSE and LongPolling with 404, sse-lp never "
        "upgrades a WebSocket. webpubsub is Azure Web PubSub's WebSocket API client/hubs/<hub>",
    )
    parser.add_argument("--hub", help=_HUB_HELP)
    parser.add_argument("--config", metavar="FILE", help="custom APIM model (JSON, YAML or TOML) instead of --profile")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on; 0 = any free port (default 8080)")
    parser.add_argument(
        "--subscription-key",
        action="append",
        default=[],
        metavar="KEY",
        help="a valid subscription key (repeat for primary and secondary); with a built-in profile every API "
        "requires a key, which reproduces 'subscription required': a browser's preflight, which cannot send the "
        "key header, gets 401",
    )
    parser.add_argument(
        "--with-delete",
        action="store_true",
        help="add the DELETE / operation LongPolling's stop sends; without it the gateway reproduces the seed "
        "doc's gap (stop gets 404, harmless)",
    )
    reproduce = parser.add_argument_group(
        "reproducing APIM misconfigurations",
        "local only: each access line they affect names the switch, and 'export' refuses them",
    )
    reproduce.add_argument(
        "--buffer-sse",
        action="store_true",
        help="reproduces a missing buffer-response=\"false\" on 'connect get': responses are buffered in 8 KB "
        "blocks as APIM does by default, so Server-Sent Events stall",
    )
    reproduce.add_argument(
        "--no-options",
        action="store_true",
        help="reproduces an API imported without its OPTIONS operations: a browser's CORS preflight gets "
        "APIM's 404 without CORS headers",
    )
    reproduce.add_argument(
        "--keep-host",
        action="store_true",
        help="reproduces a Host header not rewritten to the backend's (a set-header Host policy): the service "
        "gets the gateway's host name (signalr-emulator --public-host refuses it)",
    )
    parser.add_argument(
        "--strip-subscription-key",
        action="store_true",
        help="do not forward the subscription key (header and query parameter) to the backend",
    )
    parser.add_argument(
        "--max-ws-message",
        type=int,
        default=DEFAULT_MAX_WS_MESSAGE,
        metavar="BYTES",
        help=f"largest WebSocket message relayed, either way; a larger one closes its sender with 1009 "
        f"(default {DEFAULT_MAX_WS_MESSAGE}; 0 = no limit)",
    )
    add_flow_argument(parser)
    add_limit_arguments(parser)
    add_loop_argument(parser)
    return parser


def _export_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=f"{PROG} export",
        description="Write the gateway's APIM model as deployable infrastructure code (stdout). "
        "One API Management instance serves one profile.",
    )
    parser.add_argument(
        "--profile",
        action="append",
        choices=[p.value for p in ProfileName],
        help="profile to export (giving two is refused: websocket and sse-lp share the suffix 'client', and "
        "webpubsub fronts another service)",
    )
    parser.add_argument("--hub", help=_HUB_HELP)
    parser.add_argument("--config", metavar="FILE", help="custom APIM model instead of --profile")
    parser.add_argument("--format", required=True, choices=[f.value for f in ExportFormat])
    parser.add_argument(
        "--service-url",
        help="https://<resource>.service.signalr.net, or https://<resource>.webpubsub.azure.com for webpubsub "
        "(else a deploy-time parameter)",
    )
    parser.add_argument("--apim-name", help="existing API Management instance (else a deploy-time parameter)")
    parser.add_argument("--with-delete", action="store_true", help="add DELETE / for LongPolling stop")
    parser.add_argument("--sku", help="the instance's tier; Consumption is refused for WebSocket APIs")
    parser.add_argument("--subscription-required", action="store_true", help="require a subscription key on every API")
    parser.add_argument(
        "--strip-subscription-key",
        action="store_true",
        help="add a policy that removes the subscription key (header and query) before forwarding",
    )
    parser.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
    for switch in _RUN_ONLY_SWITCHES:  # accepted only to be refused with a reason (see _export)
        parser.add_argument(switch, action="store_true", help=argparse.SUPPRESS)
    return parser


# The gateway's switches that reproduce a misconfiguration: export writes only working configurations.
_RUN_ONLY_SWITCHES = ("--buffer-sse", "--no-options", "--keep-host")


def _with_delete(model: ApimModel, warnings: list[str]) -> ApimModel:
    """``--with-delete`` of both commands: add ``DELETE /``, or warn when no API serves LongPolling."""
    extended = with_delete(model)
    if extended == model:
        warnings.append(f"--with-delete has no effect: profile {model.profile} has no LongPolling API")
    return extended


def _build_run_model(args: argparse.Namespace) -> tuple[ApimModel, Misconfigurations, list[str]]:
    warnings: list[str] = []
    if args.config and args.profile:
        raise UsageError("use either --profile or --config, not both")
    if args.config and args.hub is not None:
        raise UsageError("--hub applies to --profile webpubsub, not to --config (write the hub into the config)")
    if args.config:
        model = load_model_file(args.config)
    else:
        model = build_profile(args.profile or ProfileName.WEBSOCKET.value, hub=args.hub)
        if args.subscription_key:
            model = with_subscription_required(model)
    if args.with_delete:
        model = _with_delete(model, warnings)
    healthy = model
    if args.buffer_sse:
        buffered = with_buffered_responses(model)
        if buffered == model:
            warnings.append(f"--buffer-sse has no effect: profile {model.profile} has no unbuffered operation")
        else:
            warnings.append(
                "--buffer-sse: responses of 'connect get' are buffered (APIM's default without the "
                'buffer-response="false" policy); Server-Sent Events will stall'
            )
        model = buffered
    if args.no_options:
        model = without_options(model)
        stripped = sorted(removed_options(healthy, model))
        if stripped:
            warnings.append(
                f"--no-options: API {', '.join(stripped)} has no OPTIONS operations; a browser's CORS preflight "
                "gets APIM's 404 without CORS headers"
            )
        else:
            warnings.append(f"--no-options has no effect: profile {model.profile} has no OPTIONS operation")
    if args.keep_host:
        warnings.append(
            "--keep-host: the backend gets the client's Host header instead of its own host name; a service "
            "that picks its resource by Host (Azure SignalR Service) does not find it"
        )
    reproduce = Misconfigurations(
        keep_host=args.keep_host, no_options=removed_options(healthy, model), buffered=rebuffered(healthy, model)
    )
    if args.strip_subscription_key:
        model = with_stripped_subscription_key(model)
    required = [api.name for api in model.apis if api.subscription_required]
    if required and not args.subscription_key:
        warnings.append(
            f"API {', '.join(required)} requires a subscription key but no --subscription-key was given: "
            "every request to it gets 401"
        )
    if args.subscription_key and not required:
        warnings.append("--subscription-key is ignored: no API of the config requires a subscription")
    return model, reproduce, warnings


def _describe_operation(op: Operation) -> str:
    notes = [op.name]
    policy = op.forward_request
    if not policy.buffer_response:
        notes.append("unbuffered")
    if policy.timeout_s != DEFAULT_TIMEOUT_S:
        notes.append(f"timeout {policy.timeout_s}s")
    return f"{op.method} {op.url_template} [{', '.join(notes)}]"


def _describe_routes(model: ApimModel) -> list[str]:
    lines = []
    for api in model.apis:
        if api.is_websocket:
            ops = f"GET / with Upgrade [{ON_HANDSHAKE}]"
        else:
            ops = ", ".join(_describe_operation(op) for op in api.operations)
        key = ", subscription required" if api.subscription_required else ""
        lines.append(f"API {api.name} ({api.type}{key}) /{api.suffix} -> {api.service_url}: {ops}")
    return lines


def _configure_logging(secrets: Sequence[str], query_names: Sequence[str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    redactor = RedactingFilter(query_names)
    for secret in secrets:
        redactor.add_secret(secret)
    handler.addFilter(redactor)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    install_bad_request_log_filter()


async def _serve(gateway: ApimGateway, model: ApimModel, backend: str) -> None:
    try:
        url = await gateway.start()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise RuntimeError(f"cannot listen on {gateway.host}:{gateway.port}: {reason}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    for line in _describe_routes(gateway.model):
        log.info("%s", line)
    log.info("event loop: %s", running_loop_name())
    print(listening_line(url, model.profile, backend), flush=True)
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        await gateway.stop()


def _run(argv: Sequence[str]) -> int:
    args = _run_parser().parse_args(argv)
    backend = args.backend.rstrip("/")
    try:
        model, reproduce, warnings = _build_run_model(args)
        resolved = resolve_backend(model, backend)
    except (ModelError, UsageError, ValueError) as exc:
        return _fail(str(exc), 2)
    if not 0 <= args.port <= 65535:
        return _fail(f"--port: {args.port} is not a TCP port", 2)
    if args.max_ws_message < 0:
        return _fail(f"--max-ws-message: {args.max_ws_message} is not a size in bytes (0 = no limit)", 2)
    publisher = FlowPublisher(args.flow_to)
    gateway = ApimGateway(
        resolved,
        subscription_keys=args.subscription_key,
        host=args.host,
        port=args.port,
        max_ws_message=args.max_ws_message,
        http_limits=limits_from_args(args),
        reproduce=reproduce,
        flow=publisher,
    )
    _configure_logging(args.subscription_key, sorted(gateway.secret_query_names))
    for warning in warnings:
        log.warning("%s", warning)
    if args.flow_to is not None:
        log.info("flow: publishing hop events to udp://%s:%d", *args.flow_to)
    try:
        args.loop.run(_serve(gateway, model, backend))
    except RuntimeError as exc:
        return _fail(str(exc), 1)
    except KeyboardInterrupt:
        return 0
    finally:
        publisher.close()
    return 0


def _export_command(argv: Sequence[str]) -> str:
    shown: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--output", "-o"):
            skip = True
            continue
        if arg.startswith("--output="):
            continue
        shown.append(arg)
    return f"{PROG} export {shlex.join(shown)}"


def _build_export_model(args: argparse.Namespace) -> tuple[ApimModel, list[str]]:
    warnings: list[str] = []
    profiles = list(dict.fromkeys(args.profile or []))
    if args.config and profiles:
        raise UsageError("use either --profile or --config, not both")
    if args.config and args.hub is not None:
        raise UsageError("--hub applies to --profile webpubsub, not to --config (write the hub into the config)")
    if args.config:
        model = load_model_file(args.config)
    elif not profiles:
        raise UsageError(f"--profile ({', '.join(p.value for p in ProfileName)}) or --config is required")
    elif len(profiles) == 1:
        model = build_profile(profiles[0], hub=args.hub)
    else:
        if ProfileName.WEBPUBSUB.value in profiles:
            others = " and ".join(p for p in profiles if p != ProfileName.WEBPUBSUB.value)
            raise ExportError(
                f"refusing to export webpubsub with {others}: webpubsub fronts Azure Web PubSub, {others} Azure "
                "SignalR Service, and one export has one service host; export each profile on its own"
            )
        models = [build_profile(p) for p in profiles]
        try:
            model = ApimModel(profile="+".join(profiles), apis=tuple(a for m in models for a in m.apis))
        except ModelError as exc:
            raise ExportError(
                f"refusing to export {' and '.join(profiles)} onto one API Management instance: {exc}. "
                "Export one profile per instance (a path prefix per profile is unverified and not offered)"
            ) from None
    if args.with_delete:
        model = _with_delete(model, warnings)
    if args.subscription_required:
        model = with_subscription_required(model)
    if args.strip_subscription_key:
        model = with_stripped_subscription_key(model)
    return model, warnings


def _export(argv: Sequence[str]) -> int:
    args = _export_parser().parse_args(argv)
    broken = [s for s in _RUN_ONLY_SWITCHES if getattr(args, s.removeprefix("--").replace("-", "_"))]
    if broken:
        return _fail(
            f"{', '.join(broken)} only reproduce{'s' if len(broken) == 1 else ''} a misconfiguration on the local "
            "gateway; export writes working configurations only (leave "
            f"{'it' if len(broken) == 1 else 'them'} out)",
            2,
        )
    try:
        model, warnings = _build_export_model(args)
        host = signalr_host_from_url(args.service_url, model.service) if args.service_url else None
        options = ExportOptions(
            apim_name=args.apim_name, signalr_host=host, sku=args.sku, command=_export_command(argv)
        )
        result = export_model(model, args.format, options)
    except (ModelError, ExportError, UsageError, ValueError) as exc:
        return _fail(str(exc), 2)
    for warning in (*warnings, *result.warnings):
        print(f"{PROG} export: warning: {warning}", file=sys.stderr)
    if args.output:
        try:
            Path(args.output).write_text(result.text, encoding="utf-8")
        except OSError as exc:
            return _fail(f"cannot write {args.output}: {exc.strerror or exc}", 1)
    else:
        sys.stdout.write(result.text)
        sys.stdout.flush()
    print(
        f"{PROG} export: after deploying, append to the app server's connection string: "
        f"ClientEndpoint={result.client_endpoint}",
        file=sys.stderr,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``apim-gateway`` console script; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    for n, arg in enumerate(args):  # before parsing, so that no error message can echo a key
        if arg == "--subscription-key" and n + 1 < len(args):
            _secrets.add_secret(args[n + 1])
        elif arg.startswith("--subscription-key="):
            _secrets.add_secret(arg.partition("=")[2])
    if args and args[0] == "export":
        return _export(args[1:])
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
