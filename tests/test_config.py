from __future__ import annotations

from pathlib import Path

import pytest

from backend.config import ENV_FILE_VARIABLE, AuthMode, Environment, SettingsError, load_settings
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
    assert (settings.auth, settings.allowed_hosts) == (AuthMode.SINGLE_USER, [])


def test_settings_read_environment_when_variables_are_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPCHAT_ENV", "prod")
    monkeypatch.setenv("MCPCHAT_AUTH", "single-user")
    monkeypatch.setenv("MCPCHAT_ALLOWED_HOSTS", "Chat.Example, [FD00::1] ,")
    monkeypatch.setenv("MCPCHAT_PORT", "8080")
    monkeypatch.setenv("MCPCHAT_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("MCPCHAT_DATABASE_URL", "postgresql+asyncpg://u@h/db")
    settings = load_settings()
    assert settings.port == 8080
    assert settings.allowed_origins == ["https://a.example", "https://b.example"]
    assert settings.allowed_hosts == ["chat.example", "fd00::1"]
    assert settings.auth is AuthMode.SINGLE_USER
    assert settings.is_json_logging


def test_prod_allows_no_cors_origin_when_none_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPCHAT_ENV", "prod")
    monkeypatch.setenv("MCPCHAT_AUTH", "single-user")
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
        ("MCPCHAT_AUTH", "admin"),
        ("MCPCHAT_ALLOWED_HOSTS", "chat.example:443"),
        ("MCPCHAT_ALLOWED_HOSTS", "https://chat.example"),
    ],
)
def test_settings_error_names_the_variable_when_value_is_bad(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


@pytest.mark.parametrize("env", ["dev", "test"])
def test_auth_is_single_user_when_env_is_dev_or_test(monkeypatch: pytest.MonkeyPatch, env: str) -> None:
    monkeypatch.setenv("MCPCHAT_ENV", env)
    assert load_settings().auth is AuthMode.SINGLE_USER


def test_prod_defaults_to_multi_user_and_refuses_to_start_without_secret_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MCPCHAT_ENV", "prod")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    message = str(refused.value)
    assert "MCPCHAT_SECRET_KEYS must be set" in message
    assert "the default when MCPCHAT_ENV=prod" in message
    monkeypatch.setenv("MCPCHAT_SECRET_KEYS", "k" * 32)
    settings = load_settings()
    assert settings.auth is AuthMode.MULTI_USER
    assert [key.get_secret_value() for key in settings.secret_keys] == ["k" * 32]


def test_multi_user_serves_any_host_and_needs_no_key_outside_prod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPCHAT_AUTH", "multi-user")
    monkeypatch.setenv("MCPCHAT_HOST", "0.0.0.0")
    settings = load_settings()
    assert (settings.auth, settings.host, settings.secret_keys) == (AuthMode.MULTI_USER, "0.0.0.0", [])


def test_a_short_secret_key_is_refused_without_showing_any_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPCHAT_SECRET_KEYS", f"{'n' * 32},too-short-secret")
    with pytest.raises(SettingsError, match=r"MCPCHAT_SECRET_KEYS: .*key 2 is shorter than 32") as refused:
        load_settings()
    assert "too-short-secret" not in str(refused.value)
    assert "n" * 32 not in str(refused.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MCPCHAT_RATE_AUTH", "ten a minute"),
        ("MCPCHAT_RATE_CHAT", "sixty a minute"),
        ("MCPCHAT_RATE_TOOLS", "/minute"),
        ("MCPCHAT_MAX_RUNNING_TURNS_PER_USER", "0"),
        ("MCPCHAT_TRUSTED_PROXIES", "proxy"),
    ],
)
def test_a_bad_rate_or_proxy_address_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


@pytest.mark.parametrize(
    ("auth", "variables", "limits"),
    [
        ("multi-user", {}, ("60/minute", "120/minute", 4)),
        ("single-user", {}, (None, None, None)),
        (
            "single-user",
            {
                "MCPCHAT_RATE_CHAT": "5/second",
                "MCPCHAT_RATE_TOOLS": "1/hour",
                "MCPCHAT_MAX_RUNNING_TURNS_PER_USER": "9",
            },
            ("5/second", "1/hour", 9),
        ),
        ("multi-user", {"MCPCHAT_RATE_CHAT": "2/minute;30/hour"}, ("2/minute;30/hour", "120/minute", 4)),
    ],
)
def test_usage_limits_default_on_in_multi_user_mode_and_off_in_single_user_mode_unless_set(
    monkeypatch: pytest.MonkeyPatch, auth: str, variables: dict[str, str], limits: tuple[str | int | None, ...]
) -> None:
    monkeypatch.setenv("MCPCHAT_AUTH", auth)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert (settings.chat_rate, settings.tools_rate, settings.running_turns_limit) == limits


@pytest.mark.parametrize(
    "url", ["http://:hunter2@cache:6379", "redis://:hunter2@cache:port", "redis://:hunter2@cache/db", "redis:///0"]
)
def test_a_bad_redis_url_is_refused_naming_the_variable_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("MCPCHAT_REDIS_URL", url)
    with pytest.raises(SettingsError, match=r"MCPCHAT_REDIS_URL: .*is not a Redis URL") as refused:
        load_settings()
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("", None),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("rediss://:pw@cache", "rediss://:pw@cache"),
    ],
)
def test_a_redis_url_is_read_as_a_secret_and_empty_means_unset(
    monkeypatch: pytest.MonkeyPatch, value: str, url: str | None
) -> None:
    monkeypatch.setenv("MCPCHAT_REDIS_URL", value)
    settings = load_settings()
    assert (settings.redis_url.get_secret_value() if settings.redis_url else None) == url
    assert "pw@" not in repr(settings)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "chat.example", "128.0.0.1"])
def test_single_user_settings_refuse_a_host_when_it_is_not_loopback(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.setenv("MCPCHAT_HOST", host)
    with pytest.raises(SettingsError, match="MCPCHAT_AUTH is single-user") as refused:
        load_settings()
    assert f"MCPCHAT_HOST must be a loopback address (127.0.0.1, ::1 or localhost), not {host!r}" in str(refused.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.4.5.6", "::1", "[::1]", "localhost", "LocalHost"])
def test_single_user_settings_accept_a_host_when_it_is_loopback(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.setenv("MCPCHAT_HOST", host)
    assert load_settings().host == host


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
