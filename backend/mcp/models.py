"""What MCP Chat knows about its servers, their tools, prompts and resources: our types, not the SDK's."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, JsonValue

Transport = Literal["stdio", "http", "sse"]
JsonObject = dict[str, JsonValue]


class ServerStatus(StrEnum):
    STARTING = "starting"
    READY = "ready"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    DISABLED = "disabled"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class ToolInfo(_Frozen):
    name: str  # what an LLM sees: <server>__<tool>, sanitized and unique
    server: str
    original_name: str
    title: str | None = None
    description: str | None = None
    input_schema: JsonObject
    output_schema: JsonObject | None = None
    annotations: JsonObject | None = None


class PromptArgument(_Frozen):
    name: str
    description: str | None = None
    required: bool = False


class PromptInfo(_Frozen):
    name: str
    server: str
    original_name: str
    title: str | None = None
    description: str | None = None
    arguments: list[PromptArgument] = []


class ResourceInfo(_Frozen):
    uri: str
    server: str
    name: str
    title: str | None = None
    description: str | None = None
    mime_type: str | None = None


class ResourceTemplateInfo(_Frozen):
    uri_template: str
    server: str
    name: str
    title: str | None = None
    description: str | None = None
    mime_type: str | None = None


class ToolResult(_Frozen):
    content: list[JsonObject]
    structured_content: JsonObject | None = None
    is_error: bool = False
    duration_ms: float


class PromptResult(_Frozen):
    description: str | None = None
    messages: list[JsonObject]


class ResourceContents(_Frozen):
    server: str
    contents: list[JsonObject]


class Progress(_Frozen):
    progress: float
    total: float | None = None
    message: str | None = None


class ServerState(_Frozen):
    """One server as the API shows it."""

    name: str
    status: ServerStatus
    transport: Transport
    description: str | None = None
    protocol_version: str | None = None
    server_name: str | None = None
    server_version: str | None = None
    error: str | None = None
    tool_count: int = 0
    prompt_count: int = 0
    resource_count: int = 0
    pid: int | None = None
