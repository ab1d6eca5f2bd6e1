"""/v1/conversations: stored conversations, and chat turns in them (JSON or streamed as SSE)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from backend.api.disconnect import cancel_on_disconnect
from backend.api.schemas import (
    CancelResponse,
    ConversationCreate,
    ConversationDetail,
    ConversationOut,
    ConversationUpdate,
    MessageCreate,
    Page,
    TurnResponse,
)
from backend.api.sse import TurnStream
from backend.api.views import conversation_detail, conversation_out, message_out, tool_call_out
from backend.deps import Chat, Store, chat_of
from backend.services.chat_service import TurnOutcome

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])

ConversationLimit = Annotated[int, Query(ge=1, le=100, description="Conversations per page")]
ConversationCursor = Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")]


@router.post("", status_code=201)
async def create_conversation(store: Store, body: ConversationCreate | None = None) -> ConversationOut:
    return conversation_out(await store.create(body.title if body else None))


@router.get("")
async def list_conversations(
    store: Store, limit: ConversationLimit = 20, cursor: ConversationCursor = None
) -> Page[ConversationOut]:
    """Newest first."""
    rows, next_cursor = await store.page(limit, cursor)
    return Page[ConversationOut](items=[conversation_out(row) for row in rows], next_cursor=next_cursor)


@router.get("/{conversation_id}")
async def get_conversation(conversation_id: str, store: Store) -> ConversationDetail:
    """The conversation with every stored message, oldest first; each assistant message carries its tool calls."""
    conversation, turns = await store.history(conversation_id)
    return conversation_detail(conversation, turns)


@router.patch("/{conversation_id}")
async def rename_conversation(conversation_id: str, body: ConversationUpdate, store: Store) -> ConversationOut:
    return conversation_out(await store.rename(conversation_id, body.title))


@router.delete("/{conversation_id}", status_code=204)
async def delete_conversation(conversation_id: str, store: Store) -> Response:
    await store.delete(conversation_id)
    return Response(status_code=204)


@router.post(
    "/{conversation_id}/messages",
    responses={200: {"content": {"text/event-stream": {"description": "the turn as Server-Sent Events"}}}},
    response_model=TurnResponse,
)
async def send_message(conversation_id: str, body: MessageCreate, request: Request) -> Response:
    """Answer a user message: wait for the final answer (JSON), or stream the turn (`Accept: text/event-stream`)."""
    chat = chat_of(request)
    chat.check_ready(body.content)
    if "text/event-stream" in request.headers.get("accept", ""):
        return TurnStream(lambda emit: chat.run_turn(conversation_id, body.content, emit))
    outcome = await cancel_on_disconnect(request, lambda: chat.run_turn(conversation_id, body.content))
    # Serialized here: the model was just built and checked, and FastAPI would validate it again (30 us).
    return Response(turn_response(outcome).model_dump_json(), media_type="application/json")


def turn_response(outcome: TurnOutcome) -> TurnResponse:
    return TurnResponse(
        status=outcome.status.value,
        message=message_out(outcome.final_message) if outcome.final_message is not None else None,
        tool_calls=[tool_call_out(call) for call in outcome.tool_calls],
    )


@router.post("/{conversation_id}/cancel", status_code=202)
async def cancel_turns(conversation_id: str, store: Store, chat: Chat) -> CancelResponse:
    """Cancel every running turn of the conversation: model calls stop, running tool calls are cancelled."""
    await store.get(conversation_id)
    return CancelResponse(cancelled_turns=chat.running.cancel(conversation_id))
