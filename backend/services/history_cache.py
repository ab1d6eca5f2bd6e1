"""The history cache: finished turns rendered as model messages, by turn id, for the chat loop to send again.

Finished turns never change, and the database decides which of them are in a turn's context (see
`ConversationStore.start_turn`), so an entry can never be stale, whichever process wrote the turn: a long
conversation is neither read again nor rendered again on every turn. A provider keeps its wire form of a turn on
the rendered turn itself (`HistoryTurn.encoded`), so it lives and goes with the entry. The bound counts each
turn's text (twice: its messages and that encoding) plus a fixed cost per turn.
"""

from __future__ import annotations

from collections.abc import Container, Sequence

from backend.db.models import ToolCall, ToolCallStatus, Turn
from backend.db.repositories import ContextToolCall, ContextTurn
from backend.services import tool_arguments
from backend.services.llm_provider import (
    AssistantMessage,
    HistoryTurn,
    LLMMessage,
    ToolCallRequest,
    ToolResultMessage,
    UserMessage,
)
from backend.services.weighted_cache import WeightedCache

# Some 3,000 short turns (a dozen full context windows), or a few dozen with long tool results.
HISTORY_CACHE_UNITS = 8_000_000
TURN_COST_UNITS = 1_000


class HistoryCache:
    def __init__(self, max_units: int = HISTORY_CACHE_UNITS) -> None:
        self._turns: WeightedCache[str, HistoryTurn] = WeightedCache(max_units, _units)

    def known(self) -> Container[str]:
        """The ids of the turns kept now (a live view: asking `in` costs a dict lookup)."""
        return self._turns.keys()

    def add(self, turn_id: str, turn: ContextTurn) -> HistoryTurn:
        """Render a finished turn and keep it."""
        rendered = HistoryTurn(turn_id, tuple(history_messages([turn])))
        self._turns.put(turn_id, rendered)
        return rendered

    def history(self, turn_ids: Sequence[str], rows: dict[str, ContextTurn]) -> list[HistoryTurn] | None:
        """The turns `turn_ids` (oldest first), rendered from `rows` where given and from the cache otherwise;
        None when one is in neither (pushed out since its rows were left unread): read its rows and ask again."""
        if not rows:  # the usual case: every turn is kept
            return self._turns.get_many(turn_ids)
        out: list[HistoryTurn] = []
        for turn_id in turn_ids:
            turn_rows = rows.get(turn_id)
            rendered = self.add(turn_id, turn_rows) if turn_rows is not None else self._turns.get(turn_id)
            if rendered is None:
                return None
            out.append(rendered)
        return out


def history_messages(turns: Sequence[Turn | ContextTurn]) -> list[LLMMessage]:
    """Stored turns as model messages: each assistant tool-call message followed by one result per call."""
    out: list[LLMMessage] = []
    for turn in turns:
        for message in turn.messages:
            if message.role == "user":
                out.append(UserMessage(message.content))
                continue
            requests = tuple(
                ToolCallRequest(id=c.call_id, name=c.name, arguments=tool_arguments.replayable(c.arguments_json))
                for c in message.tool_calls
            )
            out.append(AssistantMessage(message.content, requests))
            out.extend(ToolResultMessage(c.call_id, tool_result_text(c)) for c in message.tool_calls)
    return out


def tool_result_text(call: ToolCall | ContextToolCall) -> str:
    """What the model is shown of a stored tool call: its result, or what became of it."""
    if call.result_text is not None:
        return call.result_text
    return f"{'[tool error] ' if call.status != ToolCallStatus.COMPLETED else ''}The tool call was {call.status}."


def _units(turn: HistoryTurn) -> int:
    text = 0
    for message in turn.messages:
        text += len(message.content)
        if isinstance(message, AssistantMessage):
            text += sum(len(call.arguments) + len(call.name) for call in message.tool_calls)
    return TURN_COST_UNITS + 2 * text
