"""The declarative model of an API Management instance: APIs, operations and their policies.

One `ApimModel` drives both the local gateway's route table and every exporter, so what runs
locally is what gets deployed (docs/apim.md §1). A model is validated when it is built: an
invalid model cannot exist, and every `ModelError` names the field at fault, e.g.
``apis[1] (signalr-connect).suffix``.

Rules enforced here (docs/apim.md §1, "Load-time validation"):
- a suffix is stored without leading/trailing ``/`` and is unique per instance, case-insensitive
  ("it has to be unique in this APIM instance"; a WebSocket and an HTTP API cannot share one);
- a ``websocket`` API has a ``ws``/``wss`` service URL and no operations or policies (its only
  operation, onHandshake, is implicit);
- an ``http`` API has an ``http``/``https`` service URL and at least one operation; operation
  names are unique per API (they become ARM resource names), and so is ``(method, url_template)``.

The host ``{signalr}`` in a service URL is a placeholder for the service's host (Azure SignalR Service, or Azure
Web PubSub for a model whose `ApimModel.service` is `Service.WEBPUBSUB`): the gateway substitutes its
``--backend`` (`resolve_backend`), the exporters the ``--service-url`` host.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "SIGNALR_PLACEHOLDER",
    "Api",
    "ApiType",
    "ApimModel",
    "ForwardRequest",
    "ModelError",
    "Operation",
    "Policies",
    "Service",
    "SubscriptionKeyNames",
    "load_model_file",
    "model_from_data",
    "model_to_data",
    "resolve_backend",
    "template_key",
]

SIGNALR_PLACEHOLDER = "{signalr}"
# forward-request's default timeout: seconds until the backend's response headers must have arrived.
DEFAULT_TIMEOUT_S = 300

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,79}$")
_METHOD = re.compile(r"^[A-Z]+$")
_SUFFIX_SEGMENT = re.compile(r"^[\w\-.~]+$")
_TEMPLATE_LITERAL = re.compile(r"^[\w\-.~%]*$")
_TEMPLATE_PARAM = re.compile(r"^\{[A-Za-z_][A-Za-z0-9_\-]*\}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class ModelError(ValueError):
    """An APIM model that cannot be loaded; the message names the field at fault."""


class Service(StrEnum):
    """The Azure service behind the APIs (``service`` in a config file): it names the host that ``{signalr}`` stands
    for in the exports, and the hints the gateway's access log gives."""

    SIGNALR = "signalr"
    WEBPUBSUB = "webpubsub"


class ApiType(StrEnum):
    """APIM API types used here (`type`/`apiType` in ARM, `--api-type` in az)."""

    HTTP = "http"
    WEBSOCKET = "websocket"


@dataclass(frozen=True)
class ForwardRequest:
    """The `forward-request` policy (https://learn.microsoft.com/azure/api-management/forward-request-policy).

    buffer_response: APIM's default `true` buffers chunked responses in 8 KB chunks; `false`
        writes each chunk as it arrives (needed for Server-Sent Events).
    timeout_s: seconds until the backend's response headers must have arrived (default 300).
    """

    buffer_response: bool = True
    timeout_s: int = DEFAULT_TIMEOUT_S

    def is_default(self) -> bool:
        return self.buffer_response and self.timeout_s == DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class Policies:
    """Operation-scope policies, as typed fields so the gateway can run whatever is exported."""

    forward_request: ForwardRequest | None = None

    def is_empty(self) -> bool:
        return self.forward_request is None


@dataclass(frozen=True)
class Operation:
    """One operation of an HTTP API.

    name: the operation id (ARM resource name, `az --operation-id`, Terraform `operation_id`).
    method: upper-case HTTP method; HEAD does not match GET.
    url_template: relative to the API suffix, starting with ``/``; ``{param}`` matches one
        path segment and a final ``*`` matches the rest.
    """

    name: str
    method: str
    url_template: str
    display_name: str = ""
    policies: Policies = field(default_factory=Policies)

    def __post_init__(self) -> None:
        if not self.display_name:
            object.__setattr__(self, "display_name", self.name)

    @property
    def forward_request(self) -> ForwardRequest:
        """The effective forward-request settings (APIM defaults when no policy is set)."""
        return self.policies.forward_request or ForwardRequest()


@dataclass(frozen=True)
class SubscriptionKeyNames:
    """Where APIM looks for the subscription key (`subscriptionKeyParameterNames`)."""

    header: str = "Ocp-Apim-Subscription-Key"
    query: str = "subscription-key"


@dataclass(frozen=True)
class Api:
    """One API of the instance.

    suffix: the URL suffix, stored without leading/trailing ``/`` (``client/negotiate``).
    service_url: the backend base URL; host ``{signalr}`` is a placeholder.
    operations: empty for a WebSocket API (onHandshake is implicit, never declared).
    strip_subscription_key: remove the subscription key header and query parameter before forwarding (APIM:
        ``set-header``/``set-query-parameter`` with ``exists-action="delete"``, exported as an API-scope policy).
    """

    name: str
    type: ApiType
    suffix: str
    service_url: str
    operations: tuple[Operation, ...] = ()
    display_name: str = ""
    subscription_required: bool = False
    subscription_key_names: SubscriptionKeyNames = field(default_factory=SubscriptionKeyNames)
    strip_subscription_key: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "suffix", self.suffix.strip("/"))
        object.__setattr__(self, "operations", tuple(self.operations))
        if not self.display_name:
            object.__setattr__(self, "display_name", self.name)

    @property
    def is_websocket(self) -> bool:
        return self.type is ApiType.WEBSOCKET


@dataclass(frozen=True)
class ApimModel:
    """One API Management instance: a profile label, its APIs and the service they front. Validated on
    construction."""

    profile: str
    apis: tuple[Api, ...]
    service: Service = Service.SIGNALR

    def __post_init__(self) -> None:
        object.__setattr__(self, "apis", tuple(self.apis))
        try:
            object.__setattr__(self, "service", Service(self.service))
        except ValueError:
            raise ModelError(f"service: {self.service!r} is not a service (use signalr or webpubsub)") from None
        _validate(self)

    def api(self, name: str) -> Api:
        for api in self.apis:
            if api.name == name:
                return api
        raise KeyError(name)


def template_key(url_template: str) -> str:
    """A URL template in comparable form: lower-case, no trailing ``/``, parameters unnamed."""
    segments = url_template.strip("/").split("/") if url_template.strip("/") else []
    out = ["{}" if _TEMPLATE_PARAM.match(s) else s.lower() for s in segments]
    return "/" + "/".join(out)


def _where(index: int, api: Api) -> str:
    return f"apis[{index}] ({api.name})"


def _validate(model: ApimModel) -> None:
    if not model.profile.strip():
        raise ModelError("profile: must be a non-empty name")
    if not model.apis:
        raise ModelError("apis: the model declares no API")
    names: dict[str, int] = {}
    suffixes: dict[str, int] = {}
    for i, api in enumerate(model.apis):
        where = _where(i, api)
        if not _NAME.match(api.name):
            raise ModelError(
                f"apis[{i}].name: {api.name!r} is not a valid API id "
                "(letters, digits, '-', '_', '.'; starting with a letter or digit; at most 80 characters)"
            )
        if api.name.lower() in names:
            raise ModelError(f"{where}.name: API id {api.name!r} is already used by apis[{names[api.name.lower()]}]")
        names[api.name.lower()] = i
        _validate_suffix(where, api)
        key = api.suffix.lower()
        if key in suffixes:
            j = suffixes[key]
            other = model.apis[j]
            raise ModelError(
                f"{where}.suffix: {api.suffix!r} is already the suffix of API {other.name!r} (apis[{j}], "
                f"type {other.type}); a suffix must be unique in one APIM instance (case-insensitive), "
                "and APIM does not support different types of APIs on the same suffix. "
                "The 'websocket' and 'sse-lp' profiles both use suffix 'client': deploy one profile per instance"
            )
        suffixes[key] = i
        _validate_service_url(where, api)
        _validate_key_names(where, api)
        if api.is_websocket:
            if api.operations:
                raise ModelError(
                    f"{where}.operations: a websocket API declares no operations "
                    "(its only operation, onHandshake, is implicit)"
                )
        else:
            if not api.operations:
                raise ModelError(f"{where}.operations: an http API needs at least one operation")
            _validate_operations(where, api)


def _validate_suffix(where: str, api: Api) -> None:
    if api.suffix == "":
        return
    for segment in api.suffix.split("/"):
        if not _SUFFIX_SEGMENT.match(segment):
            raise ModelError(
                f"{where}.suffix: {api.suffix!r} is not a valid URL suffix "
                "(path segments of letters, digits, '-', '_', '.', '~', separated by single '/')"
            )


def _validate_service_url(where: str, api: Api) -> None:
    url = api.service_url
    parts = urlsplit(url.replace(SIGNALR_PLACEHOLDER, "signalr.invalid"))
    allowed = ("ws", "wss") if api.is_websocket else ("http", "https")
    if parts.scheme not in allowed:
        hint = "ws:// or wss://" if api.is_websocket else "http:// or https://"
        raise ModelError(
            f"{where}.service_url: {url!r} has scheme {parts.scheme or '(none)'!r}; a {api.type} API needs {hint}"
        )
    if not parts.hostname:
        raise ModelError(f"{where}.service_url: {url!r} has no host")
    if parts.query or parts.fragment:
        raise ModelError(f"{where}.service_url: {url!r} must not have a query or fragment")


def _validate_key_names(where: str, api: Api) -> None:
    names = api.subscription_key_names
    if not _HEADER_NAME.match(names.header):
        raise ModelError(f"{where}.subscription_key_names.header: {names.header!r} is not a valid header name")
    if not names.query or any(c in names.query for c in "&=#? "):
        raise ModelError(f"{where}.subscription_key_names.query: {names.query!r} is not a valid query name")


def _validate_operations(where: str, api: Api) -> None:
    names: dict[str, int] = {}
    routes: dict[tuple[str, str], int] = {}
    for k, op in enumerate(api.operations):
        at = f"{where}.operations[{k}] ({op.name})"
        if not _NAME.match(op.name):
            raise ModelError(f"{where}.operations[{k}].name: {op.name!r} is not a valid operation id")
        if op.name.lower() in names:
            raise ModelError(
                f"{at}.name: operation id {op.name!r} is already used by operations[{names[op.name.lower()]}]"
            )
        names[op.name.lower()] = k
        if not _METHOD.match(op.method):
            raise ModelError(f"{at}.method: {op.method!r} is not an upper-case HTTP method")
        _validate_template(at, op.url_template)
        route = (op.method, template_key(op.url_template))
        if route in routes:
            raise ModelError(
                f"{at}.url_template: {op.method} {op.url_template} is already declared by "
                f"operations[{routes[route]}] ({api.operations[routes[route]].name})"
            )
        routes[route] = k
        fr = op.policies.forward_request
        if fr is not None and (isinstance(fr.timeout_s, bool) or fr.timeout_s <= 0):
            raise ModelError(f"{at}.policies.forward_request.timeout_s: must be a positive number of seconds")


def _validate_template(at: str, template: str) -> None:
    if not template.startswith("/") or "?" in template or "#" in template:
        raise ModelError(f"{at}.url_template: {template!r} must start with '/' and have no query or fragment")
    segments = template.strip("/").split("/") if template.strip("/") else []
    for n, segment in enumerate(segments):
        if segment == "*" and n == len(segments) - 1:
            continue
        if not (_TEMPLATE_PARAM.match(segment) or (segment and _TEMPLATE_LITERAL.match(segment))):
            raise ModelError(f"{at}.url_template: {template!r} has an invalid segment {segment!r}")


# ---------------------------------------------------------------------------------------------
# Loading from data (JSON / YAML / TOML documents with the keys of docs/apim.md §1)


def _check_keys(path: str, data: Mapping[str, Any], allowed: set[str], required: set[str]) -> None:
    for key in data:
        if key not in allowed:
            raise ModelError(f"{path}.{key}: unknown field (expected one of: {', '.join(sorted(allowed))})")
    for key in sorted(required):
        if key not in data:
            raise ModelError(f"{path}.{key}: required field is missing")


def _mapping(path: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ModelError(f"{path}: expected a mapping, got {type(value).__name__}")
    return value


def _str(path: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ModelError(f"{path}: expected a string, got {type(value).__name__}")
    return value


def _bool(path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ModelError(f"{path}: expected true or false, got {value!r}")
    return value


def _policies(path: str, value: Any) -> Policies:
    data = _mapping(path, value)
    _check_keys(path, data, {"forward_request"}, set())
    if "forward_request" not in data or data["forward_request"] is None:
        return Policies()
    fpath = f"{path}.forward_request"
    fr = _mapping(fpath, data["forward_request"])
    _check_keys(fpath, fr, {"buffer_response", "timeout_s"}, set())
    timeout = fr.get("timeout_s", DEFAULT_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int):
        raise ModelError(f"{fpath}.timeout_s: expected a whole number of seconds, got {timeout!r}")
    return Policies(
        ForwardRequest(
            buffer_response=_bool(f"{fpath}.buffer_response", fr.get("buffer_response", True)),
            timeout_s=timeout,
        )
    )


def _operation(path: str, value: Any) -> Operation:
    data = _mapping(path, value)
    _check_keys(path, data, set(data), {"name"})
    name = _str(f"{path}.name", data["name"])
    _check_keys(f"{path} ({name})", data, {"name", "display_name", "method", "url_template", "policies"}, {"method"})
    return Operation(
        name=name,
        display_name=_str(f"{path}.display_name", data.get("display_name", name)),
        method=_str(f"{path}.method", data["method"]).upper(),
        url_template=_str(f"{path}.url_template", data.get("url_template", "/")),
        policies=_policies(f"{path}.policies", data.get("policies") or {}),
    )


def _api(path: str, value: Any) -> Api:
    data = _mapping(path, value)
    allowed = {
        "name",
        "display_name",
        "type",
        "suffix",
        "service_url",
        "subscription_required",
        "subscription_key_names",
        "strip_subscription_key",
        "operations",
    }
    _check_keys(path, data, set(data), {"name"})
    name = _str(f"{path}.name", data["name"])
    where = f"{path} ({name})"
    _check_keys(where, data, allowed, {"type", "suffix", "service_url"})
    raw_type = _str(f"{where}.type", data["type"])
    try:
        api_type = ApiType(raw_type.lower())
    except ValueError:
        raise ModelError(f"{where}.type: {raw_type!r} is not an API type (use http or websocket)") from None
    ops_data = data.get("operations") or []
    if not isinstance(ops_data, Sequence) or isinstance(ops_data, str):
        raise ModelError(f"{where}.operations: expected a list")
    keys_path = f"{where}.subscription_key_names"
    keys = _mapping(keys_path, data.get("subscription_key_names") or {})
    _check_keys(keys_path, keys, {"header", "query"}, set())
    defaults = SubscriptionKeyNames()
    return Api(
        name=name,
        display_name=_str(f"{where}.display_name", data.get("display_name", name)),
        type=api_type,
        suffix=_str(f"{where}.suffix", data["suffix"]),
        service_url=_str(f"{where}.service_url", data["service_url"]),
        subscription_required=_bool(f"{where}.subscription_required", data.get("subscription_required", False)),
        strip_subscription_key=_bool(f"{where}.strip_subscription_key", data.get("strip_subscription_key", False)),
        subscription_key_names=SubscriptionKeyNames(
            header=_str(f"{keys_path}.header", keys.get("header", defaults.header)),
            query=_str(f"{keys_path}.query", keys.get("query", defaults.query)),
        ),
        operations=tuple(_operation(f"{where}.operations[{k}]", op) for k, op in enumerate(ops_data)),
    )


def model_from_data(data: Any) -> ApimModel:
    """Build and validate a model from parsed JSON/YAML/TOML data; raises `ModelError`."""
    top = _mapping("(top level)", data)
    for key in top:
        if key not in ("profile", "service", "apis"):
            raise ModelError(f"{key}: unknown field (expected 'profile', 'service' and 'apis')")
    if "apis" not in top:
        raise ModelError("apis: required field is missing")
    apis = top["apis"]
    if not isinstance(apis, Sequence) or isinstance(apis, str):
        raise ModelError("apis: expected a list of APIs")
    profile = _str("profile", top.get("profile", "custom"))
    raw_service = _str("service", top.get("service", Service.SIGNALR.value))
    try:
        service = Service(raw_service.lower())
    except ValueError:
        raise ModelError(f"service: {raw_service!r} is not a service (use signalr or webpubsub)") from None
    return ApimModel(
        profile=profile, apis=tuple(_api(f"apis[{i}]", api) for i, api in enumerate(apis)), service=service
    )


def _merge_documents(documents: list[Any]) -> Any:
    """Several documents (YAML ``---``) = several profiles on one instance: merge them so that
    validation reports the clash instead of silently picking one."""
    if len(documents) == 1:
        return documents[0]
    apis: list[Any] = []
    profiles: list[str] = []
    services: dict[str, int] = {}
    for n, doc in enumerate(documents):
        top = _mapping(f"document {n + 1}", doc)
        apis.extend(top.get("apis") or [])
        profiles.append(str(top.get("profile", f"document {n + 1}")))
        services.setdefault(str(top.get("service", Service.SIGNALR.value)).lower(), n + 1)
    if len(services) > 1:
        (first, a), (second, b) = list(services.items())[:2]
        raise ModelError(
            f"document {b}.service: {second!r} differs from document {a}'s {first!r}; one model fronts one service "
            "(its exports have one service host): write one config per service"
        )
    return {"profile": "+".join(profiles), "service": next(iter(services)), "apis": apis}


def load_model_file(path: str | Path) -> ApimModel:
    """Load a model from a JSON, YAML (``.yaml``/``.yml``) or TOML file; raises `ModelError`."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelError(f"cannot read config {file}: {exc.strerror or exc}") from None
    suffix = file.suffix.lower()
    try:
        if suffix == ".json":
            documents: list[Any] = [json.loads(text)]
        elif suffix == ".toml":
            documents = [tomllib.loads(text)]
        else:  # YAML is a superset of JSON, so it also reads JSON without the extension
            documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ModelError(f"cannot parse config {file}: {exc}") from None
    if not documents:
        raise ModelError(f"config {file} is empty")
    return model_from_data(_merge_documents(documents))


def model_to_data(model: ApimModel) -> dict[str, Any]:
    """The model as plain data with the keys of docs/apim.md §1 (round-trips `model_from_data`)."""
    apis: list[dict[str, Any]] = []
    for api in model.apis:
        ops: list[dict[str, Any]] = []
        for op in api.operations:
            entry: dict[str, Any] = {
                "name": op.name,
                "display_name": op.display_name,
                "method": op.method,
                "url_template": op.url_template,
            }
            fr = op.policies.forward_request
            if fr is not None:
                entry["policies"] = {
                    "forward_request": {"buffer_response": fr.buffer_response, "timeout_s": fr.timeout_s}
                }
            ops.append(entry)
        apis.append(
            {
                "name": api.name,
                "display_name": api.display_name,
                "type": str(api.type),
                "suffix": api.suffix,
                "service_url": api.service_url,
                "subscription_required": api.subscription_required,
                "strip_subscription_key": api.strip_subscription_key,
                "subscription_key_names": {
                    "header": api.subscription_key_names.header,
                    "query": api.subscription_key_names.query,
                },
                "operations": ops,
            }
        )
    return {"profile": model.profile, "service": str(model.service), "apis": apis}


def resolve_backend(model: ApimModel, backend: str) -> ApimModel:
    """Substitute the gateway's ``--backend`` URL for ``{signalr}`` in every service URL.

    The backend's scheme and authority replace the placeholder's (http→ws, https→wss for
    WebSocket APIs); a backend path is prefixed to the service URL's path. Service URLs
    without the placeholder are kept as they are. Raises `ModelError` for a bad backend URL.
    """
    parts = urlsplit(backend)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ModelError(f"--backend: {backend!r} is not an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise ModelError(f"--backend: {backend!r} must not have a query or fragment")
    base_path = parts.path.rstrip("/")
    apis: list[Api] = []
    for api in model.apis:
        url = urlsplit(api.service_url)
        if url.netloc != SIGNALR_PLACEHOLDER:
            apis.append(api)
            continue
        scheme = parts.scheme
        if api.is_websocket:
            scheme = "wss" if scheme == "https" else "ws"
        apis.append(replace(api, service_url=f"{scheme}://{parts.netloc}{base_path}{url.path}"))
    return replace(model, apis=tuple(apis))
