from __future__ import annotations

from pathlib import Path

import pytest

from backend.config import ENV_FILE_VARIABLE, Environment, SettingsError, load_settings
from tests.support.specs import make_settings


def test_settings_use_documented_defaults_when_environment_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MCPCHAT_ENV", "MCPCHAT_HOST", "MCPCHAT_PORT", "MCPCHAT_MODEL", "MCPCHAT_CORS_ORIGINS"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert (settings.env, settings.host, settings.port, settings.model) == (
        Environment.DEV,
        "127.0.0.1",
        5001,
        "gpt-4o-mini",
    )
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.allowed_origins == ["http://localhost:3000", "http://localhost:5173"]


def test_settings_read_environment_when_variables_are_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPCHAT_ENV", "prod")
    monkeypatch.setenv("MCPCHAT_PORT", "8080")
    monkeypatch.setenv("MCPCHAT_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("MCPCHAT_DATABASE_URL", "postgresql+asyncpg://u@h/db")
    settings = load_settings()
    assert settings.port == 8080
    assert settings.allowed_origins == ["https://a.example", "https://b.example"]
    assert settings.is_json_logging


def test_prod_allows_no_cors_origin_when_none_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPCHAT_ENV", "prod")
    monkeypatch.delenv("MCPCHAT_CORS_ORIGINS", raising=False)
    assert load_settings().allowed_origins == []


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MCPCHAT_PORT", "eighty"),
        ("MCPCHAT_PORT", "70000"),
        ("MCPCHAT_ENV", "staging"),
        ("MCPCHAT_DATABASE_URL", "mysql://h/db"),
        ("MCPCHAT_MAX_BODY_BYTES", "0"),
        ("MCPCHAT_DATABASE_URL", "sqlite://"),
        ("MCPCHAT_DATABASE_URL", "sqlite:///:memory:"),
        ("MCPCHAT_DATABASE_URL", "sqlite+aiosqlite://"),
        ("MCPCHAT_LLM_MAX_CONNECTIONS", "0"),
    ],
)
def test_settings_error_names_the_variable_when_value_is_bad(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


def test_settings_read_the_dotenv_file_that_mcpchat_env_file_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env_file = tmp_path / "mcpchat.env"
    env_file.write_text("MCPCHAT_MODEL=from-the-file\nOPENAI_BASE_URL=http://127.0.0.1:9/v1\n")
    monkeypatch.setenv(ENV_FILE_VARIABLE, str(env_file))
    settings = load_settings()
    assert (settings.model, settings.openai_base_url) == ("from-the-file", "http://127.0.0.1:9/v1")
    monkeypatch.setenv(ENV_FILE_VARIABLE, "")
    assert load_settings().model == "gpt-4o-mini"


def test_test_settings_ignore_the_developers_variables_and_dotenv_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A developer who followed the README quick start: a key in the shell, a .env where tests run.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-developer")
    monkeypatch.setenv("MCPCHAT_SYSTEM_PROMPT", "Talk like a pirate.")
    monkeypatch.delenv(ENV_FILE_VARIABLE)
    (tmp_path / ".env").write_text("OPENAI_BASE_URL=http://127.0.0.1:9/v1\nMCPCHAT_MAX_TOOL_ROUNDS=1\n")
    settings = make_settings(tmp_path)
    assert settings.openai_api_key == ""
    assert settings.openai_base_url is None
    assert settings.system_prompt is None
    assert settings.max_tool_rounds == 10
