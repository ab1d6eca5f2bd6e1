"""Server specs and settings for tests: the bundled calculator and the purpose-built test server."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from backend.config import Settings
from backend.mcp.servers_file import ServerSpec
from tests.support.fake_openai import FakeOpenAI

REPO_ROOT = Path(__file__).resolve().parents[2]


class IsolatedSettings(Settings):
    """Settings from the values a test passes and the defaults alone: the developer's environment variables and
    `.env` (an OPENAI_API_KEY, a system prompt) never reach a test."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for one test: its own database file, no model, quick retries, short grace periods."""
    values: dict[str, Any] = {
        "env": "test",
        "database_url": f"sqlite:///{tmp_path / 'mcpchat.db'}",
        "reconnect_initial_s": 0.05,
        "reconnect_max_s": 0.5,
        "shutdown_grace_s": 1.0,
        "servers_file": tmp_path / "no-servers-file.json",
    }
    values.update(overrides)
    return IsolatedSettings(**values)


def chat_settings(tmp_path: Path, fake_llm: FakeOpenAI, **overrides: Any) -> Settings:
    """Settings whose model is the fake OpenAI server, with retries quick enough for tests."""
    values: dict[str, Any] = {
        "openai_base_url": fake_llm.base_url,
        "openai_api_key": "test-key",
        "llm_retry_initial_s": 0.01,
        "llm_retry_max_s": 0.05,
    }
    values.update(overrides)
    return make_settings(tmp_path, **values)


def calculator_spec(name: str = "calculator", **overrides: Any) -> ServerSpec:
    values: dict[str, Any] = {
        "name": name,
        "transport": "stdio",
        "command": sys.executable,
        "args": ("-m", "mcp_servers.calculator"),
        "cwd": str(REPO_ROOT),
    }
    values.update(overrides)
    return ServerSpec(**values)


def testserver_spec(
    name: str = "test", *args: str, env: Mapping[str, str] | None = None, timeout_s: float = 5, **overrides: Any
) -> ServerSpec:
    values: dict[str, Any] = {
        "name": name,
        "transport": "stdio",
        "command": sys.executable,
        "args": ("-m", "tests.support.mcp_test_server", *args),
        "cwd": str(REPO_ROOT),
        "env": dict(env or {}),
        "call_timeout_s": timeout_s,
        "connect_timeout_s": 20,
    }
    values.update(overrides)
    return ServerSpec(**values)


def http_spec(name: str, url: str, **overrides: Any) -> ServerSpec:
    values: dict[str, Any] = {"name": name, "transport": "http", "url": url, "connect_timeout_s": 10}
    values.update(overrides)
    return ServerSpec(**values)
