"""Fitting a prompt into the local model's context: what to cut, in order (history first,
then knowledge-base passages, then the longest message of the current turn). Pure: the model
renders and counts tokens (llm/local.py), this decides the next cut."""

from __future__ import annotations

from dataclasses import replace

from .base import ChatMessage

MIN_ANSWER = 64   # tokens of answer a prompt always leaves room for


def _current_turn(messages: list[ChatMessage]) -> int:
    """Index of the last user message (history is what comes before it)."""
    return max((i for i, m in enumerate(messages) if m.role == "user"), default=0)


def fit_step(messages: list[ChatMessage], excess_tokens: int
              ) -> tuple[list[ChatMessage], str] | None:
    """One step towards a prompt `excess_tokens` shorter; None when nothing is left to cut."""
    turn = _current_turn(messages)
    if turn > 0:
        # Drop a third of the history at once, so the next turns keep a stable prefix.
        drop = max(1, turn // 3)
        return drop_oldest(messages, drop), f"dropped {drop} old messages"
    with_context = [i for i, m in enumerate(messages) if m.context]
    if with_context:
        i = with_context[0]
        return ([*messages[:i], replace(messages[i], context=""), *messages[i + 1:]],
                "dropped the knowledge-base passages")
    longest = max(range(len(messages)), key=lambda i: len(messages[i].text), default=None)
    if longest is None or len(messages[longest].text) < 200:
        return None
    text = messages[longest].text
    keep = max(100, len(text) - excess_tokens * 4 - 100)   # ~4 characters a token, and margin
    keep = min(keep, len(text) * 3 // 4)
    return ([*messages[:longest], replace(messages[longest], text=text[:keep] + " [...]"),
             *messages[longest + 1:]], f"shortened a message to {keep} characters")


def drop_oldest(messages: list[ChatMessage], count: int) -> list[ChatMessage]:
    """Drop `count` messages from the front, then up to the next user message."""
    rest = messages[count:]
    while len(rest) > 1 and rest[0].role != "user":
        rest = rest[1:]
    return rest
