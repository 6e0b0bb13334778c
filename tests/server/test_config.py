"""Settings: the connection string from the environment or ``.env``, and every configuration error."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import CONNECTION_STRING_VARIABLE, ConfigError, load_settings, read_connection_string

KEY = "ConfigTestKeyNeverShown0123456789abcdefghijkl"
GOOD = f"Endpoint=https://res.service.signalr.net;AccessKey={KEY};Version=1.0;"


def write_env(directory: Path, value: str) -> str:
    path = directory / ".env"
    path.write_text(f"# comment\n{CONNECTION_STRING_VARIABLE}={value}\n")
    return str(path)


def test_environment_wins_over_dotenv(tmp_path: Path) -> None:
    dotenv = write_env(tmp_path, "Endpoint=https://from-file;AccessKey=k;")
    assert read_connection_string({CONNECTION_STRING_VARIABLE: GOOD}, dotenv) == GOOD


def test_dotenv_is_used_when_the_environment_has_nothing(tmp_path: Path) -> None:
    dotenv = write_env(tmp_path, GOOD)
    assert read_connection_string({}, dotenv) == GOOD


def test_empty_values_count_as_unset(tmp_path: Path) -> None:
    dotenv = write_env(tmp_path, "")
    assert read_connection_string({CONNECTION_STRING_VARIABLE: "  "}, dotenv) is None


def test_empty_environment_falls_back_to_dotenv(tmp_path: Path) -> None:
    dotenv = write_env(tmp_path, GOOD)
    assert read_connection_string({CONNECTION_STRING_VARIABLE: ""}, dotenv) == GOOD


def test_missing_dotenv_file(tmp_path: Path) -> None:
    assert read_connection_string({}, str(tmp_path / "absent.env")) is None


def test_quoted_dotenv_value(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f'{CONNECTION_STRING_VARIABLE}="{GOOD}"\n')
    assert read_connection_string({}, str(tmp_path / ".env")) == GOOD


def test_missing_connection_string() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(connection_string=None)
    assert str(info.value) == "Azure__SignalR__ConnectionString is not set (environment or .env)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"AccessKey={KEY}", "invalid connection string: Connection string missing required properties endpoint."),
        (
            f"Foo=bar;AccessKey={KEY};",
            "invalid connection string: Connection string missing required properties endpoint.",
        ),
        (
            f"Endpoint=ftp://x;AccessKey={KEY};",
            "invalid connection string: Invalid value for endpoint property, it must be a valid URI.",
        ),
        (
            f"Endpoint=https://x;AccessKey={KEY};Version=2.0;",
            "invalid connection string: Version 2.0 is not supported.",
        ),
        (
            f"Endpoint=https://x;AccessKey={KEY};Port=99999;",
            "invalid connection string: Invalid value for port property, it must be an positive integer between "
            "(0, 65536).",
        ),
        (
            f"Endpoint=https://x;AccessKey={KEY};ClientEndpoint=apim;",
            "invalid connection string: Invalid value for clientEndpoint property, it must be a valid URI.",
        ),
        (
            f"Endpoint=https://x;AccessKey={KEY};accesskey={KEY};",
            "invalid connection string: Duplicate properties found in connection string: accesskey.",
        ),
        ("Endpoint=https://x;Version=1.0;", "invalid connection string: accesskey is required."),
    ],
)
def test_malformed_connection_strings_name_the_key_never_the_secret(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(connection_string=text)
    assert str(info.value) == message
    assert KEY not in str(info.value)


def test_entra_id_connection_strings_are_refused_clearly() -> None:
    with pytest.raises(ConfigError, match=r"AuthType=azure\.msi \(Microsoft Entra ID\) is not supported"):
        load_settings(connection_string="Endpoint=https://x;AuthType=azure.msi;Version=1.0;")
    with pytest.raises(ConfigError, match=r"AuthType=aad \(Microsoft Entra ID\) is not supported"):
        load_settings(connection_string=f"Endpoint=https://x;AccessKey={KEY};AuthType=aad;Version=1.0;")


def test_a_non_entra_auth_type_with_an_access_key_signs_with_the_key() -> None:
    # Only the four Entra ID types switch the SDK away from the AccessKey (protocol.md §1).
    settings = load_settings(connection_string=f"Endpoint=https://x;AccessKey={KEY};AuthType=none;Version=1.0;")
    assert settings.access_key == KEY


@pytest.mark.parametrize("hub", ["", "1chat", "chat room", "chat/x", "ch\u00e4t", "x" * 129, "a<b"])
def test_invalid_hub_names(hub: str) -> None:
    with pytest.raises(ConfigError, match="invalid hub name"):
        load_settings(connection_string=GOOD, hub=hub)


@pytest.mark.parametrize(("port", "lifetime"), [(-1, 3600), (65536, 3600), (5000, 59), (5000, 86401)])
def test_invalid_numbers(port: int, lifetime: int) -> None:
    with pytest.raises(ConfigError, match=r"invalid (port|token lifetime)"):
        load_settings(connection_string=GOOD, port=port, token_lifetime=lifetime)


def test_valid_settings() -> None:
    settings = load_settings(connection_string=GOOD, hub="Chat_2", port=0, token_lifetime=60)
    assert settings.hub == "Chat_2"
    assert settings.access_key == KEY
    assert settings.connection.client_base == "https://res.service.signalr.net/"
    assert settings.signalr_js.name == "signalr.min.js"
