"""The APIM model: the built-in profiles, loading, and validation messages that name the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.model import (
    Api,
    ApimModel,
    ApiType,
    ForwardRequest,
    ModelError,
    Operation,
    load_model_file,
    model_from_data,
    model_to_data,
    resolve_backend,
)
from gateway.profiles import build_profile, sse_lp_profile, websocket_profile, with_buffered_responses, with_delete

# The doc's section 1 model, both profiles as YAML documents.
DOC_YAML = """
profile: websocket
apis:
  - name: signalr-negotiate
    display_name: SignalR negotiate
    type: http
    suffix: client/negotiate
    service_url: https://{signalr}/client/negotiate/
    subscription_required: false
    subscription_key_names: {header: Ocp-Apim-Subscription-Key, query: subscription-key}
    operations:
      - {name: negotiate-preflight, display_name: negotiate preflight, method: OPTIONS, url_template: /}
      - {name: negotiate, display_name: negotiate, method: POST, url_template: /}
  - name: signalr-connect
    display_name: SignalR connect
    type: websocket
    suffix: client
    service_url: wss://{signalr}/client/
    subscription_required: false
    operations: []
---
profile: sse-lp
apis:
  - name: signalr
    display_name: SignalR
    type: http
    suffix: client
    service_url: https://{signalr}/client/
    subscription_required: false
    operations:
      - {name: negotiate-preflight, display_name: negotiate preflight, method: OPTIONS, url_template: /negotiate}
      - {name: negotiate, display_name: negotiate, method: POST, url_template: /negotiate}
      - {name: connect-preflight, display_name: connect preflight, method: OPTIONS, url_template: /}
      - {name: connect, display_name: connect, method: POST, url_template: /}
      - {name: connect-get, display_name: connect get, method: GET, url_template: /,
         policies: {forward_request: {buffer_response: false}}}
"""


def _doc_documents() -> list[dict[str, Any]]:
    import yaml

    return [d for d in yaml.safe_load_all(DOC_YAML)]


def test_builtin_profiles_equal_the_doc_yaml() -> None:
    websocket, sse_lp = _doc_documents()
    assert model_from_data(websocket) == websocket_profile()
    assert model_from_data(sse_lp) == sse_lp_profile()


def test_profiles_shape() -> None:
    ws = websocket_profile()
    assert [(a.name, a.type, a.suffix) for a in ws.apis] == [
        ("signalr-negotiate", ApiType.HTTP, "client/negotiate"),
        ("signalr-connect", ApiType.WEBSOCKET, "client"),
    ]
    assert ws.apis[1].operations == ()
    sse = sse_lp_profile()
    ops = {op.name: op for op in sse.apis[0].operations}
    assert [(o.method, o.url_template) for o in ops.values()] == [
        ("OPTIONS", "/negotiate"),
        ("POST", "/negotiate"),
        ("OPTIONS", "/"),
        ("POST", "/"),
        ("GET", "/"),
    ]
    assert ops["connect-get"].forward_request == ForwardRequest(buffer_response=False, timeout_s=300)
    assert ops["connect"].forward_request == ForwardRequest()
    assert all(not a.subscription_required for a in (*ws.apis, *sse.apis))


def test_with_delete_adds_connect_delete_to_sse_lp_only() -> None:
    sse = build_profile("sse-lp", delete=True)
    last = sse.apis[0].operations[-1]
    assert (last.name, last.display_name, last.method, last.url_template) == (
        "connect-delete",
        "connect delete",
        "DELETE",
        "/",
    )
    assert last.policies.is_empty()
    assert with_delete(websocket_profile()) == websocket_profile()
    assert with_delete(sse) == sse  # idempotent


def test_buffered_variant_drops_only_the_buffering_policy() -> None:
    buffered = build_profile("sse-lp", buffer_sse=True)
    get = buffered.apis[0].operations[-1]
    assert get.name == "connect-get" and get.forward_request.buffer_response
    custom = ApimModel(
        "x",
        (
            Api(
                "a",
                ApiType.HTTP,
                "a",
                "https://{signalr}/a/",
                (Operation("g", "GET", "/", policies=_policies(False, 30)),),
            ),
        ),
    )
    kept = with_buffered_responses(custom).apis[0].operations[0].forward_request
    assert kept == ForwardRequest(buffer_response=True, timeout_s=30)


def _policies(buffer: bool, timeout: int) -> Any:
    from gateway.model import Policies

    return Policies(ForwardRequest(buffer_response=buffer, timeout_s=timeout))


def test_unknown_profile() -> None:
    with pytest.raises(ValueError, match="unknown profile 'both'"):
        build_profile("both")


def test_suffix_is_stored_without_slashes() -> None:
    data = model_to_data(sse_lp_profile())
    data["apis"][0]["suffix"] = "/client/"
    assert model_from_data(data).apis[0].suffix == "client"


def test_round_trip() -> None:
    for model in (websocket_profile(), build_profile("sse-lp", delete=True)):
        assert model_from_data(json.loads(json.dumps(model_to_data(model)))) == model


# -- validation: every message names the field --------------------------------------------------


def _sse() -> dict[str, Any]:
    return copy.deepcopy(_doc_documents()[1])


def _ws() -> dict[str, Any]:
    return copy.deepcopy(_doc_documents()[0])


def _bad(data: dict[str, Any], *fragments: str) -> str:
    with pytest.raises(ModelError) as info:
        model_from_data(data)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_websocket_and_http_api_on_one_suffix() -> None:
    ws, sse = _doc_documents()
    merged = {"profile": "both", "apis": ws["apis"] + sse["apis"]}
    message = _bad(merged, "apis[2] (signalr).suffix", "'client'", "signalr-connect", "unique")
    assert "one profile per instance" in message


def test_suffix_unique_case_insensitively_and_after_stripping() -> None:
    data = _sse()
    extra = copy.deepcopy(data["apis"][0])
    extra.update(name="other", suffix="/CLIENT/")
    data["apis"].append(extra)
    _bad(data, "apis[1] (other).suffix", "already the suffix of API 'signalr'")


def test_websocket_api_has_no_operations() -> None:
    data = _ws()
    data["apis"][1]["operations"] = [{"name": "x", "method": "GET", "url_template": "/"}]
    _bad(data, "apis[1] (signalr-connect).operations", "onHandshake")


def test_websocket_api_needs_ws_scheme() -> None:
    data = _ws()
    data["apis"][1]["service_url"] = "https://{signalr}/client/"
    _bad(data, "apis[1] (signalr-connect).service_url", "ws:// or wss://")


def test_http_api_needs_http_scheme() -> None:
    data = _sse()
    data["apis"][0]["service_url"] = "wss://{signalr}/client/"
    _bad(data, "apis[0] (signalr).service_url", "http:// or https://")


def test_http_api_needs_an_operation() -> None:
    data = _sse()
    data["apis"][0]["operations"] = []
    _bad(data, "apis[0] (signalr).operations", "at least one operation")


def test_duplicate_operation_name() -> None:
    data = _sse()
    data["apis"][0]["operations"][1]["name"] = "negotiate-preflight"
    _bad(data, "apis[0] (signalr).operations[1] (negotiate-preflight).name", "already used by operations[0]")


def test_duplicate_method_and_template() -> None:
    data = _sse()
    data["apis"][0]["operations"].append({"name": "again", "method": "get", "url_template": "/"})
    _bad(data, "apis[0] (signalr).operations[5] (again).url_template", "GET /", "connect-get")


def test_duplicate_template_modulo_trailing_slash_and_parameter_names() -> None:
    data = _sse()
    data["apis"][0]["operations"] = [
        {"name": "a", "method": "GET", "url_template": "/x/{id}"},
        {"name": "b", "method": "GET", "url_template": "/X/{other}/"},
    ]
    _bad(data, "operations[1] (b).url_template")


def test_method_must_be_upper_case_when_built_directly() -> None:
    with pytest.raises(ModelError, match=r"apis\[0\] \(a\)\.operations\[0\] \(o\)\.method"):
        ApimModel("p", (Api("a", ApiType.HTTP, "a", "https://h/a/", (Operation("o", "post", "/"),)),))


def test_methods_are_upper_cased_when_loaded() -> None:
    data = _sse()
    data["apis"][0]["operations"][1]["method"] = "post"
    assert model_from_data(data).apis[0].operations[1].method == "POST"


def test_bad_template() -> None:
    data = _sse()
    data["apis"][0]["operations"][0]["url_template"] = "negotiate?x=1"
    _bad(data, "apis[0] (signalr).operations[0] (negotiate-preflight).url_template", "must start with '/'")


def test_bad_suffix() -> None:
    data = _sse()
    data["apis"][0]["suffix"] = "client//x"
    _bad(data, "apis[0] (signalr).suffix")


def test_unknown_and_missing_fields() -> None:
    data = _sse()
    data["apis"][0]["oprations"] = data["apis"][0].pop("operations")
    _bad(data, "apis[0] (signalr).oprations: unknown field")
    data = _sse()
    del data["apis"][0]["service_url"]
    _bad(data, "apis[0] (signalr).service_url: required field is missing")
    _bad({"profile": "x"}, "apis: required field is missing")
    _bad({"apis": [], "extra": 1}, "extra: unknown field")
    _bad({"apis": []}, "apis: the model declares no API")


def test_bad_types() -> None:
    data = _sse()
    data["apis"][0]["type"] = "soap"
    _bad(data, "apis[0] (signalr).type", "http or websocket")
    data = _sse()
    data["apis"][0]["subscription_required"] = "yes"
    _bad(data, "apis[0] (signalr).subscription_required", "true or false")
    data = _sse()
    data["apis"][0]["operations"][4]["policies"] = {"forward_request": {"timeout_s": "soon"}}
    _bad(data, "apis[0] (signalr).operations[4].policies.forward_request.timeout_s")
    data = _sse()
    data["apis"][0]["operations"][4]["policies"] = {"forward_request": {"timeout_s": 0}}
    _bad(data, "operations[4] (connect-get).policies.forward_request.timeout_s", "positive")
    data = _sse()
    data["apis"][0]["operations"][4]["policies"] = {"set_header": {}}
    _bad(data, "operations[4].policies.set_header: unknown field")


def test_duplicate_api_name() -> None:
    data = _ws()
    data["apis"][1]["name"] = "signalr-negotiate"
    _bad(data, "apis[1] (signalr-negotiate).name", "already used by apis[0]")


def test_bad_subscription_key_names() -> None:
    data = _sse()
    data["apis"][0]["subscription_key_names"] = {"header": "Bad Header"}
    _bad(data, "apis[0] (signalr).subscription_key_names.header")


# -- files ----------------------------------------------------------------------------------------


def test_load_json_yaml_toml(tmp_path: Path) -> None:
    sse = _sse()
    (tmp_path / "m.json").write_text(json.dumps(sse))
    (tmp_path / "m.yaml").write_text(DOC_YAML.split("---")[1])
    toml = """profile = "sse-lp"
[[apis]]
name = "signalr"
display_name = "SignalR"
type = "http"
suffix = "client"
service_url = "https://{signalr}/client/"
[[apis.operations]]
name = "negotiate-preflight"
display_name = "negotiate preflight"
method = "OPTIONS"
url_template = "/negotiate"

[[apis.operations]]
name = "negotiate"
display_name = "negotiate"
method = "POST"
url_template = "/negotiate"

[[apis.operations]]
name = "connect-preflight"
display_name = "connect preflight"
method = "OPTIONS"
url_template = "/"

[[apis.operations]]
name = "connect"
display_name = "connect"
method = "POST"
url_template = "/"

[[apis.operations]]
name = "connect-get"
display_name = "connect get"
method = "GET"
url_template = "/"
policies = {forward_request = {buffer_response = false}}
"""
    (tmp_path / "m.toml").write_text(toml)
    for name in ("m.json", "m.yaml", "m.toml"):
        assert load_model_file(tmp_path / name) == sse_lp_profile(), name


def test_both_profiles_in_one_file_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "both.yaml"
    path.write_text(DOC_YAML)
    with pytest.raises(ModelError, match=r"apis\[2\] \(signalr\)\.suffix"):
        load_model_file(path)


def test_unreadable_and_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read config"):
        load_model_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ModelError, match="cannot parse config"):
        load_model_file(bad)


# -- backend substitution -------------------------------------------------------------------------


def test_resolve_backend() -> None:
    ws = resolve_backend(websocket_profile(), "http://127.0.0.1:8888")
    assert [a.service_url for a in ws.apis] == [
        "http://127.0.0.1:8888/client/negotiate/",
        "ws://127.0.0.1:8888/client/",
    ]
    tls = resolve_backend(websocket_profile(), "https://res.service.signalr.net/")
    assert [a.service_url for a in tls.apis] == [
        "https://res.service.signalr.net/client/negotiate/",
        "wss://res.service.signalr.net/client/",
    ]
    prefixed = resolve_backend(sse_lp_profile(), "http://127.0.0.1:9/base/")
    assert prefixed.apis[0].service_url == "http://127.0.0.1:9/base/client/"


def test_resolve_backend_rejects_bad_urls() -> None:
    for bad in ("127.0.0.1:8888", "ftp://h", "http://h/?x=1"):
        with pytest.raises(ModelError, match="--backend"):
            resolve_backend(sse_lp_profile(), bad)
