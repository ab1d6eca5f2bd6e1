"""The legacy chat API, contract unchanged: POST /api/chat, GET /api/history, POST /api/clear.

The old React page and scripts use it. Its history is one stored conversation (the newest of kind `legacy`);
/api/clear starts a new one and keeps the old. Errors are problem+json that also carry `error`.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from backend.api.disconnect import cancel_on_disconnect
from backend.deps import Chat, Conversations, CurrentUser
from backend.errors import AppError, BadRequestError
from backend.services import tool_arguments

router = APIRouter(prefix="/api", tags=["legacy"])


class UnsupportedMediaTypeError(AppError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


async def _message_from(request: Request) -> str:
    """The `message` of a JSON body, checked the way the old app's clients expect."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaTypeError("Send the body as JSON with Content-Type: application/json.")
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"The body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequestError('The body must be a JSON object like {"message": "..."}.')
    message = body.get("message")
    if not isinstance(message, str) or not message.strip():
        raise BadRequestError('"message" is required and must be a non-empty string.')
    return message


@router.post(
    "/chat",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object", "properties": {"message": {"type": "string"}}}}
            },
        }
    },
)
async def legacy_chat(request: Request, chat: Chat, user: CurrentUser) -> JSONResponse:
    """`{"message"}` → `{"response", "tool_calls": [{"name", "args", "result", "id"}]}`."""
    message = await _message_from(request)
    chat.check_ready(message)
    outcome = await cancel_on_disconnect(request, lambda: chat.run_legacy_turn(user, message))
    final = outcome.final_message
    # Plain JSON built here: the shape is the old app's, and nothing in it needs the response model's checks.
    return JSONResponse(
        {
            "response": final.content if final is not None else "",
            "tool_calls": [
                {
                    "name": call.name,
                    "args": tool_arguments.as_object(call.arguments_json) or {},
                    "result": call.result_text or "",
                    "id": call.call_id,
                }
                for call in outcome.tool_calls
            ],
        }
    )


@router.get("/history")
async def legacy_history(conversations: Conversations, user: CurrentUser) -> dict[str, Any]:
    """The caller's legacy conversation in OpenAI message format, ready to replay to a model."""
    return {"history": await conversations.legacy_history(user.user_id)}


@router.post("/clear")
async def legacy_clear(conversations: Conversations, user: CurrentUser) -> dict[str, Any]:
    """Start a fresh legacy conversation for the caller; the old one stays stored (and listed under
    /v1/conversations)."""
    await conversations.clear_legacy(user.user_id)
    return {"history": []}
