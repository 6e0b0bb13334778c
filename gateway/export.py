"""Exporters: the same `ApimModel` the gateway runs, as deployable infrastructure code.

Formats: Bicep, ARM JSON (what Bicep compiles to; testable without the Bicep CLI), an az CLI
script, and Terraform (azurerm). Each output deploys one profile onto an *existing* API
Management instance, in front of the model's service (Azure SignalR Service or Azure Web PubSub, `ServiceText`),
and handles the pitfalls of docs/apim.md §7:

1. suffixes never carry a leading/trailing ``/`` (the model strips them);
2. ``subscriptionRequired`` is always written (defaults differ between portal/ARM/Terraform and
   az), and every az operation gets an explicit ``--operation-id`` so re-runs do not duplicate;
3. WebSocket APIs get type ``websocket``, protocol ``wss`` and a ``wss://`` service URL; the
   implicit onHandshake operation is never declared;
4. the Consumption tier is refused for WebSocket APIs and warned about for SSE/LongPolling;
5. one profile per instance: a model whose suffixes clash cannot even be built (`ModelError`);
6. operation-scope policies in az go through ``az rest`` with ``format: rawxml``;
7. an API with ``strip_subscription_key`` gets an API-scope policy that deletes the subscription key header
   (``set-header``) and query parameter (``set-query-parameter``) before forwarding;
8. the ClientEndpoint to append to the connection string is printed.

All functions are pure: model in, text out.
"""

from __future__ import annotations

import html
import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from gateway.model import (
    DEFAULT_TIMEOUT_S,
    SIGNALR_PLACEHOLDER,
    Api,
    ApimModel,
    ForwardRequest,
    Operation,
    Service,
    SubscriptionKeyNames,
)

__all__ = [
    "ARM_API_VERSION",
    "ExportError",
    "ExportFormat",
    "ExportOptions",
    "ExportResult",
    "ServiceText",
    "api_policy_xml",
    "client_endpoint",
    "export_model",
    "policy_xml",
    "service_text",
    "signalr_host_from_url",
]

ARM_API_VERSION = "2022-08-01"
T_SERVICE = "Microsoft.ApiManagement/service"
T_API = "Microsoft.ApiManagement/service/apis"
T_OPERATION = "Microsoft.ApiManagement/service/apis/operations"
T_POLICY = "Microsoft.ApiManagement/service/apis/operations/policies"
T_API_POLICY = "Microsoft.ApiManagement/service/apis/policies"

_TEMPLATE_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_\-]*)\}")
# RFC 1123 labels: letters, digits and inner hyphens, 1-63 characters each.
_DNS_NAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9-]{1,63}(?<!-))*")


@dataclass(frozen=True)
class ServiceText:
    """How the exports name the service that ``{signalr}`` stands for.

    title: the service's name in comments and messages; short: its short name.
    domain: the DNS domain of its resources (``<resource>.<domain>``).
    host_param: the Bicep/ARM parameter of its host; shell_var and tf_var: the same in az and Terraform.
    script: the az script's suggested file name.
    """

    title: str
    short: str
    domain: str
    host_param: str
    shell_var: str
    tf_var: str
    script: str

    @property
    def example_url(self) -> str:
        return f"https://<resource>.{self.domain}"


_SERVICE_TEXTS = {
    Service.SIGNALR: ServiceText(
        title="Azure SignalR Service",
        short="SignalR",
        domain="service.signalr.net",
        host_param="signalrHost",
        shell_var="SIGNALR",
        tf_var="signalr_host",
        script="signalr-apim.sh",
    ),
    # The client access URL is wss://<resource>.webpubsub.azure.com/client/hubs/<hub>?access_token=<token>
    # (https://learn.microsoft.com/azure/azure-web-pubsub/reference-client-sdk-python).
    Service.WEBPUBSUB: ServiceText(
        title="Azure Web PubSub",
        short="Web PubSub",
        domain="webpubsub.azure.com",
        host_param="webpubsubHost",
        shell_var="WEBPUBSUB",
        tf_var="webpubsub_host",
        script="webpubsub-apim.sh",
    ),
}


def service_text(service: Service | str) -> ServiceText:
    """The export names of a service (`Service` or its value)."""
    return _SERVICE_TEXTS[Service(service)]


class ExportError(ValueError):
    """The model cannot be exported as asked; the message says why and what to do instead."""


class ExportFormat(StrEnum):
    BICEP = "bicep"
    ARM = "arm"
    AZCLI = "azcli"
    TERRAFORM = "terraform"


@dataclass(frozen=True)
class ExportOptions:
    """Deployment inputs known at export time; what is None becomes a required parameter.

    apim_name: the existing API Management instance.
    signalr_host: the service's host, ``<resource>.service.signalr.net`` or ``<resource>.webpubsub.azure.com``
        (see `signalr_host_from_url`).
    sku: the instance's tier, if known, for the tier checks.
    command: the command line that produced the output, quoted in its header.
    """

    apim_name: str | None = None
    signalr_host: str | None = None
    sku: str | None = None
    command: str = ""


@dataclass(frozen=True)
class ExportResult:
    text: str
    warnings: tuple[str, ...]
    client_endpoint: str


def signalr_host_from_url(service_url: str, service: Service | str = Service.SIGNALR) -> str:
    """``https://<res>.service.signalr.net`` → ``<res>.service.signalr.net`` (lower-case, with a port if given); for
    ``service`` Web PubSub, ``https://<res>.webpubsub.azure.com`` likewise.

    The URL must be absolute and https: APIM's backend is the service's ``https://`` endpoint (docs/apim.md §1, §9),
    and an http backend would carry every access token in clear. The host is checked as a DNS name because it is
    written verbatim into Bicep, shell and Terraform text. Raises `ExportError` naming ``--service-url``; a host
    outside the service's domain (a custom domain) is allowed and only warned about by `export_model`.
    """
    text = service_text(service)
    example = text.example_url
    raw = service_url.strip()
    if any(c.isspace() or not c.isprintable() for c in raw):
        # urlsplit silently drops tabs and line breaks, so "https://a\nb" would become host "ab".
        raise ExportError(f"--service-url: {service_url!r} contains whitespace or control characters")
    parts = urlsplit(raw)
    if not parts.scheme or "://" not in raw:
        raise ExportError(f"--service-url: {service_url!r} is not an absolute URL; write {example}")
    if parts.scheme.lower() != "https":
        raise ExportError(
            f"--service-url: {service_url!r} must be https:// (APIM reaches {text.title} over https: {example})"
        )
    if parts.username is not None or parts.password is not None:
        raise ExportError(f"--service-url: the URL must be given without user info ({example})")
    host = parts.hostname
    if not host:
        raise ExportError(f"--service-url: {service_url!r} has no host ({example})")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in raw or "#" in raw:
        raise ExportError(
            f"--service-url: {service_url!r} must be the service's base URL, without path or query ({example})"
        )
    if not _DNS_NAME.fullmatch(host):
        raise ExportError(f"--service-url: {host!r} is not a valid host name")
    try:
        port = parts.port
    except ValueError:
        raise ExportError(f"--service-url: {service_url!r} has an invalid port") from None
    return host if port is None else f"{host}:{port}"


def _host_warnings(signalr_host: str | None, text: ServiceText) -> list[str]:
    """A host outside the service's domain may be a custom domain: warn, never refuse."""
    if signalr_host is None:
        return []
    host = signalr_host.rsplit(":", 1)[0] if signalr_host.count(":") == 1 else signalr_host
    if host.lower().endswith("." + text.domain):
        return []
    return [
        f"--service-url: host {host!r} is not <resource>.{text.domain} "
        f"(fine for a custom domain of the {text.short} resource; otherwise check the URL)"
    ]


def client_endpoint(apim_name: str | None) -> str:
    """The ClientEndpoint to append to the app server's connection string."""
    return f"https://{apim_name or '<apim-name>'}.azure-api.net"


def policy_xml(forward_request: ForwardRequest) -> str:
    """An operation-scope policy document: the seed doc's snippet, with `<base />` elsewhere."""
    attrs = ""
    if forward_request.timeout_s != DEFAULT_TIMEOUT_S:
        attrs += f' timeout="{forward_request.timeout_s}"'
    if not forward_request.buffer_response:
        attrs += ' buffer-response="false"'
    return (
        "<policies><inbound><base /></inbound>"
        f"<backend><forward-request{attrs} /></backend>"
        "<outbound><base /></outbound><on-error><base /></on-error></policies>"
    )


def api_policy_xml(api: Api) -> str | None:
    """The API-scope policy document, or None when the API needs none.

    With ``strip_subscription_key`` the key is removed from the request before it is forwarded, as the subscription
    docs advise (https://learn.microsoft.com/azure/api-management/api-management-subscriptions): ``set-header`` and
    ``set-query-parameter`` with ``exists-action="delete"``. They run in ``inbound``, the section that shapes the
    request sent to the backend; operations inherit them through ``<base />``.
    """
    if not api.strip_subscription_key:
        return None
    header = html.escape(api.subscription_key_names.header, quote=True)
    query = html.escape(api.subscription_key_names.query, quote=True)
    return (
        "<policies><inbound><base />"
        f'<set-header name="{header}" exists-action="delete" />'
        f'<set-query-parameter name="{query}" exists-action="delete" />'
        "</inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"
    )


def _policy_of(op: Operation) -> str | None:
    fr = op.policies.forward_request
    return None if fr is None else policy_xml(fr)


def _template_params(op: Operation) -> list[str]:
    return _TEMPLATE_PARAM.findall(op.url_template)


def _protocols(api: Api) -> list[str]:
    """Front-end protocols (how clients reach APIM), not the backend's scheme."""
    return ["wss"] if api.is_websocket else ["https"]


def _uniform_subscription(model: ApimModel) -> bool | None:
    values = {api.subscription_required for api in model.apis}
    return values.pop() if len(values) == 1 else None


def _check(model: ApimModel, options: ExportOptions) -> list[str]:
    warnings: list[str] = []
    sku = (options.sku or "").strip()
    if sku.lower() == "consumption":
        ws = [api.name for api in model.apis if api.is_websocket]
        if ws:
            # Web PubSub clients connect over WebSockets only: no HTTP API can stand in for them.
            instead = "" if model.service is Service.WEBPUBSUB else ", or the sse-lp profile"
            raise ExportError(
                f"refusing to export: the Consumption tier has no WebSocket APIs (API {', '.join(ws)}). "
                f"Use a Developer, Basic, Standard or Premium (v1 or v2) instance{instead}"
            )
        warnings.append(
            "the Consumption tier does not support long-running connections: Server-Sent Events streams "
            "and LongPolling polls may be cut; prefer a Developer, Basic, Standard or Premium instance"
        )
    for api in model.apis:
        if api.is_websocket and not api.service_url.startswith("wss://"):
            warnings.append(f"API {api.name}: service URL {api.service_url} is not wss://")
    return warnings


def _header(model: ApimModel, options: ExportOptions, comment: str) -> list[str]:
    if model.service is Service.WEBPUBSUB:
        lines = _webpubsub_header(model, options)
    else:
        lines = _signalr_header(model, options)
    if options.command:
        lines.insert(0, f"Generated by: {options.command}")
    return [f"{comment} {line}" for line in lines]


def _apis_line(model: ApimModel) -> str:
    return f"profile '{model.profile}' (APIs: {', '.join(f'{a.name} /{a.suffix}' for a in model.apis)})."


def _webpubsub_header(model: ApimModel, options: ExportOptions) -> list[str]:
    gateway = client_endpoint(options.apim_name).replace("https://", "wss://", 1)
    return [
        f"Azure Web PubSub behind Azure API Management: {_apis_line(model)}",
        "Clients connect to the client access URL the service's SDK mints, with scheme and host swapped for the",
        f"gateway's ({gateway}/{model.apis[0].suffix}?access_token=...); the token and the rest stay as minted.",
        f"Then append to the app server's connection string: ClientEndpoint={client_endpoint(options.apim_name)}",
        "(the app server swaps the host with it; azure-messaging-webpubsubservice itself ignores that key).",
        "No cors policy is needed: browsers do not preflight WebSocket handshakes.",
    ]


def _signalr_header(model: ApimModel, options: ExportOptions) -> list[str]:
    return [
        f"SignalR behind Azure API Management: {_apis_line(model)}",
        "One APIM instance serves one profile: both profiles use the URL suffix 'client'.",
        f"Then append to the app server's connection string: ClientEndpoint={client_endpoint(options.apim_name)}",
        "No cors policy is emitted: SignalR Service answers CORS preflights itself (the OPTIONS operations",
        "forward them). A cors policy at global or product scope adds Access-Control-* headers again",
        "(duplicate values): remove it or keep it away from these APIs.",
    ]


def _split_placeholder(url: str) -> list[str]:
    """The service URL split around ``{signalr}``: literal, host, literal, ..."""
    return url.split(SIGNALR_PLACEHOLDER)


def _interpolate(url: str, literal: Callable[[str], str], host: str) -> str:
    return host.join(literal(part) for part in _split_placeholder(url))


# ---------------------------------------------------------------------------------------------
# Bicep


def _bicep_str(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("${", "\\${").replace("\n", "\\n")
    return f"'{escaped}'"


def _bicep_literal(value: str) -> str:
    return _bicep_str(value)[1:-1]


def _ident(prefix: str, *names: str, taken: set[str]) -> str:
    base = prefix + "_" + "_".join(re.sub(r"[^A-Za-z0-9_]", "_", n) for n in names)
    ident, n = base, 2
    while ident in taken:
        ident, n = f"{base}{n}", n + 1
    taken.add(ident)
    return ident


def _host_description(text: ServiceText) -> str:
    return f"Host of the {text.short} resource, without scheme: <resource>.{text.domain}"


def _bicep(model: ApimModel, options: ExportOptions) -> str:
    uniform = _uniform_subscription(model)
    text = service_text(model.service)
    host_default = f" = {_bicep_str(options.signalr_host)}" if options.signalr_host else ""
    out = [*_header(model, options, "//"), ""]
    out += ["@description('Name of the existing API Management instance')"]
    out += [f"param apimName string{' = ' + _bicep_str(options.apim_name) if options.apim_name else ''}"]
    out += [f"@description({_bicep_str(_host_description(text))})"]
    out += [f"param {text.host_param} string{host_default}"]
    if uniform is not None:
        out += [f"param subscriptionRequired bool = {str(uniform).lower()}"]
    out += ["", f"resource apim '{T_SERVICE}@{ARM_API_VERSION}' existing = {{", "  name: apimName", "}"]
    taken: set[str] = {"apim"}
    for api in model.apis:
        api_id = _ident("api", api.name, taken=taken)
        url = "'" + _interpolate(api.service_url, _bicep_literal, f"${{{text.host_param}}}") + "'"
        sub = "subscriptionRequired" if uniform is not None else str(api.subscription_required).lower()
        out += ["", f"resource {api_id} '{T_API}@{ARM_API_VERSION}' = {{", "  parent: apim"]
        out += [f"  name: {_bicep_str(api.name)}", "  properties: {"]
        out += [f"    displayName: {_bicep_str(api.display_name)}"]
        if api.is_websocket:
            out += ["    type: 'websocket'", "    apiType: 'websocket'"]
        else:
            out += ["    type: 'http'"]
        out += [f"    path: {_bicep_str(api.suffix)}", f"    serviceUrl: {url}"]
        out += ["    protocols: [", *(f"      {_bicep_str(p)}" for p in _protocols(api)), "    ]"]
        out += [f"    subscriptionRequired: {sub}"]
        if api.subscription_key_names != SubscriptionKeyNames():
            names = api.subscription_key_names
            out += ["    subscriptionKeyParameterNames: {"]
            out += [f"      header: {_bicep_str(names.header)}", f"      query: {_bicep_str(names.query)}", "    }"]
        out += ["  }", "}"]
        api_xml = api_policy_xml(api)
        if api_xml is not None:
            pol_id = _ident("policy", api.name, taken=taken)
            out += ["", f"resource {pol_id} '{T_API_POLICY}@{ARM_API_VERSION}' = {{", f"  parent: {api_id}"]
            out += ["  name: 'policy'", "  properties: {", "    format: 'rawxml'"]
            out += [f"    value: {_bicep_str(api_xml)}", "  }", "}"]
        for op in api.operations:
            op_id = _ident("op", api.name, op.name, taken=taken)
            out += ["", f"resource {op_id} '{T_OPERATION}@{ARM_API_VERSION}' = {{", f"  parent: {api_id}"]
            out += [f"  name: {_bicep_str(op.name)}", "  properties: {"]
            out += [f"    displayName: {_bicep_str(op.display_name)}", f"    method: {_bicep_str(op.method)}"]
            out += [f"    urlTemplate: {_bicep_str(op.url_template)}"]
            params = _template_params(op)
            if params:
                out += ["    templateParameters: ["]
                for p in params:
                    out += ["      {", f"        name: {_bicep_str(p)}", "        type: 'string'"]
                    out += ["        required: true", "      }"]
                out += ["    ]"]
            out += ["  }", "}"]
            xml = _policy_of(op)
            if xml is not None:
                pol_id = _ident("policy", api.name, op.name, taken=taken)
                out += ["", f"resource {pol_id} '{T_POLICY}@{ARM_API_VERSION}' = {{", f"  parent: {op_id}"]
                out += ["  name: 'policy'", "  properties: {", "    format: 'rawxml'"]
                out += [f"    value: {_bicep_str(xml)}", "  }", "}"]
    out += ["", "// Append as ClientEndpoint=… to the app server's connection string."]
    out += ["output clientEndpoint string = apim.properties.gatewayUrl", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# ARM JSON


def _arm_str(value: str) -> str:
    """A literal string inside an ARM expression."""
    return "'" + value.replace("'", "''") + "'"


def _arm_literal(value: str) -> str:
    """A plain (non-expression) ARM string value."""
    return "[" + value if value.startswith("[") else value


def _arm_name(*parts: str) -> str:
    fmt = "/".join(f"{{{i}}}" for i in range(len(parts) + 1))
    return f"[format('{fmt}', parameters('apimName'), {', '.join(_arm_str(p) for p in parts)})]"


def _arm_id(resource_type: str, *parts: str) -> str:
    return f"[resourceId('{resource_type}', parameters('apimName'), {', '.join(_arm_str(p) for p in parts)})]"


def _arm_url(url: str, host_param: str) -> str:
    parts = _split_placeholder(url)
    if len(parts) == 1:
        return _arm_literal(url)
    fmt = "{0}".join(p.replace("{", "{{").replace("}", "}}").replace("'", "''") for p in parts)
    return f"[format('{fmt}', parameters('{host_param}'))]"


def arm_template(model: ApimModel, options: ExportOptions) -> dict[str, Any]:
    """The deployment template as a JSON-ready dict (what the Bicep output compiles to)."""
    uniform = _uniform_subscription(model)
    text = service_text(model.service)
    parameters: dict[str, Any] = {
        "apimName": {"type": "string", "metadata": {"description": "Name of the existing API Management instance"}},
        text.host_param: {"type": "string", "metadata": {"description": _host_description(text)}},
    }
    if options.apim_name:
        parameters["apimName"]["defaultValue"] = options.apim_name
    if options.signalr_host:
        parameters[text.host_param]["defaultValue"] = options.signalr_host
    if uniform is not None:
        parameters["subscriptionRequired"] = {"type": "bool", "defaultValue": uniform}
    resources: list[dict[str, Any]] = []
    for api in model.apis:
        props: dict[str, Any] = {"displayName": api.display_name}
        props.update({"type": "websocket", "apiType": "websocket"} if api.is_websocket else {"type": "http"})
        props.update(
            {
                "path": api.suffix,
                "serviceUrl": _arm_url(api.service_url, text.host_param),
                "protocols": _protocols(api),
                "subscriptionRequired": "[parameters('subscriptionRequired')]"
                if uniform is not None
                else api.subscription_required,
            }
        )
        if api.subscription_key_names != SubscriptionKeyNames():
            props["subscriptionKeyParameterNames"] = {
                "header": api.subscription_key_names.header,
                "query": api.subscription_key_names.query,
            }
        resources.append(
            {"type": T_API, "apiVersion": ARM_API_VERSION, "name": _arm_name(api.name), "properties": props}
        )
        api_xml = api_policy_xml(api)
        if api_xml is not None:
            resources.append(
                {
                    "type": T_API_POLICY,
                    "apiVersion": ARM_API_VERSION,
                    "name": _arm_name(api.name, "policy"),
                    "properties": {"format": "rawxml", "value": _arm_literal(api_xml)},
                    "dependsOn": [_arm_id(T_API, api.name)],
                }
            )
        for op in api.operations:
            op_props: dict[str, Any] = {
                "displayName": op.display_name,
                "method": op.method,
                "urlTemplate": op.url_template,
            }
            params = _template_params(op)
            if params:
                op_props["templateParameters"] = [{"name": p, "type": "string", "required": True} for p in params]
            resources.append(
                {
                    "type": T_OPERATION,
                    "apiVersion": ARM_API_VERSION,
                    "name": _arm_name(api.name, op.name),
                    "properties": op_props,
                    "dependsOn": [_arm_id(T_API, api.name)],
                }
            )
            xml = _policy_of(op)
            if xml is not None:
                resources.append(
                    {
                        "type": T_POLICY,
                        "apiVersion": ARM_API_VERSION,
                        "name": _arm_name(api.name, op.name, "policy"),
                        "properties": {"format": "rawxml", "value": _arm_literal(xml)},
                        "dependsOn": [_arm_id(T_OPERATION, api.name, op.name)],
                    }
                )
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "metadata": {"description": " ".join(line.lstrip("# ") for line in _header(model, options, "#"))},
        "parameters": parameters,
        "resources": resources,
        "outputs": {
            "clientEndpoint": {
                "type": "string",
                "value": f"[reference(resourceId('{T_SERVICE}', parameters('apimName')), "
                f"'{ARM_API_VERSION}').gatewayUrl]",
            }
        },
    }


def _arm(model: ApimModel, options: ExportOptions) -> str:
    return json.dumps(arm_template(model, options), indent=2) + "\n"


# ---------------------------------------------------------------------------------------------
# az CLI


def _sh_double(value: str) -> str:
    """Text safe inside a double-quoted shell string."""
    return re.sub(r'(["\\$`])', r"\\\1", value)


def _azcli(model: ApimModel, options: ExportOptions) -> str:
    uniform = _uniform_subscription(model)
    text = service_text(model.service)
    var = text.shell_var
    out = ["#!/usr/bin/env bash", *_header(model, options, "#")]
    out += [
        f"# Usage: RG=<resource-group> [APIM=<apim-name>] [{var}=<resource>.{text.domain}] ./{text.script}",
        "set -euo pipefail",
        ': "${RG:?set RG to the resource group of the API Management instance}"',
    ]
    if options.apim_name:
        out += [f'APIM="${{APIM:-{_sh_double(options.apim_name)}}}"']
    else:
        out += [': "${APIM:?set APIM to the name of the API Management instance}"']
    if options.signalr_host:
        out += [f'{var}="${{{var}:-{_sh_double(options.signalr_host)}}}"']
    else:
        out += [f': "${{{var}:?set {var} to <resource>.{text.domain}}}"']
    if uniform is not None:
        out += [f'SUBREQ="${{SUBREQ:-{str(uniform).lower()}}}"']
    out += [
        'apim() { az apim "$@" -g "$RG" --service-name "$APIM" -o none; }',
        "# --operation-id is explicit so that a re-run updates instead of duplicating operations.",
        'op() { apim api operation create --api-id "$1" --operation-id "$2" --display-name "$3" '
        '--method "$4" --url-template "$5" "${@:6}"; }',
    ]
    policies: list[tuple[str, str, str]] = []
    for api in model.apis:
        url = '"' + _interpolate(api.service_url, _sh_double, f"${var}") + '"'
        sub = '"$SUBREQ"' if uniform is not None else str(api.subscription_required).lower()
        line = (
            f"apim api create --api-id {shlex.quote(api.name)} --display-name {shlex.quote(api.display_name)}"
            f"{' --api-type websocket' if api.is_websocket else ''} --path {shlex.quote(api.suffix)} \\\n"
            f"  --service-url {url} --protocols {' '.join(_protocols(api))} --subscription-required {sub}"
        )
        if api.subscription_key_names != SubscriptionKeyNames():
            names = api.subscription_key_names
            line += (
                f" \\\n  --subscription-key-header-name {shlex.quote(names.header)}"
                f" --subscription-key-query-param-name {shlex.quote(names.query)}"
            )
        out += ["", line]
        api_xml = api_policy_xml(api)
        if api_xml is not None:
            policies.append((api.name, "", api_xml))
        for op in api.operations:
            args = [api.name, op.name, op.display_name, op.method, op.url_template]
            extra = ""
            for p in _template_params(op):
                extra += f" --template-parameters name={shlex.quote(p)} type=string required=true"
            out += ["op " + " ".join(shlex.quote(a) for a in args) + extra]
            xml = _policy_of(op)
            if xml is not None:
                policies.append((api.name, op.name, xml))
    if policies:
        out += [
            "",
            "# API- and operation-scope policies: az has no GA command for them, so PUT the ARM resource",
            "# (format rawxml: the XML needs no escaping).",
            'SUBSCRIPTION="$(az account show --query id -o tsv)"',
        ]
        for api_name, op_name, xml in policies:
            body = json.dumps({"properties": {"format": "rawxml", "value": xml}}, separators=(",", ":"))
            scope = f"apis/{api_name}/operations/{op_name}" if op_name else f"apis/{api_name}"
            resource = (
                "https://management.azure.com/subscriptions/$SUBSCRIPTION/resourceGroups/$RG/providers/"
                f"{T_SERVICE}/$APIM/{scope}/policies/policy"
                f"?api-version={ARM_API_VERSION}"
            )
            out += [f'az rest --method put --url "{resource}" \\\n  --body {shlex.quote(body)} -o none']
    out += ["", 'echo "Append to the app server\'s connection string: ClientEndpoint=https://$APIM.azure-api.net"', ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Terraform (azurerm)


def _hcl_str(value: str) -> str:
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("${", "$${").replace("%{", "%%{")
    )
    return f'"{escaped}"'


def _hcl_literal(value: str) -> str:
    return _hcl_str(value)[1:-1]


def _terraform(model: ApimModel, options: ExportOptions) -> str:
    uniform = _uniform_subscription(model)
    text = service_text(model.service)
    out = [*_header(model, options, "#"), ""]
    out += [
        "terraform {",
        "  required_providers {",
        '    azurerm = { source = "hashicorp/azurerm" }',
        "  }",
        "}",
        "",
        'provider "azurerm" {',
        "  features {}",
        "  # azurerm 4.x also needs the subscription: set ARM_SUBSCRIPTION_ID or subscription_id here.",
        "}",
        "",
        'variable "resource_group_name" {',
        "  type = string",
        "}",
        'variable "api_management_name" {',
        "  type = string",
    ]
    if options.apim_name:
        out += [f"  default = {_hcl_str(options.apim_name)}"]
    out += ["}", f'variable "{text.tf_var}" {{', "  type        = string"]
    out += [f'  description = "<resource>.{text.domain}, without scheme"']
    if options.signalr_host:
        out += [f"  default     = {_hcl_str(options.signalr_host)}"]
    out += ["}"]
    if uniform is not None:
        out += ['variable "subscription_required" {', "  type    = bool", f"  default = {str(uniform).lower()}", "}"]
    out += [
        "",
        'data "azurerm_api_management" "apim" {',
        "  name                = var.api_management_name",
        "  resource_group_name = var.resource_group_name",
        "}",
    ]
    taken: set[str] = set()
    for api in model.apis:
        api_id = _ident("api", api.name, taken=taken)
        url = '"' + _interpolate(api.service_url, _hcl_literal, f"${{var.{text.tf_var}}}") + '"'
        sub = "var.subscription_required" if uniform is not None else str(api.subscription_required).lower()
        out += [
            "",
            f'resource "azurerm_api_management_api" "{api_id}" {{',
            f"  name                  = {_hcl_str(api.name)}",
            "  resource_group_name   = var.resource_group_name",
            "  api_management_name   = var.api_management_name",
            '  revision              = "1"',
            f"  display_name          = {_hcl_str(api.display_name)}",
            f"  api_type              = {_hcl_str(str(api.type))}",
            f"  path                  = {_hcl_str(api.suffix)}",
            f"  service_url           = {url}",
            f"  protocols             = [{', '.join(_hcl_str(p) for p in _protocols(api))}]",
            f"  subscription_required = {sub}",
        ]
        if api.subscription_key_names != SubscriptionKeyNames():
            out += [
                "  subscription_key_parameter_names {",
                f"    header = {_hcl_str(api.subscription_key_names.header)}",
                f"    query  = {_hcl_str(api.subscription_key_names.query)}",
                "  }",
            ]
        out += ["}"]
        api_xml = api_policy_xml(api)
        if api_xml is not None:
            out += [
                "",
                f'resource "azurerm_api_management_api_policy" "{api_id}" {{',
                f"  api_name            = azurerm_api_management_api.{api_id}.name",
                "  resource_group_name = var.resource_group_name",
                "  api_management_name = var.api_management_name",
                f"  xml_content         = {_hcl_str(api_xml)}",
                "}",
            ]
        for op in api.operations:
            op_id = _ident("op", api.name, op.name, taken=taken)
            out += [
                "",
                f'resource "azurerm_api_management_api_operation" "{op_id}" {{',
                f"  operation_id        = {_hcl_str(op.name)}",
                f"  api_name            = azurerm_api_management_api.{api_id}.name",
                "  resource_group_name = var.resource_group_name",
                "  api_management_name = var.api_management_name",
                f"  display_name        = {_hcl_str(op.display_name)}",
                f"  method              = {_hcl_str(op.method)}",
                f"  url_template        = {_hcl_str(op.url_template)}",
            ]
            for p in _template_params(op):
                out += ["  template_parameter {", f"    name     = {_hcl_str(p)}", '    type     = "string"']
                out += ["    required = true", "  }"]
            out += ["}"]
            xml = _policy_of(op)
            if xml is not None:
                out += [
                    "",
                    f'resource "azurerm_api_management_api_operation_policy" "{op_id}" {{',
                    f"  api_name            = azurerm_api_management_api_operation.{op_id}.api_name",
                    f"  operation_id        = azurerm_api_management_api_operation.{op_id}.operation_id",
                    "  resource_group_name = var.resource_group_name",
                    "  api_management_name = var.api_management_name",
                    f"  xml_content         = {_hcl_str(xml)}",
                    "}",
                ]
    out += [
        "",
        "# Append as ClientEndpoint=… to the app server's connection string.",
        'output "client_endpoint" {',
        "  value = data.azurerm_api_management.apim.gateway_url",
        "}",
        "",
    ]
    return "\n".join(out)


_RENDERERS: dict[ExportFormat, Callable[[ApimModel, ExportOptions], str]] = {
    ExportFormat.BICEP: _bicep,
    ExportFormat.ARM: _arm,
    ExportFormat.AZCLI: _azcli,
    ExportFormat.TERRAFORM: _terraform,
}


def export_model(model: ApimModel, fmt: ExportFormat | str, options: ExportOptions | None = None) -> ExportResult:
    """Render the model in one format. Raises `ExportError` when it must not be deployed as
    asked (e.g. WebSocket APIs on the Consumption tier); `ExportResult.warnings` lists what the
    user should know but does not block the export."""
    options = options or ExportOptions()
    try:
        renderer = _RENDERERS[ExportFormat(fmt)]
    except ValueError:
        raise ExportError(f"--format: {fmt!r} is not one of {', '.join(f.value for f in ExportFormat)}") from None
    warnings = [*_check(model, options), *_host_warnings(options.signalr_host, service_text(model.service))]
    return ExportResult(renderer(model, options), tuple(warnings), client_endpoint(options.apim_name))
