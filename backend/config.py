"""Settings: the only reader of environment variables and `.env`."""

from __future__ import annotations

import ipaddress
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar
from urllib.parse import urlsplit

from limits import parse_many
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

BUNDLED_SERVERS_FILE = Path(__file__).resolve().parent.parent / "mcp_servers" / "servers.json"
DEV_CORS_ORIGINS = ("http://localhost:3000", "http://localhost:5173")
ENV_FILE_VARIABLE = "MCPCHAT_ENV_FILE"
MIN_SECRET_KEY_CHARS = 32  # an HS256 key has at least 256 bits (RFC 7518 section 3.2)
_DATABASE_SCHEMES = ("sqlite://", "sqlite+aiosqlite://", "postgresql://", "postgresql+asyncpg://")
_REDIS_SCHEMES = ("redis://", "rediss://")
# Usage limits in multi-user mode when unset; single-user mode has none unless set (its one owner is not an abuser).
MULTI_USER_RATE_CHAT = "60/minute"
MULTI_USER_RATE_TOOLS = "120/minute"
MULTI_USER_MAX_RUNNING_TURNS = 4
_Limit = TypeVar("_Limit", str, int)  # a usage limit: a rate string, or a count


class Environment(StrEnum):
    DEV = "dev"
    PROD = "prod"
    TEST = "test"


class AuthMode(StrEnum):
    SINGLE_USER = "single-user"  # no accounts: whoever reaches the app uses it, so it listens on loopback only
    MULTI_USER = "multi-user"  # accounts: every route but health, docs and sign-in needs a credential


def _default_auth(data: dict[str, Any]) -> AuthMode:
    """Single-user in dev and test, multi-user in prod; `data` holds the fields validated before `auth`."""
    return AuthMode.MULTI_USER if data["env"] is Environment.PROD else AuthMode.SINGLE_USER


class SettingsError(Exception):
    """The environment holds a value that cannot be used; the message names the variable."""


class Settings(BaseSettings):
    """Everything MCP Chat reads from the environment, validated once at start-up."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    env: Environment = Field(default=Environment.DEV, validation_alias="MCPCHAT_ENV")
    host: str = Field(default="127.0.0.1", validation_alias="MCPCHAT_HOST")
    auth: AuthMode = Field(default_factory=_default_auth, validation_alias="MCPCHAT_AUTH")
    port: int = Field(default=5001, ge=0, le=65535, validation_alias="MCPCHAT_PORT")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", validation_alias="MCPCHAT_LOG_LEVEL"
    )
    # None: JSON lines in prod, readable console lines elsewhere.
    log_json: bool | None = Field(default=None, validation_alias="MCPCHAT_LOG_JSON")

    openai_api_key: str = Field(default="", validation_alias="OPENAI_API_KEY", repr=False)
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    model: str = Field(default="gpt-4o-mini", min_length=1, validation_alias="MCPCHAT_MODEL")

    # The chat loop and its model calls.
    max_tool_rounds: int = Field(default=10, ge=1, le=100, validation_alias="MCPCHAT_MAX_TOOL_ROUNDS")
    context_max_tokens: int = Field(default=16000, ge=256, validation_alias="MCPCHAT_CONTEXT_MAX_TOKENS")
    max_message_chars: int = Field(default=32000, ge=1, validation_alias="MCPCHAT_MAX_MESSAGE_CHARS")
    tool_result_max_bytes: int = Field(default=100_000, ge=1000, validation_alias="MCPCHAT_TOOL_RESULT_MAX_BYTES")
    # What a tool call stores and streams (content blocks, images included): larger results are cut, with a note.
    tool_result_store_max_bytes: int = Field(
        default=1024 * 1024, ge=1000, validation_alias="MCPCHAT_TOOL_RESULT_STORE_MAX_BYTES"
    )
    system_prompt: str | None = Field(default=None, validation_alias="MCPCHAT_SYSTEM_PROMPT")
    llm_timeout_s: float = Field(default=120.0, gt=0, validation_alias="MCPCHAT_LLM_TIMEOUT_S")
    llm_max_attempts: int = Field(default=4, ge=1, le=10, validation_alias="MCPCHAT_LLM_MAX_ATTEMPTS")
    llm_retry_initial_s: float = Field(default=0.5, gt=0, validation_alias="MCPCHAT_LLM_RETRY_INITIAL_S")
    llm_retry_max_s: float = Field(default=20.0, gt=0, validation_alias="MCPCHAT_LLM_RETRY_MAX_S")
    # Model calls open at once (the OpenAI SDK's default); a call beyond it waits for a free connection.
    llm_max_connections: int = Field(default=1000, ge=1, le=100_000, validation_alias="MCPCHAT_LLM_MAX_CONNECTIONS")

    database_url: str = Field(default="sqlite:///./data/mcpchat.db", validation_alias="MCPCHAT_DATABASE_URL")
    servers_file: Path = Field(default=BUNDLED_SERVERS_FILE, validation_alias="MCPCHAT_SERVERS_FILE")
    cors_origins: Annotated[list[str] | None, NoDecode] = Field(default=None, validation_alias="MCPCHAT_CORS_ORIGINS")
    # Host header names accepted besides loopback ones (lowercase, no brackets): the DNS-rebinding guard's list.
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="MCPCHAT_ALLOWED_HOSTS"
    )
    max_body_bytes: int = Field(default=1024 * 1024, gt=0, validation_alias="MCPCHAT_MAX_BODY_BYTES")

    # Accounts (multi-user mode). Keys sign access tokens: newest first, each at least 32 characters.
    secret_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, validation_alias="MCPCHAT_SECRET_KEYS", repr=False
    )
    data_dir: Path = Field(default=Path("./data"), validation_alias="MCPCHAT_DATA_DIR")  # holds a made key
    access_token_ttl_s: int = Field(default=900, ge=60, le=86_400, validation_alias="MCPCHAT_ACCESS_TOKEN_TTL_S")
    refresh_token_ttl_s: int = Field(
        default=30 * 86_400, ge=3600, le=365 * 86_400, validation_alias="MCPCHAT_REFRESH_TOKEN_TTL_S"
    )
    signup: Literal["open", "closed"] = Field(default="closed", validation_alias="MCPCHAT_SIGNUP")
    # Sign-in, sign-up and refresh attempts per client address and per account (a `limits` rate string).
    rate_auth: str = Field(default="10/minute", validation_alias="MCPCHAT_RATE_AUTH")
    # Chat turns, and direct tool calls, prompt gets and resource reads, per user and per API key (`limits` rate
    # strings), and turns running at once per user. None: the mode's default (see `chat_rate` and the others).
    rate_chat: str | None = Field(default=None, validation_alias="MCPCHAT_RATE_CHAT")
    rate_tools: str | None = Field(default=None, validation_alias="MCPCHAT_RATE_TOOLS")
    max_running_turns_per_user: int | None = Field(
        default=None, ge=1, validation_alias="MCPCHAT_MAX_RUNNING_TURNS_PER_USER"
    )
    # Where rate-limit counters live, shared by every replica; None: this process's memory. It may hold a password.
    redis_url: SecretStr | None = Field(default=None, validation_alias="MCPCHAT_REDIS_URL", repr=False)
    # Proxies whose X-Forwarded-For names the client (addresses or networks); nobody else's is believed.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="MCPCHAT_TRUSTED_PROXIES"
    )

    # Supervision of MCP connections: first retry at most 1 s, capped at 30 s.
    reconnect_initial_s: float = Field(default=0.5, gt=0, le=60, validation_alias="MCPCHAT_RECONNECT_INITIAL_S")
    reconnect_max_s: float = Field(default=30.0, gt=0, validation_alias="MCPCHAT_RECONNECT_MAX_S")
    shutdown_grace_s: float = Field(default=2.0, gt=0, le=8, validation_alias="MCPCHAT_SHUTDOWN_GRACE_S")

    @field_validator("cors_origins", "allowed_hosts", "secret_keys", "trusted_proxies", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _check_hosts(cls, value: list[str]) -> list[str]:
        hosts = []
        for host in value:
            name = bare_host(host)
            if "/" in name or (":" in name and not _is_ip_address(name)):
                raise ValueError(f"{host!r} is not a host name: list names or addresses, without scheme or port")
            hosts.append(name)
        return hosts

    @field_validator("secret_keys")
    @classmethod
    def _check_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        for number, key in enumerate(value, 1):
            if len(key.get_secret_value()) < MIN_SECRET_KEY_CHARS:
                raise ValueError(f"key {number} is shorter than {MIN_SECRET_KEY_CHARS} characters")
        return value

    @field_validator("rate_auth", "rate_chat", "rate_tools")
    @classmethod
    def _check_rate(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parse_many(value)
        except ValueError as exc:
            raise ValueError("is not a rate such as 10/minute or 100/hour;5/second") from exc
        return value

    @field_validator("redis_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _is_redis_url(value.get_secret_value()):
            raise ValueError("is not a Redis URL: redis://[:password@]host[:port][/db number], or rediss:// for TLS")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise ValueError(f"{network!r} is not an IP address or network") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if not value.startswith(_DATABASE_SCHEMES):
            raise ValueError(f"must start with one of {', '.join(_DATABASE_SCHEMES)}")
        if value.startswith("sqlite") and _is_in_memory_sqlite(value):
            raise ValueError(
                "is an in-memory SQLite database, which MCP Chat cannot use: each of its connections would see an "
                "empty database of its own, and nothing would be kept. Use a file, e.g. sqlite:///./data/mcpchat.db"
            )
        return value

    @model_validator(mode="after")
    def _check_auth(self) -> Self:
        if self.auth is AuthMode.MULTI_USER:
            if self.env is Environment.PROD and not self.secret_keys:
                why = "" if "auth" in self.model_fields_set else " (the default when MCPCHAT_ENV=prod)"
                raise ValueError(
                    f"MCPCHAT_AUTH is multi-user{why} and MCPCHAT_ENV is prod, so MCPCHAT_SECRET_KEYS must be set: "
                    "one or more random keys of at least 32 characters, comma-separated, newest first (e.g. "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`), the same on every replica."
                )
            return self
        if not is_loopback_host(self.host):
            raise ValueError(
                f"MCPCHAT_AUTH is single-user, which has no accounts, so MCPCHAT_HOST must be a loopback address "
                f"(127.0.0.1, ::1 or localhost), not {self.host!r}: anyone who reached it could run your tools. "
                "To serve other machines, set MCPCHAT_AUTH=multi-user (accounts)."
            )
        return self

    @property
    def chat_rate(self) -> str | None:
        """Chat turns per user and per API key: MCPCHAT_RATE_CHAT, else 60/minute in multi-user mode, else none."""
        return self._usage_limit(self.rate_chat, MULTI_USER_RATE_CHAT)

    @property
    def tools_rate(self) -> str | None:
        """Direct tool calls, prompt gets and resource reads per user and per API key: MCPCHAT_RATE_TOOLS, else
        120/minute in multi-user mode, else none."""
        return self._usage_limit(self.rate_tools, MULTI_USER_RATE_TOOLS)

    @property
    def running_turns_limit(self) -> int | None:
        """Turns one user may run at once: MCPCHAT_MAX_RUNNING_TURNS_PER_USER, else 4 in multi-user mode, else none."""
        return self._usage_limit(self.max_running_turns_per_user, MULTI_USER_MAX_RUNNING_TURNS)

    def _usage_limit(self, configured: _Limit | None, multi_user_default: _Limit) -> _Limit | None:
        if configured is not None:
            return configured
        return multi_user_default if self.auth is AuthMode.MULTI_USER else None

    @property
    def is_signup_open(self) -> bool:
        return self.signup == "open"

    @property
    def allowed_origins(self) -> list[str]:
        """CORS origins: the configured list, or the React and Vite dev servers in dev."""
        if self.cors_origins is not None:
            return self.cors_origins
        return list(DEV_CORS_ORIGINS) if self.env is Environment.DEV else []

    @property
    def is_json_logging(self) -> bool:
        return self.log_json if self.log_json is not None else self.env is Environment.PROD


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment, the dotenv file MCPCHAT_ENV_FILE names (default `.env`, empty for
    none) and `overrides`, by field name.

    Raises:
        SettingsError: a variable holds a value that cannot be used; the message names it.
    """
    env_file = os.environ.get(ENV_FILE_VARIABLE, ".env") or None
    try:
        return Settings(_env_file=env_file, **overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            if error["type"] == "default_factory_not_called":  # a field it depends on failed: that error says why
                continue
            if not error["loc"]:  # a rule across variables: its message names them, and its input is every value
                problems.append(str(error["msg"]).removeprefix("Value error, "))
                continue
            field = str(error["loc"][0])
            variable = _variable_name(field)
            shown = "" if _is_secret(field) else f" (got {error.get('input')!r})"
            problems.append(f"{variable}: {error['msg']}{shown}")
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from exc


def is_loopback_host(host: str) -> bool:
    """Whether `host` (a name or an address, IPv6 bracketed or not) is this machine: localhost, 127.0.0.0/8, ::1."""
    name = bare_host(host)
    return name == "localhost" or (_is_ip_address(name) and ipaddress.ip_address(name).is_loopback)


def bare_host(host: str) -> str:
    """`host` as the guard compares it: lowercase, an IPv6 address without its brackets."""
    return host.lower().removeprefix("[").removesuffix("]")


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _is_redis_url(text: str) -> bool:
    url = urlsplit(text)
    try:
        url.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        return False
    database = url.path.removeprefix("/")
    return text.startswith(_REDIS_SCHEMES) and bool(url.hostname) and (database == "" or database.isdigit())


def _is_in_memory_sqlite(url: str) -> bool:
    database = make_url(url.replace("sqlite+aiosqlite://", "sqlite://", 1)).database or ""
    return database in ("", ":memory:") or database.startswith("file::memory:") or "mode=memory" in url


def _is_secret(field: str) -> bool:
    """Whether the field (named as in an error's location: by name or by its variable) is a secret, whose value no
    message may show."""
    return any(
        info.repr is False for name, info in Settings.model_fields.items() if field in (name, info.validation_alias)
    )


def _variable_name(field: str) -> str:
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, str):
        return alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return field
