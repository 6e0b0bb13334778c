"""`apim-gateway export --profile webpubsub`: every format deploys the one WebSocket API the gateway runs for Azure
Web PubSub (docs/apim.md §9), with the Web PubSub host as its parameter, and refuses what cannot work."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.export import ExportError, ExportOptions, export_model, signalr_host_from_url
from gateway.model import ModelError, Service, model_from_data, model_to_data
from gateway.profiles import build_profile
from tests.gateway.test_export import _arm_name, _flag, parse_bicep, parse_terraform, run_azcli

HOST = "res.webpubsub.azure.com"
APIM = "my-apim"
OPTIONS = ExportOptions(apim_name=APIM, signalr_host=HOST)
FORMATS = ("bicep", "arm", "azcli", "terraform")


def expected_api(hub: str = "chat") -> tuple[str, str, str, str, tuple[str, ...]]:
    """(name, type, suffix, service URL, protocols): what every format must deploy, and nothing else."""
    return ("webpubsub-client", "websocket", f"client/hubs/{hub}", f"wss://{HOST}/client/hubs/{hub}", ("wss",))


def test_the_profile() -> None:
    model = build_profile("webpubsub")
    assert model.service is Service.WEBPUBSUB
    (api,) = model.apis
    assert (api.name, str(api.type), api.suffix, api.service_url) == (
        "webpubsub-client",
        "websocket",
        "client/hubs/chat",
        "wss://{signalr}/client/hubs/chat",
    )
    assert api.operations == () and not api.subscription_required
    assert build_profile("webpubsub", hub="lobby_2").apis[0].suffix == "client/hubs/lobby_2"
    assert model_from_data(json.loads(json.dumps(model_to_data(model)))) == model


@pytest.mark.parametrize("hub", ["", "9x", "a-b", "a/b", "ä", "x" * 129])
def test_hub_names_the_service_refuses(hub: str) -> None:
    with pytest.raises(ModelError, match=r"--hub: .* is not a Web PubSub hub name"):
        build_profile("webpubsub", hub=hub)


def test_hub_belongs_to_the_webpubsub_profile() -> None:
    with pytest.raises(ModelError, match="--hub applies to the webpubsub profile only, not to sse-lp"):
        build_profile("sse-lp", hub="chat")


@pytest.mark.parametrize("hub", ["chat", "Lobby_2"])
def test_arm(hub: str) -> None:
    template = json.loads(export_model(build_profile("webpubsub", hub=hub), "arm", OPTIONS).text)
    assert set(template["parameters"]) == {"apimName", "webpubsubHost", "subscriptionRequired"}
    assert template["parameters"]["webpubsubHost"]["defaultValue"] == HOST
    assert "webpubsub.azure.com" in template["parameters"]["webpubsubHost"]["metadata"]["description"]
    (resource,) = template["resources"]
    assert resource["type"] == "Microsoft.ApiManagement/service/apis"
    props = resource["properties"]
    match = re.fullmatch(r"\[format\('([^']*)', parameters\('webpubsubHost'\)\)\]", props["serviceUrl"])
    assert match, props["serviceUrl"]
    (name,) = _arm_name(resource["name"])
    got = (name, props["type"], props["path"], match.group(1).replace("{0}", HOST), tuple(props["protocols"]))
    assert got == expected_api(hub)
    assert props["apiType"] == "websocket"
    assert props["subscriptionRequired"] == "[parameters('subscriptionRequired')]"
    assert template["parameters"]["subscriptionRequired"]["defaultValue"] is False
    assert "onHandshake" not in json.dumps(template)


def test_bicep() -> None:
    text = export_model(build_profile("webpubsub"), "bicep", OPTIONS).text
    params, resources = parse_bicep(text)
    assert params["webpubsubHost"] == f"string = '{HOST}'"
    assert "signalrHost" not in params
    apis = [r for r in resources if r["type"] == "Microsoft.ApiManagement/service/apis"]
    assert len(resources) == 2 and len(apis) == 1  # the existing instance and the API, nothing else
    props = apis[0]["properties"]
    url = props["serviceUrl"].replace("${webpubsubHost}", HOST)
    assert (apis[0]["name"], props["type"], props["path"], url, tuple(props["protocols"])) == expected_api()
    assert props["apiType"] == "websocket" and props["subscriptionRequired"] == "subscriptionRequired"


def test_azcli(tmp_path: Path) -> None:
    script = export_model(build_profile("webpubsub"), "azcli", OPTIONS).text
    subprocess.run(["bash", "-n"], input=script.encode(), check=True)
    calls = run_azcli(tmp_path, script)
    (create,) = calls
    assert create[:3] == ["apim", "api", "create"]
    protocols = tuple(create[create.index("--protocols") + 1 : create.index("--subscription-required")])
    got = (
        _flag(create, "--api-id"),
        _flag(create, "--api-type"),
        _flag(create, "--path"),
        _flag(create, "--service-url"),
        protocols,
    )
    assert got == expected_api()
    assert _flag(create, "--subscription-required") == "false" and _flag(create, "--service-name") == APIM
    # Deploy-time values come from the environment, under the Web PubSub name.
    calls = run_azcli(tmp_path, export_model(build_profile("webpubsub"), "azcli").text, APIM="a", WEBPUBSUB="w.x")
    assert _flag(calls[0], "--service-url") == "wss://w.x/client/hubs/chat"
    with pytest.raises(subprocess.CalledProcessError) as info:
        run_azcli(tmp_path, export_model(build_profile("webpubsub"), "azcli").text, APIM="a")
    assert b"set WEBPUBSUB to <resource>.webpubsub.azure.com" in info.value.stderr


def test_terraform() -> None:
    text = export_model(build_profile("webpubsub"), "terraform", OPTIONS).text
    assert re.search(r'variable "webpubsub_host" \{\n  type        = string\n', text)
    (block,) = parse_terraform(text)
    url = block["service_url"].replace("${var.webpubsub_host}", HOST)
    assert (block["name"], block["api_type"], block["path"], url, tuple(block["protocols"])) == expected_api()


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_names_web_pubsub_not_signalr(fmt: str) -> None:
    text = export_model(build_profile("webpubsub"), fmt, OPTIONS).text
    assert "Azure Web PubSub behind Azure API Management" in text
    assert "signalr" not in text.lower()
    assert "ClientEndpoint=https://my-apim.azure-api.net" in text


def test_strip_subscription_key_is_an_api_policy_on_the_websocket_api() -> None:
    from gateway.profiles import with_stripped_subscription_key

    model = with_stripped_subscription_key(build_profile("webpubsub"))
    arm = json.loads(export_model(model, "arm", OPTIONS).text)
    policies = [r for r in arm["resources"] if r["type"] == "Microsoft.ApiManagement/service/apis/policies"]
    assert len(policies) == 1
    assert (
        '<set-query-parameter name="subscription-key" exists-action="delete" />' in policies[0]["properties"]["value"]
    )


# -- the command line ------------------------------------------------------------------------------------------------


def _export(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["export", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_export(capsys: pytest.CaptureFixture[str]) -> None:
    args = ("--profile", "webpubsub", "--hub", "lobby", "--format", "bicep", "--service-url", f"https://{HOST}")
    code, out, err = _export(capsys, *args, "--apim-name", APIM)
    assert code == 0
    command = f"apim-gateway export --profile webpubsub --hub lobby --format bicep --service-url https://{HOST} "
    options = ExportOptions(apim_name=APIM, signalr_host=HOST, command=command + f"--apim-name {APIM}")
    assert out == export_model(build_profile("webpubsub", hub="lobby"), "bicep", options).text
    assert "warning" not in err and "ClientEndpoint=https://my-apim.azure-api.net" in err


def test_cli_warns_about_a_host_outside_webpubsub_azure_com(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _export(
        capsys, "--profile", "webpubsub", "--format", "arm", "--service-url", "https://res.service.signalr.net"
    )
    assert code == 0 and json.loads(out)["parameters"]["webpubsubHost"]["defaultValue"] == "res.service.signalr.net"
    assert "warning: --service-url: host 'res.service.signalr.net' is not <resource>.webpubsub.azure.com" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--service-url", "http://res.webpubsub.azure.com"), "must be https:// (APIM reaches Azure Web PubSub over"),
        (("--service-url", "https://res.webpubsub.azure.com/client/hubs/chat"), "without path or query"),
        (("--sku", "Consumption"), "the Consumption tier has no WebSocket APIs (API webpubsub-client)"),
        (("--profile", "websocket"), "refusing to export webpubsub with websocket"),
        (("--hub", "no-dash"), "--hub: 'no-dash' is not a Web PubSub hub name"),
        (("--keep-host",), "--keep-host only reproduces a misconfiguration"),
    ],
)
def test_cli_refusals(capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str) -> None:
    code, out, err = _export(capsys, "--profile", "webpubsub", "--format", "bicep", *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err and message in err, err
    assert "sse-lp profile" not in err  # Web PubSub clients have no HTTP transport to fall back to


def test_cli_hub_needs_the_webpubsub_profile(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _export(capsys, "--profile", "sse-lp", "--hub", "chat", "--format", "arm")
    assert code == 2 and "--hub applies to the webpubsub profile only" in err


def test_cli_with_delete_has_no_effect(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _export(capsys, "--profile", "webpubsub", "--format", "terraform", "--with-delete")
    assert code == 0 and "azurerm_api_management_api_operation" not in out
    assert "--with-delete has no effect: profile webpubsub has no LongPolling API" in err


def test_service_url_for_web_pubsub() -> None:
    assert signalr_host_from_url("https://RES.webpubsub.azure.com/", Service.WEBPUBSUB) == HOST
    with pytest.raises(ExportError, match=r"write https://<resource>\.webpubsub\.azure\.com"):
        signalr_host_from_url("res.webpubsub.azure.com", Service.WEBPUBSUB)


def test_a_config_file_can_name_the_service(tmp_path: Path) -> None:
    from gateway.model import load_model_file

    config = tmp_path / "wps.yaml"
    config.write_text(
        "service: webpubsub\napis:\n  - {name: notify, type: websocket, suffix: client/hubs/notify,\n"
        "     service_url: 'wss://{signalr}/client/hubs/notify'}\n"
    )
    model = load_model_file(config)
    assert model.service is Service.WEBPUBSUB
    assert "param webpubsubHost string" in export_model(model, "bicep").text
    config.write_text("service: pubnub\napis: []\n")
    with pytest.raises(ModelError, match="service: 'pubnub' is not a service"):
        load_model_file(config)
    config.write_text(
        "profile: a\nservice: webpubsub\napis:\n  - {name: a, type: websocket, suffix: x, service_url: 'wss://h/x'}\n"
        "---\nprofile: b\napis:\n  - {name: b, type: websocket, suffix: y, service_url: 'wss://h/y'}\n"
    )
    with pytest.raises(ModelError, match=r"document 2\.service: 'signalr' differs from document 1's 'webpubsub'"):
        load_model_file(config)
