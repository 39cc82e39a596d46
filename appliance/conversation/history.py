"""The stored turns as the model sees them: heard text only, interruptions marked."""

from __future__ import annotations

from .memory import Turn
from ..llm.base import ChatMessage

INTERRUPTED_MARK = " —"


def history_messages(turns: list[Turn]) -> list[ChatMessage]:
    """Stored turns as the model sees them: heard text only, interruptions marked."""
    out: list[ChatMessage] = []
    for t in turns:
        if t.role == "user":
            out.append(ChatMessage("user", t.text))
        elif t.role == "assistant":
            text = as_heard(t.text, t.interrupted)
            if text:
                out.append(ChatMessage("assistant", text, interrupted=t.interrupted))
    while out and out[0].role != "user":
        out.pop(0)
    return out


def as_heard(text: str, interrupted: bool) -> str:
    text = text.strip()
    return text + INTERRUPTED_MARK if interrupted and text else text
