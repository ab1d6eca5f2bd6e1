"""Stored rows as API models: one place that turns the database's shapes into the HTTP API's."""

from __future__ import annotations

from backend.api.schemas import ApiKeyOut, AuditEventOut, ConversationOut, MessageOut, ToolCallOut, UserOut
from backend.db.models import ApiKey, AuditEvent, Conversation, Message, ToolCall, User
from backend.db.records import MessageRecord, ToolCallRecord
from backend.services import tool_arguments


def tool_call_out(call: ToolCall | ToolCallRecord) -> ToolCallOut:
    return ToolCallOut(
        id=call.id,
        name=call.name,
        server=call.server,
        arguments=tool_arguments.for_display(call.arguments_json),
        result=call.result,
        result_text=call.result_text,
        is_error=call.is_error,
        status=call.status,
        duration_ms=call.duration_ms,
    )


def message_out(message: Message | MessageRecord) -> MessageOut:
    return MessageOut(
        id=message.id,
        role=message.role,
        content=message.content,
        tool_calls=[tool_call_out(call) for call in message.tool_calls],
        status=message.status,
        created_at=message.created_at,
    )


def conversation_out(conversation: Conversation) -> ConversationOut:
    return ConversationOut(
        id=conversation.id,
        title=conversation.title,
        kind=conversation.kind,
        created_at=conversation.created_at,
        updated_at=conversation.updated_at,
    )


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        email=user.email,
        name=user.name,
        role=user.role,
        is_disabled=user.is_disabled,
        created_at=user.created_at,
        last_login_at=user.last_login_at,
    )


def api_key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        scopes=key.scopes.split(),
        created_at=key.created_at,
        expires_at=key.expires_at,
        last_used_at=key.last_used_at,
    )


def audit_event_out(event: AuditEvent) -> AuditEventOut:
    return AuditEventOut(
        id=event.id,
        created_at=event.created_at,
        event=event.event,
        actor_id=event.actor_id,
        subject_id=event.subject_id,
        address=event.address,
        details=event.details,
    )
