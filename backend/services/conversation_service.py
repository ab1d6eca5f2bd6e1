"""Conversations as the API manages them: create, list, rename, delete, page through messages, the legacy history."""

from __future__ import annotations

from typing import Any

from backend.db.models import Conversation, Message
from backend.db.repositories import ConversationStore
from backend.services.chat_service import RunningTurns
from backend.services.history_cache import history_messages
from backend.services.openai_service import to_openai_message


class ConversationService:
    def __init__(self, store: ConversationStore, running: RunningTurns) -> None:
        self._store, self._running = store, running

    async def create(self, user_id: str, title: str | None) -> Conversation:
        return await self._store.create(user_id, title)

    async def get(self, user_id: str, conversation_id: str) -> Conversation:
        """One conversation.

        Raises:
            ConversationNotFoundError: the user has no such conversation.
        """
        return await self._store.get(user_id, conversation_id)

    async def page(self, user_id: str, limit: int, cursor: str | None) -> tuple[list[Conversation], str | None]:
        """Newest first; the cursor of the next page, None on the last.

        Raises:
            BadRequestError: the cursor was not one this API issued.
        """
        return await self._store.page(user_id, limit, cursor)

    async def rename(self, user_id: str, conversation_id: str, title: str | None) -> Conversation:
        """Give the conversation a new title (None: none).

        Raises:
            ConversationNotFoundError: the user has no such conversation.
        """
        return await self._store.rename(user_id, conversation_id, title)

    async def delete(self, user_id: str, conversation_id: str) -> None:
        """Cancel the conversation's running turns, then delete it with everything in it.

        Raises:
            ConversationNotFoundError: the user has no such conversation.
        """
        await self._store.get(user_id, conversation_id)  # another user's running turns are not cancelled
        self._running.cancel(conversation_id)
        await self._store.delete(user_id, conversation_id)

    async def messages(
        self, user_id: str, conversation_id: str, limit: int, cursor: str | None
    ) -> tuple[list[Message], str | None]:
        """A page of the conversation's messages, newest first.

        Raises:
            ConversationNotFoundError: the user has no such conversation.
            BadRequestError: the cursor was not one this API issued.
        """
        return await self._store.messages_page(user_id, conversation_id, limit, cursor)

    async def legacy_history(self, user_id: str) -> list[dict[str, Any]]:
        """The user's legacy conversation (behind /api/chat) as OpenAI-format messages, ready to replay to a model."""
        conversation = await self._store.legacy(user_id)
        turns = await self._store.history(user_id, conversation.id)
        return [to_openai_message(message) for message in history_messages(turns)]

    async def clear_legacy(self, user_id: str) -> None:
        """Start a fresh legacy conversation; the old one stays stored (and listed under /v1/conversations)."""
        await self._store.new_legacy(user_id)
