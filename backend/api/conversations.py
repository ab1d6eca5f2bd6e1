"""/v1/conversations: stored conversations, and chat turns in them (JSON or streamed as SSE)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from backend.api.disconnect import cancel_on_disconnect
from backend.api.schemas import (
    CancelResponse,
    ConversationCreate,
    ConversationOut,
    ConversationUpdate,
    MessageCreate,
    MessageOut,
    Page,
    TurnResponse,
)
from backend.api.sse import TurnStream
from backend.api.views import conversation_out, message_out, tool_call_out
from backend.deps import Chat, Conversations, CurrentUser
from backend.services.chat_service import TurnOutcome

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])

ConversationLimit = Annotated[int, Query(ge=1, le=100, description="Conversations per page")]
MessageLimit = Annotated[int, Query(ge=1, le=200, description="Messages per page")]
PageCursor = Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")]


@router.post("", status_code=201)
async def create_conversation(
    conversations: Conversations, user: CurrentUser, body: ConversationCreate | None = None
) -> ConversationOut:
    return conversation_out(await conversations.create(user.user_id, body.title if body else None))


@router.get("")
async def list_conversations(
    conversations: Conversations, user: CurrentUser, limit: ConversationLimit = 20, cursor: PageCursor = None
) -> Page[ConversationOut]:
    """The caller's conversations, newest first."""
    rows, next_cursor = await conversations.page(user.user_id, limit, cursor)
    return Page[ConversationOut](items=[conversation_out(row) for row in rows], next_cursor=next_cursor)


@router.get("/{conversation_id}")
async def get_conversation(conversation_id: str, conversations: Conversations, user: CurrentUser) -> ConversationOut:
    """The conversation; its messages are paged at /v1/conversations/{id}/messages."""
    return conversation_out(await conversations.get(user.user_id, conversation_id))


@router.get("/{conversation_id}/messages")
async def list_messages(
    conversation_id: str,
    conversations: Conversations,
    user: CurrentUser,
    limit: MessageLimit = 50,
    cursor: PageCursor = None,
) -> Page[MessageOut]:
    """The conversation's messages, newest first (the next page holds older ones); each assistant message carries
    its tool calls."""
    rows, next_cursor = await conversations.messages(user.user_id, conversation_id, limit, cursor)
    return Page[MessageOut](items=[message_out(row) for row in rows], next_cursor=next_cursor)


@router.patch("/{conversation_id}")
async def rename_conversation(
    conversation_id: str, body: ConversationUpdate, conversations: Conversations, user: CurrentUser
) -> ConversationOut:
    return conversation_out(await conversations.rename(user.user_id, conversation_id, body.title))


@router.delete("/{conversation_id}", status_code=204)
async def delete_conversation(conversation_id: str, conversations: Conversations, user: CurrentUser) -> Response:
    """Delete the conversation with everything in it; its running turns are cancelled first."""
    await conversations.delete(user.user_id, conversation_id)
    return Response(status_code=204)


@router.post(
    "/{conversation_id}/messages",
    responses={200: {"content": {"text/event-stream": {"description": "the turn as Server-Sent Events"}}}},
    response_model=TurnResponse,
)
async def send_message(
    conversation_id: str, body: MessageCreate, chat: Chat, user: CurrentUser, request: Request
) -> Response:
    """Answer a user message: wait for the final answer (JSON), or stream the turn (`Accept: text/event-stream`)."""
    chat.check_ready(body.content)
    if "text/event-stream" in request.headers.get("accept", ""):
        return TurnStream(lambda emit: chat.run_turn(user, conversation_id, body.content, emit))
    outcome = await cancel_on_disconnect(request, lambda: chat.run_turn(user, conversation_id, body.content))
    return Response(turn_response(outcome).model_dump_json(), media_type="application/json")


def turn_response(outcome: TurnOutcome) -> TurnResponse:
    return TurnResponse(
        status=outcome.status.value,
        message=message_out(outcome.final_message) if outcome.final_message is not None else None,
        tool_calls=[tool_call_out(call) for call in outcome.tool_calls],
    )


@router.post("/{conversation_id}/cancel", status_code=202)
async def cancel_turns(conversation_id: str, chat: Chat, user: CurrentUser) -> CancelResponse:
    """Cancel every running turn of the conversation: model calls stop, running tool calls are cancelled."""
    return CancelResponse(cancelled_turns=await chat.cancel_turns(user.user_id, conversation_id))
