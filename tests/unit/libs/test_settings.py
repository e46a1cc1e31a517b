"""Settings: strict switches, secure defaults, clear startup errors naming the variable."""

from __future__ import annotations

import pytest
from omoai_core.errors import ConfigError
from omoai_core.settings import InferenceSettings, OmoaiSettings, ServerSettings, load_settings


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("TRUE", True), ("1", True), ("yes", True), ("false", False), ("0", False), ("No", False)],
)
def test_debug_empty_cache_accepts_the_documented_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("OMOAI_DEBUG_EMPTY_CACHE", raw)
    assert load_settings(OmoaiSettings).debug_empty_cache is expected


@pytest.mark.parametrize("raw", ["on", "off", "y", "t", "2", "enabled", ""])
def test_debug_empty_cache_rejects_anything_else_at_startup(monkeypatch, raw):
    monkeypatch.setenv("OMOAI_DEBUG_EMPTY_CACHE", raw)
    with pytest.raises(ConfigError) as err:
        load_settings(OmoaiSettings)
    assert "OMOAI_DEBUG_EMPTY_CACHE" in str(err.value)
    assert "true/false/1/0/yes/no" in str(err.value)


def test_debug_empty_cache_is_off_by_default(monkeypatch):
    monkeypatch.delenv("OMOAI_DEBUG_EMPTY_CACHE", raising=False)
    assert load_settings(OmoaiSettings).debug_empty_cache is False


def test_server_defaults_are_safe():
    s = ServerSettings()
    assert s.host == "127.0.0.1"
    assert s.api_token is None
    assert s.cors_origins == []
    assert s.resolved_token() is None


def test_short_api_token_is_refused(monkeypatch):
    class S(ServerSettings, OmoaiSettings):
        pass

    monkeypatch.setenv("OMOAI_API_TOKEN", "short")
    with pytest.raises(ConfigError, match="at least 16"):
        load_settings(S)


def test_token_file_is_read_and_secret_not_in_repr(tmp_path, monkeypatch):
    class S(ServerSettings, OmoaiSettings):
        pass

    token = tmp_path / "token"
    token.write_text("a-very-long-secret-token\n")
    monkeypatch.setenv("OMOAI_API_TOKEN_FILE", str(token))
    s = load_settings(S)
    assert s.resolved_token() == "a-very-long-secret-token"
    monkeypatch.delenv("OMOAI_API_TOKEN_FILE")
    monkeypatch.setenv("OMOAI_API_TOKEN", "another-very-long-secret")
    assert "another-very-long-secret" not in repr(load_settings(S))


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1"])
def test_inference_device_spellings(device):
    assert InferenceSettings(device=device).device == device


@pytest.mark.parametrize(("field", "value"), [("device", "tpu"), ("dtype", "int8")])
def test_inference_settings_reject_unknown_values(field, value):
    with pytest.raises(ConfigError) as err:
        load_settings(InferenceSettings, **{field: value})
    assert f"OMOAI_{field.upper()}" in str(err.value)


def test_combined_settings_keep_the_omoai_prefix(monkeypatch):
    class Both(InferenceSettings, ServerSettings):
        pass

    monkeypatch.setenv("OMOAI_DEVICE", "cpu")
    monkeypatch.setenv("OMOAI_PORT", "9123")
    monkeypatch.setenv("PORT", "1")
    s = load_settings(Both)
    assert (s.device, s.port) == ("cpu", 9123)


def test_malformed_list_variable_is_a_config_error(monkeypatch):
    monkeypatch.setenv("OMOAI_CORS_ORIGINS", "[not json")
    with pytest.raises(ConfigError, match="invalid configuration"):
        load_settings(ServerSettings)
