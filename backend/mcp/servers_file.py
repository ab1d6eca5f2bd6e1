"""The MCP servers file: Claude Desktop / Cursor `mcpServers` or VS Code `servers`, parsed into ServerSpecs.

`${env:NAME}` in any string is replaced from the environment; an unset variable makes only that
server fail (it names the variable). `${python}` is the interpreter running MCP Chat, so bundled
Python servers start from a fresh clone without an activated venv. Relative `cwd` is resolved
against the file's folder.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backend.mcp.models import Transport

_ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
_PYTHON_REF = "${python}"
_SERVER_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class ServersFileError(Exception):
    """The servers file cannot be used; the message names the file, the server and the problem."""


class _Entry(BaseModel):
    """One server as written in the file; unknown keys are kept out of the way, not rejected."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["stdio", "http", "sse", "streamable-http", "streamableHttp"] | None = None
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True
    timeout_s: float = Field(default=60.0, gt=0)
    connect_timeout_s: float = Field(default=30.0, gt=0)
    description: str | None = None


class ServerSpec(BaseModel):
    """A server ready to connect to, with every reference resolved (or the reason it cannot be)."""

    model_config = ConfigDict(frozen=True)

    name: str
    transport: Transport
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: Mapping[str, str] = Field(default_factory=dict, repr=False)
    is_enabled: bool = True
    call_timeout_s: float = 60.0
    connect_timeout_s: float = 30.0
    description: str | None = None
    # Set when a `${env:NAME}` reference cannot be resolved: the server is listed as failed.
    config_error: str | None = None


def load_servers_file(path: Path, environ: Mapping[str, str] | None = None) -> list[ServerSpec]:
    """Read and validate a servers file.

    Raises:
        ServersFileError: the file is missing, is not JSON, or an entry is neither stdio nor HTTP.
    """
    environ = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ServersFileError(f"servers file {path}: cannot be read ({exc.strerror or exc})") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ServersFileError(f"servers file {path}: not valid JSON: {exc.msg} at line {exc.lineno}") from exc
    if not isinstance(document, dict):
        raise ServersFileError(f"servers file {path}: the top level must be an object with 'mcpServers' or 'servers'")
    entries = document.get("mcpServers", document.get("servers"))
    if entries is None:
        raise ServersFileError(f"servers file {path}: no 'mcpServers' (or VS Code 'servers') object")
    if not isinstance(entries, dict):
        raise ServersFileError(f"servers file {path}: 'mcpServers' must be an object of name → server")
    return [_parse_entry(path, name, raw, environ) for name, raw in entries.items()]


def _parse_entry(path: Path, name: str, raw: object, environ: Mapping[str, str]) -> ServerSpec:
    where = f"servers file {path}: server {name!r}"
    if not _SERVER_NAME.fullmatch(name):
        raise ServersFileError(f"{where}: names may hold only letters, digits, '_', '-', '.' (1-64 characters)")
    if not isinstance(raw, dict):
        raise ServersFileError(f"{where}: must be an object with 'command' (stdio) or 'url' (http)")
    try:
        entry = _Entry.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise ServersFileError(f"{where}: {field}: {first['msg']}") from exc
    transport = _transport_of(entry, where)
    missing: list[str] = []

    def resolve(value: str) -> str:
        def substitute(match: re.Match[str]) -> str:
            if match.group(1) not in environ:
                missing.append(match.group(1))
                return ""
            return environ[match.group(1)]

        return _ENV_REF.sub(substitute, value.replace(_PYTHON_REF, sys.executable))

    cwd = None
    if entry.cwd is not None:
        cwd = str((path.parent / resolve(entry.cwd)).resolve())
    elif transport == "stdio":
        cwd = str(path.parent.resolve())
    spec = ServerSpec(
        name=name,
        transport=transport,
        command=resolve(entry.command) if entry.command is not None else None,
        args=tuple(resolve(arg) for arg in entry.args),
        env={key: resolve(value) for key, value in entry.env.items()},
        cwd=cwd,
        url=resolve(entry.url) if entry.url is not None else None,
        headers={key: resolve(value) for key, value in entry.headers.items()},
        is_enabled=entry.enabled,
        call_timeout_s=entry.timeout_s,
        connect_timeout_s=entry.connect_timeout_s,
        description=entry.description,
        config_error=("environment variable(s) not set: " + ", ".join(dict.fromkeys(missing)) if missing else None),
    )
    return spec


def _transport_of(entry: _Entry, where: str) -> Transport:
    if entry.type == "sse":
        if entry.url is None:
            raise ServersFileError(f"{where}: type 'sse' needs a 'url'")
        return "sse"
    if entry.type == "stdio" or (entry.type is None and entry.command is not None):
        if entry.command is None:
            raise ServersFileError(f"{where}: type 'stdio' needs a 'command'")
        return "stdio"
    if entry.url is not None:
        return "http"
    raise ServersFileError(f"{where}: neither stdio nor http: give a 'command' (stdio) or a 'url' (http)")
