"""Production defaults stay exact (protocol.md §0.1); test knobs come only from SIGNALR_EMULATOR_* variables."""

from __future__ import annotations

import pytest

from emulator.settings import EmulatorSettings, SettingsError, new_access_key


def test_production_defaults_are_the_services() -> None:
    settings = EmulatorSettings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8888)
    assert settings.keepalive_interval == 15.0
    assert settings.client_timeout == 30.0
    assert settings.handshake_timeout == 15.0
    assert settings.poll_timeout == 90.0
    assert settings.max_poll_interval == 5.0
    assert settings.max_rest_body == 1024 * 1024
    assert settings.max_upstream_response == 16 * 1024 * 1024
    assert settings.upstreams == ()


def test_environment_knobs_override_only_what_they_name() -> None:
    settings = EmulatorSettings().from_env({"SIGNALR_EMULATOR_KEEPALIVE": "0.5", "SIGNALR_EMULATOR_MAX_BUFFER": "4096"})
    assert settings.keepalive_interval == 0.5
    assert settings.max_buffer_size == 4096
    assert settings.client_timeout == 30.0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SIGNALR_EMULATOR_KEEPALIVE": "x"}, "SIGNALR_EMULATOR_KEEPALIVE must be a number"),
        ({"SIGNALR_EMULATOR_KEEPALIVE": "0"}, "keepalive_interval must be positive"),
        ({"SIGNALR_EMULATOR_MAX_BUFFER": "1.5"}, "SIGNALR_EMULATOR_MAX_BUFFER must be a number"),
    ],
)
def test_bad_knobs_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        EmulatorSettings().from_env(env)


def test_connection_string_and_hosts() -> None:
    key = new_access_key()
    assert EmulatorSettings(access_key=key).connection_string(1234) == (
        f"Endpoint=http://127.0.0.1;Port=1234;AccessKey={key};Version=1.0;"
    )
    assert EmulatorSettings(host="0.0.0.0").endpoint_host == "127.0.0.1"
    assert EmulatorSettings(host="::1").endpoint_host == "[::1]"
    assert key != new_access_key() and len(key) >= 43


def test_access_key_must_fit_in_a_connection_string() -> None:
    with pytest.raises(SettingsError):
        EmulatorSettings(access_key="a;b").validate()
