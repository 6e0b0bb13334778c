"""Exporters, checked structurally: every output deploys exactly the APIs, suffixes, operations and
policy XML of the model the gateway runs (docs/apim.md §7), and refusals exit non-zero."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.export import ExportError, ExportOptions, export_model, policy_xml, signalr_host_from_url
from gateway.model import SIGNALR_PLACEHOLDER, ApimModel, ForwardRequest
from gateway.profiles import build_profile

HOST = "res.service.signalr.net"
APIM = "my-apim"
OPTIONS = ExportOptions(apim_name=APIM, signalr_host=HOST)
UNBUFFERED = (
    '<policies><inbound><base /></inbound><backend><forward-request buffer-response="false" /></backend>'
    "<outbound><base /></outbound><on-error><base /></on-error></policies>"
)
VARIANTS = [("websocket", False), ("sse-lp", False), ("sse-lp", True)]
IDS = ["websocket", "sse-lp", "sse-lp+delete"]


def expected(model: ApimModel) -> dict[str, Any]:
    """What every exporter must deploy for this model (the gateway's route table)."""
    return {
        "apis": sorted(
            (
                api.name,
                str(api.type),
                api.suffix,
                api.service_url.replace(SIGNALR_PLACEHOLDER, HOST),
                ("wss",) if api.is_websocket else ("https",),
            )
            for api in model.apis
        ),
        "operations": sorted(
            (api.name, op.name, op.display_name, op.method, op.url_template)
            for api in model.apis
            for op in api.operations
        ),
        "policies": sorted(
            (api.name, op.name, policy_xml(op.policies.forward_request))
            for api in model.apis
            for op in api.operations
            if op.policies.forward_request is not None
        ),
    }


def test_policy_xml_is_the_seed_docs_snippet() -> None:
    assert policy_xml(ForwardRequest(buffer_response=False)) == UNBUFFERED
    assert 'forward-request timeout="60" buffer-response="false" />' in policy_xml(ForwardRequest(False, 60))
    assert "<forward-request />" in policy_xml(ForwardRequest())


def test_expected_tables_match_the_doc() -> None:
    ws = expected(build_profile("websocket"))
    assert ws["apis"] == [
        ("signalr-connect", "websocket", "client", f"wss://{HOST}/client/", ("wss",)),
        ("signalr-negotiate", "http", "client/negotiate", f"https://{HOST}/client/negotiate/", ("https",)),
    ]
    assert ws["policies"] == []
    sse = expected(build_profile("sse-lp"))
    assert sse["policies"] == [("signalr", "connect-get", UNBUFFERED)]
    assert ("signalr", "connect-delete", "connect delete", "DELETE", "/") in expected(
        build_profile("sse-lp", delete=True)
    )["operations"]


# -- ARM JSON ---------------------------------------------------------------------------------------


def _arm_name(expression: str) -> list[str]:
    return re.findall(r"'([^']*)'", expression.split("parameters('apimName')", 1)[1])


@pytest.mark.parametrize(("profile", "delete"), VARIANTS, ids=IDS)
def test_arm(profile: str, delete: bool) -> None:
    model = build_profile(profile, delete=delete)
    template = json.loads(export_model(model, "arm", OPTIONS).text)
    assert template["$schema"].endswith("deploymentTemplate.json#")
    assert template["parameters"]["apimName"]["defaultValue"] == APIM
    assert template["parameters"]["signalrHost"]["defaultValue"] == HOST
    assert template["parameters"]["subscriptionRequired"] == {"type": "bool", "defaultValue": False}
    types = {r["type"] for r in template["resources"]}
    assert types <= {
        "Microsoft.ApiManagement/service/apis",
        "Microsoft.ApiManagement/service/apis/operations",
        "Microsoft.ApiManagement/service/apis/operations/policies",
    }
    assert all(r["apiVersion"] == "2022-08-01" for r in template["resources"])
    apis, ops, policies = [], [], []
    for r in template["resources"]:
        props = r["properties"]
        if r["type"].endswith("/apis"):
            (name,) = _arm_name(r["name"])
            url = props["serviceUrl"]
            match = re.fullmatch(r"\[format\('([^']*)', parameters\('signalrHost'\)\)\]", url)
            assert match, url
            url = match.group(1).replace("{0}", HOST)
            apis.append((name, props["type"], props["path"], url, tuple(props["protocols"])))
            assert props["subscriptionRequired"] == "[parameters('subscriptionRequired')]"
            if props["type"] == "websocket":
                assert props["apiType"] == "websocket"
        elif r["type"].endswith("/operations"):
            api, op = _arm_name(r["name"])
            ops.append((api, op, props["displayName"], props["method"], props["urlTemplate"]))
            assert r["dependsOn"] == [
                f"[resourceId('Microsoft.ApiManagement/service/apis', parameters('apimName'), '{api}')]"
            ]
        else:
            api, op, policy = _arm_name(r["name"])
            assert policy == "policy" and props["format"] == "rawxml"
            policies.append((api, op, props["value"]))
    assert {"apis": sorted(apis), "operations": sorted(ops), "policies": sorted(policies)} == expected(model)
    assert "onHandshake" not in json.dumps(template)
    assert "gatewayUrl" in template["outputs"]["clientEndpoint"]["value"]


def test_arm_without_deploy_time_values_has_required_parameters() -> None:
    template = json.loads(export_model(build_profile("websocket"), "arm").text)
    assert "defaultValue" not in template["parameters"]["apimName"]
    assert "defaultValue" not in template["parameters"]["signalrHost"]


# -- Bicep ------------------------------------------------------------------------------------------


def _bicep_value(text: str) -> Any:
    if text.startswith("'"):
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    if text in ("true", "false"):
        return text == "true"
    return text  # a reference or an expression


def _bicep_object(lines: list[str], i: int) -> tuple[dict[str, Any], int]:
    """Parse `key: value` lines up to the closing `}`; returns (object, index after it)."""
    obj: dict[str, Any] = {}
    while not lines[i].strip().startswith("}"):
        key, _, value = lines[i].strip().partition(": ")
        if value == "{":
            obj[key], i = _bicep_object(lines, i + 1)
        elif value == "[":
            items: list[Any] = []
            i += 1
            while lines[i].strip() != "]":
                if lines[i].strip() == "{":
                    item, i = _bicep_object(lines, i + 1)
                    items.append(item)
                else:
                    items.append(_bicep_value(lines[i].strip()))
                    i += 1
            obj[key] = items
            i += 1
        else:
            obj[key] = _bicep_value(value)
            i += 1
    return obj, i + 1


def parse_bicep(text: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
    lines = text.splitlines()
    params = dict(re.findall(r"^param (\w+) (.*)$", text, re.M))
    resources = []
    for i, line in enumerate(lines):
        match = re.match(r"^resource (\w+) '([^@']+)@([\d-]+)'( existing)? = \{$", line)
        if match:
            body, _ = _bicep_object(lines, i + 1)
            resources.append({"id": match.group(1), "type": match.group(2), "version": match.group(3), **body})
    return params, resources


@pytest.mark.parametrize(("profile", "delete"), VARIANTS, ids=IDS)
def test_bicep(profile: str, delete: bool) -> None:
    model = build_profile(profile, delete=delete)
    text = export_model(model, "bicep", OPTIONS).text
    params, resources = parse_bicep(text)
    assert params["apimName"] == f"string = '{APIM}'"
    assert params["signalrHost"] == f"string = '{HOST}'"
    assert params["subscriptionRequired"] == "bool = false"
    by_id = {r["id"]: r for r in resources}
    assert by_id["apim"]["type"] == "Microsoft.ApiManagement/service" and by_id["apim"]["name"] == "apimName"
    assert {r["version"] for r in resources} == {"2022-08-01"}
    apis, ops, policies = [], [], []
    for r in resources:
        props = r.get("properties", {})
        if r["type"] == "Microsoft.ApiManagement/service/apis":
            assert r["parent"] == "apim"
            url = props["serviceUrl"].replace("${signalrHost}", HOST)
            apis.append((r["name"], props["type"], props["path"], url, tuple(props["protocols"])))
            assert props["subscriptionRequired"] == "subscriptionRequired"
            if props["type"] == "websocket":
                assert props["apiType"] == "websocket"
        elif r["type"] == "Microsoft.ApiManagement/service/apis/operations":
            api = by_id[r["parent"]]["name"]
            ops.append((api, r["name"], props["displayName"], props["method"], props["urlTemplate"]))
        elif r["type"] == "Microsoft.ApiManagement/service/apis/operations/policies":
            op = by_id[r["parent"]]
            api = by_id[op["parent"]]["name"]
            assert r["name"] == "policy" and props["format"] == "rawxml"
            policies.append((api, op["name"], props["value"]))
    assert {"apis": sorted(apis), "operations": sorted(ops), "policies": sorted(policies)} == expected(model)
    assert "onHandshake" not in text
    assert "output clientEndpoint string = apim.properties.gatewayUrl" in text
    assert "ClientEndpoint=https://my-apim.azure-api.net" in text


@pytest.mark.skipif(shutil.which("bicep") is None, reason="the Bicep CLI is not installed")
def test_bicep_compiles(tmp_path: Path) -> None:  # pragma: no cover - only where the Bicep CLI exists
    for profile in ("websocket", "sse-lp"):
        path = tmp_path / f"{profile}.bicep"
        path.write_text(export_model(build_profile(profile), "bicep", OPTIONS).text)
        subprocess.run(["bicep", "build", str(path)], check=True, capture_output=True, timeout=120)


# -- az CLI -----------------------------------------------------------------------------------------

FAKE_AZ = """#!python
import json, os, sys
with open(os.environ["AZ_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1:3] == ["account", "show"]:
    print("00000000-1111-2222-3333-444444444444")
"""


def run_azcli(tmp_path: Path, script: str, **env: str) -> list[list[str]]:
    """Run the script with a fake `az` that records its arguments; returns the calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "az"
    fake.write_text(f"#!{sys.executable}\n" + FAKE_AZ.split("\n", 1)[1])
    fake.chmod(0o755)
    path = tmp_path / "signalr-apim.sh"
    path.write_text(script)
    log = tmp_path / "az.log"
    log.write_text("")
    full_env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "AZ_LOG": str(log), "RG": "my-rg", **env}
    subprocess.run(["bash", str(path)], check=True, env=full_env, capture_output=True, timeout=60)
    return [json.loads(line) for line in log.read_text().splitlines()]


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.mark.parametrize(("profile", "delete"), VARIANTS, ids=IDS)
def test_azcli(tmp_path: Path, profile: str, delete: bool) -> None:
    model = build_profile(profile, delete=delete)
    script = export_model(model, "azcli", OPTIONS).text
    subprocess.run(["bash", "-n"], input=script.encode(), check=True)
    calls = run_azcli(tmp_path, script)
    apis, ops, policies = [], [], []
    for args in calls:
        if args[:3] == ["apim", "api", "create"]:
            assert _flag(args, "-g") == "my-rg" and _flag(args, "--service-name") == APIM
            api_type = _flag(args, "--api-type") if "--api-type" in args else "http"
            protocols = tuple(args[args.index("--protocols") + 1 : args.index("--subscription-required")])
            apis.append(
                (_flag(args, "--api-id"), api_type, _flag(args, "--path"), _flag(args, "--service-url"), protocols)
            )
            assert _flag(args, "--subscription-required") == "false"  # always explicit: az defaults differ
        elif args[:4] == ["apim", "api", "operation", "create"]:
            ops.append(
                (
                    _flag(args, "--api-id"),
                    _flag(args, "--operation-id"),  # always explicit, so re-runs do not duplicate
                    _flag(args, "--display-name"),
                    _flag(args, "--method"),
                    _flag(args, "--url-template"),
                )
            )
        elif args[:1] == ["rest"]:
            assert _flag(args, "--method") == "put"
            match = re.fullmatch(
                r"https://management\.azure\.com/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/my-rg/"
                r"providers/Microsoft\.ApiManagement/service/my-apim/apis/([\w-]+)/operations/([\w-]+)/policies/policy"
                r"\?api-version=2022-08-01",
                _flag(args, "--url"),
            )
            assert match, _flag(args, "--url")
            body = json.loads(_flag(args, "--body"))
            assert body["properties"]["format"] == "rawxml"
            policies.append((match.group(1), match.group(2), body["properties"]["value"]))
        else:
            assert args[:2] == ["account", "show"], args
    assert {"apis": sorted(apis), "operations": sorted(ops), "policies": sorted(policies)} == expected(model)


def test_azcli_takes_deploy_time_values_from_the_environment(tmp_path: Path) -> None:
    script = export_model(build_profile("websocket"), "azcli").text
    calls = run_azcli(tmp_path, script, APIM="other-apim", SIGNALR="x.service.signalr.net", SUBREQ="true")
    creates = [c for c in calls if c[:3] == ["apim", "api", "create"]]
    assert {_flag(c, "--service-name") for c in creates} == {"other-apim"}
    assert {_flag(c, "--subscription-required") for c in creates} == {"true"}
    assert _flag(creates[1], "--service-url") == "wss://x.service.signalr.net/client/"
    with pytest.raises(subprocess.CalledProcessError) as info:
        run_azcli(tmp_path, script, APIM="", SIGNALR="x")
    assert b"set APIM" in info.value.stderr


# -- Terraform ----------------------------------------------------------------------------------------


def parse_terraform(text: str) -> list[dict[str, Any]]:
    blocks = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r'^resource "(\w+)" "(\w+)" \{$', line)
        if not match:
            continue
        body: dict[str, Any] = {"type": match.group(1), "label": match.group(2)}
        j = i + 1
        while lines[j] != "}":
            stripped = lines[j].strip()
            if stripped.endswith("{"):
                nested: dict[str, Any] = {}
                j += 1
                while lines[j].strip() != "}":
                    k, _, v = lines[j].strip().partition(" = ")
                    nested[k.strip()] = v.strip()
                    j += 1
                body.setdefault(stripped[:-1].strip(), []).append(nested)
            else:
                key, _, value = stripped.partition(" = ")
                value = value.strip()
                body[key.strip()] = json.loads(value) if value.startswith(('"', "[")) else value
            j += 1
        blocks.append(body)
    return blocks


@pytest.mark.parametrize(("profile", "delete"), VARIANTS, ids=IDS)
def test_terraform(profile: str, delete: bool) -> None:
    model = build_profile(profile, delete=delete)
    text = export_model(model, "terraform", OPTIONS).text
    assert 'source = "hashicorp/azurerm"' in text
    assert re.search(r'variable "api_management_name" \{\n  type = string\n  default = "my-apim"', text)
    blocks = parse_terraform(text)
    labels = {(b["type"], b["label"]): b for b in blocks}
    apis, ops, policies = [], [], []
    for b in blocks:
        if b["type"] == "azurerm_api_management_api":
            url = b["service_url"].replace("${var.signalr_host}", HOST)
            apis.append((b["name"], b["api_type"], b["path"], url, tuple(b["protocols"])))
            assert b["revision"] == "1" and b["subscription_required"] == "var.subscription_required"
        elif b["type"] == "azurerm_api_management_api_operation":
            api_label = re.fullmatch(r"azurerm_api_management_api\.(\w+)\.name", b["api_name"])
            assert api_label
            api = labels[("azurerm_api_management_api", api_label.group(1))]["name"]
            ops.append((api, b["operation_id"], b["display_name"], b["method"], b["url_template"]))
        elif b["type"] == "azurerm_api_management_api_operation_policy":
            op = labels[("azurerm_api_management_api_operation", b["label"])]
            api_label = re.fullmatch(r"azurerm_api_management_api\.(\w+)\.name", op["api_name"])
            assert api_label
            api = labels[("azurerm_api_management_api", api_label.group(1))]["name"]
            policies.append((api, op["operation_id"], b["xml_content"]))
        else:
            raise AssertionError(b["type"])
    assert {"apis": sorted(apis), "operations": sorted(ops), "policies": sorted(policies)} == expected(model)


# -- refusals, warnings and the CLI ----------------------------------------------------------------------


def test_consumption_tier() -> None:
    with pytest.raises(ExportError, match="Consumption tier has no WebSocket APIs"):
        export_model(build_profile("websocket"), "bicep", ExportOptions(sku="Consumption"))
    result = export_model(build_profile("sse-lp"), "bicep", ExportOptions(sku="consumption"))
    assert any("long-running" in w for w in result.warnings)
    assert export_model(build_profile("websocket"), "bicep", ExportOptions(sku="Developer")).warnings == ()


def test_service_url() -> None:
    assert signalr_host_from_url("https://res.service.signalr.net") == "res.service.signalr.net"
    assert signalr_host_from_url("https://res.service.signalr.net/") == "res.service.signalr.net"
    assert signalr_host_from_url(" https://RES.service.signalr.net ") == "res.service.signalr.net"
    assert signalr_host_from_url("https://chat.example.com:8443") == "chat.example.com:8443"


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        # APIM reaches SignalR Service over https only; an http:// backend would send tokens in clear.
        ("http://res1", "must be https://"),
        ("http://res.service.signalr.net", "must be https://"),
        ("HTTP://res.service.signalr.net", "must be https://"),
        # An absolute URL: a bare host or a relative reference is not one.
        ("res.service.signalr.net", "not an absolute URL"),
        ("//res.service.signalr.net", "not an absolute URL"),
        ("", "not an absolute URL"),
        ("ftp://x", "must be https://"),
        ("wss://res.service.signalr.net", "must be https://"),
        ("https://", "has no host"),
        ("https://:443", "has no host"),
        ("https://res.service.signalr.net/client", "without path or query"),
        ("https://res.service.signalr.net?x=1", "without path or query"),
        ("https://res.service.signalr.net#f", "without path or query"),
        ("https://user:pw@res.service.signalr.net", "without user info"),
        ("https://res.service.signalr.net:abc", "port"),
        ("https://res.service.signalr.net:99999", "port"),
        # Hostile hosts would be written into Bicep, shell and Terraform text.
        ("https://res';rm -rf ~;'.service.signalr.net", "whitespace or control characters"),
        ("https://res';rm${IFS}-rf${IFS}~;'.service.signalr.net", "not a valid host name"),
        ("https://res$(id).service.signalr.net", "not a valid host name"),
        ("https://res\nx.service.signalr.net", "whitespace or control characters"),
        ("https://res.service\t.signalr.net", "whitespace or control characters"),
        ("https://-res.service.signalr.net", "not a valid host name"),
        ("https://res..service.signalr.net", "not a valid host name"),
        ("https://" + "a" * 64 + ".service.signalr.net", "not a valid host name"),
    ],
)
def test_service_url_refusals_name_the_flag(bad: str, fragment: str) -> None:
    with pytest.raises(ExportError) as refused:
        signalr_host_from_url(bad)
    message = str(refused.value)
    assert message.startswith("--service-url: ") and fragment in message, message
    assert "\n" not in message


@pytest.mark.parametrize("host", ["res1", "chat.example.com", "res.service.signalr.net.evil.example", "10.0.0.4"])
def test_a_host_outside_service_signalr_net_is_exported_with_a_warning(host: str) -> None:
    result = export_model(build_profile("sse-lp"), "bicep", ExportOptions(signalr_host=host))
    assert f"param signalrHost string = '{host}'" in result.text
    assert len(result.warnings) == 1
    assert f"--service-url: host '{host}' is not <resource>.service.signalr.net" in result.warnings[0]
    assert "custom domain" in result.warnings[0]


def test_a_service_signalr_net_host_gets_no_warning() -> None:
    for host in ("res.service.signalr.net", "RES.Service.SignalR.net"):
        assert export_model(build_profile("sse-lp"), "bicep", ExportOptions(signalr_host=host)).warnings == ()


def test_cli_refuses_an_http_service_url(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _export(capsys, "--profile", "sse-lp", "--format", "bicep", "--service-url", "http://res1")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("apim-gateway: error: --service-url: 'http://res1' must be https://")


def test_cli_warns_about_a_custom_service_host_and_still_exports(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _export(capsys, "--profile", "sse-lp", "--format", "bicep", "--service-url", "https://res1")
    assert code == 0 and "param signalrHost string = 'res1'" in out
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert warnings == [
        "apim-gateway export: warning: --service-url: host 'res1' is not <resource>.service.signalr.net "
        "(fine for a custom domain of the SignalR resource; otherwise check the URL)"
    ]


def _export(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["export", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_export(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _export(
        capsys, "--profile", "sse-lp", "--format", "bicep", "--service-url", f"https://{HOST}", "--apim-name", APIM
    )
    assert code == 0
    assert (
        out
        == export_model(
            build_profile("sse-lp"),
            "bicep",
            ExportOptions(
                apim_name=APIM,
                signalr_host=HOST,
                command="apim-gateway export --profile sse-lp --format bicep "
                f"--service-url https://{HOST} --apim-name {APIM}",
            ),
        ).text
    )
    assert "ClientEndpoint=https://my-apim.azure-api.net" in err
    assert "Generated by: apim-gateway export --profile sse-lp" in out


def test_cli_export_options(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = _export(capsys, "--profile", "sse-lp", "--format", "arm", "--with-delete", "--subscription-required")
    assert code == 0
    template = json.loads(out)
    assert template["parameters"]["subscriptionRequired"]["defaultValue"] is True
    assert any(r["name"].endswith("'connect-delete')]") for r in template["resources"])
    target = tmp_path / "out.tf"
    code, out, _ = _export(capsys, "--profile", "websocket", "--format", "terraform", "-o", str(target))
    assert code == 0 and out == "" and 'api_type              = "websocket"' in target.read_text()
    assert str(target) not in target.read_text()
    code, _, err = _export(capsys, "--profile", "websocket", "--format", "azcli", "--with-delete")
    assert code == 0 and "--with-delete has no effect" in err


def test_cli_refuses_both_profiles_on_one_instance(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _export(capsys, "--profile", "websocket", "--profile", "sse-lp", "--format", "bicep")
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "refusing to export websocket and sse-lp onto one API Management instance" in err
    assert "suffix" in err and "'client'" in err and "one profile per instance" in err


def test_cli_refuses_consumption_for_websocket(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _export(capsys, "--profile", "websocket", "--format", "azcli", "--sku", "Consumption")
    assert code != 0 and out == "" and "Consumption tier has no WebSocket APIs" in err
    code, out, err = _export(capsys, "--profile", "sse-lp", "--format", "azcli", "--sku", "Consumption")
    assert code == 0 and out and "warning: the Consumption tier does not support long-running connections" in err


def test_cli_refuses_a_config_with_a_shared_suffix(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "both.json"
    ws = build_profile("websocket")
    sse = build_profile("sse-lp")
    from gateway.model import model_to_data

    config.write_text(json.dumps({"apis": model_to_data(ws)["apis"] + model_to_data(sse)["apis"]}))
    code, out, err = _export(capsys, "--config", str(config), "--format", "terraform")
    assert code != 0 and out == "" and "apis[2] (signalr).suffix" in err
    code, _, err = _export(capsys, "--config", str(config), "--profile", "sse-lp", "--format", "arm")
    assert code != 0 and "either --profile or --config" in err
    code, _, err = _export(capsys, "--format", "arm")
    assert code != 0 and "--profile" in err


def test_cli_export_command_in_header_is_quoted(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _export(capsys, "--profile", "websocket", "--format", "azcli", "--apim-name", "a b")
    assert code == 0
    header = next(line for line in out.splitlines() if "Generated by" in line)
    assert shlex.split(header.split("Generated by: ", 1)[1])[-1] == "a b"


STRIP_HEADER = '<set-header name="Ocp-Apim-Subscription-Key" exists-action="delete" />'
STRIP_QUERY = '<set-query-parameter name="subscription-key" exists-action="delete" />'


@pytest.mark.parametrize("profile", ["websocket", "sse-lp"])
def test_strip_subscription_key_exports_an_api_policy_in_every_format(profile: str) -> None:
    from gateway.profiles import with_stripped_subscription_key

    model = with_stripped_subscription_key(build_profile(profile))
    plain = build_profile(profile)
    for fmt in ("bicep", "arm", "azcli", "terraform"):
        text = export_model(model, fmt).text
        assert "set-header" not in export_model(plain, fmt).text
        flat = text.replace('\\"', '"')  # ARM JSON and Terraform escape the quotes
        assert flat.count(STRIP_HEADER) == len(model.apis), (fmt, text)
        assert flat.count(STRIP_QUERY) == len(model.apis), (fmt, text)
    arm = json.loads(export_model(model, "arm").text)
    api_policies = [r for r in arm["resources"] if r["type"] == "Microsoft.ApiManagement/service/apis/policies"]
    assert len(api_policies) == len(model.apis)
    value = api_policies[0]["properties"]["value"]
    assert value.startswith("<policies><inbound><base />" + STRIP_HEADER + STRIP_QUERY + "</inbound>")
    assert "azurerm_api_management_api_policy" in export_model(model, "terraform").text
    assert "/policies/policy?api-version=" in export_model(model, "azcli").text


def test_strip_subscription_key_uses_the_apis_own_names() -> None:
    from dataclasses import replace

    from gateway.export import api_policy_xml
    from gateway.model import SubscriptionKeyNames

    api = replace(
        build_profile("sse-lp").apis[0],
        strip_subscription_key=True,
        subscription_key_names=SubscriptionKeyNames(header="X-Key", query="key"),
    )
    xml = api_policy_xml(api)
    assert xml is not None
    assert '<set-header name="X-Key" exists-action="delete" />' in xml
    assert '<set-query-parameter name="key" exists-action="delete" />' in xml
    assert api_policy_xml(replace(api, strip_subscription_key=False)) is None


def test_export_cli_strip_subscription_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--profile", "sse-lp", "--format", "bicep", "--strip-subscription-key"]) == 0
    out = capsys.readouterr().out
    assert "Microsoft.ApiManagement/service/apis/policies@" in out
    assert STRIP_HEADER.replace("'", "\\'") in out
