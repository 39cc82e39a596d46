"""The local model's own prompt: short, measured in tokens, and always fitting the context.

On 2 cores every prompt token costs prefill time (Qwen2.5-0.5B ~3 ms, 1.5B ~10 ms), and the
cloud prompt (persona, facts, long rules, every tool's full JSON schema) measured ~1,700
tokens. The local mode therefore has:

- `conversation.prompt.local_static_prompt(business)`: who the bot is, the facts (capped),
  five short rules. A few hundred tokens with the tool list; identical for every
  conversation, so its KV cache is computed once at start-up and shared.
- `compact_tools(tools)`: one line per tool, `name(arg, arg?): what it does`, and the call
  format. The argument types and enums need not be in the prompt: once the model opens
  `<tool_call>`, a GBNF grammar built from the full schemas makes the call valid (local.py).
- `fit_messages(...)`: the messages of one round cut to a token budget: the oldest history
  first (a third at a time, so the kept part stays a stable prefix for the KV cache), then
  the knowledge-base passages of the current message, then the current message's own text
  (its end is kept). `PromptTooLong` when even the static part does not fit.
- `static_prompt_check(tokens, context_tokens)`: the sentence `appliance doctor` prints when
  the static prompt uses more than half the context.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

from .base import ChatMessage, ToolSpec

PASSAGE_MIN_CHARS = 120      # shorter than this, a passage is dropped rather than cut


class PromptTooLong(ValueError):
    """Even the static prompt and the newest message do not fit the context."""


def compact_tools(tools: Sequence[ToolSpec]) -> str:
    """One line per tool and the call format (the grammar enforces the arguments)."""
    if not tools:
        return ""
    lines = ["Tools (call one only when needed, as <tool_call>{\"name\": ..., \"arguments\": "
             "{...}}</tool_call>):"]
    for tool in tools:
        lines.append(f"- {tool.name}({_arguments(tool)}): {_first_sentence(tool.description)}")
    return "\n".join(lines)


def _arguments(tool: ToolSpec) -> str:
    properties = dict(tool.parameters.get("properties") or {})
    required = set(tool.parameters.get("required") or ())
    return ", ".join(name if name in required else f"{name}?" for name in properties)


def _first_sentence(text: str, limit: int = 70) -> str:
    """The description's first clause: what the tool does, not when (the rules say when)."""
    text = " ".join(text.split())
    ends = [i for i in (text.find(mark) for mark in (". ", ", ", ": ", "; ", " (")) if i > 0]
    return _cap(text[:min(ends)] if ends else text.rstrip("."), limit)


def _cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " ..."


def local_messages(messages: Sequence[ChatMessage]) -> tuple[ChatMessage, ...]:
    """The messages with each one's `context_local` (the shorter passages) as its context."""
    return tuple(replace(m, context=m.context_local, context_local="") if m.context_local
                 else m for m in messages)


def static_part(system_static: str, tools: Sequence[ToolSpec]) -> str:
    """The persona and rules, then the tool list: the start every prompt shares."""
    block = compact_tools(tools)
    return f"{system_static}\n\n{block}" if block else system_static


# -- fitting ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fitted:
    """What `fit_messages` kept and what it had to cut (for the log)."""

    messages: tuple[ChatMessage, ...]
    tokens: int
    dropped_messages: int = 0
    cut_passages: bool = False
    cut_text: bool = False


Count = Callable[[Sequence[ChatMessage]], int]   # tokens of the whole prompt with these


def fit_messages(messages: Sequence[ChatMessage], budget: int, count: Count) -> Fitted:
    """Cut `messages` until `count(messages) <= budget`: history, then passages, then text.

    The current round is everything from the last user message on (that message, then the
    tool calls and results of this reply); it is never dropped, only shortened.
    """
    msgs = list(messages)
    tokens = count(msgs)
    if tokens <= budget:
        return Fitted(tuple(msgs), tokens)
    if not msgs:
        raise PromptTooLong(f"the static prompt alone needs {tokens} tokens; {budget} are "
                            f"available")
    current = _current_start(msgs)
    dropped = 0
    while tokens > budget and current > 0:
        drop = max(1, current // 3)
        kept = _drop_oldest(msgs[:current], drop)
        dropped += current - len(kept)
        msgs = kept + msgs[current:]
        current = len(kept)
        tokens = count(msgs)
    cut_passages = cut_text = False
    if tokens > budget and msgs[current].context:
        msgs[current], tokens = _shrink(msgs[current], "context", budget, count, msgs,
                                        current)
        cut_passages = True
    if tokens > budget and msgs[current].text:
        msgs[current], tokens = _shrink(msgs[current], "text", budget, count, msgs,
                                        current)
        cut_text = True
    if tokens > budget:
        raise PromptTooLong(f"the static prompt and the current message need {tokens} tokens; "
                            f"{budget} are available")
    return Fitted(tuple(msgs), tokens, dropped, cut_passages, cut_text)


def _current_start(msgs: list[ChatMessage]) -> int:
    for i in range(len(msgs) - 1, -1, -1):
        if msgs[i].role == "user":
            return i
    return 0


def _drop_oldest(messages: list[ChatMessage], count: int) -> list[ChatMessage]:
    """Drop `count` messages from the front, then up to the next user message."""
    rest = messages[count:]
    while rest and rest[0].role != "user":
        rest = rest[1:]
    return rest


def _shrink(message: ChatMessage, field: str, budget: int, count: Count,
            msgs: list[ChatMessage], index: int) -> tuple[ChatMessage, int]:
    """Shorten one field of the current message (passages from their end, the customer's
    text from its start) to the longest that fits: a binary search over its length, ~12
    tokenizations. Empty when nothing worth keeping fits."""
    value = getattr(message, field)

    def cut(keep: int) -> str:
        if field == "context":
            return value[:keep].rsplit(" ", 1)[0] + " ..." if keep >= PASSAGE_MIN_CHARS else ""
        return "... " + value[len(value) - keep:].split(" ", 1)[-1] if keep else ""

    def tokens_with(keep: int) -> int:
        msgs[index] = replace(message, **{field: cut(keep)})
        return count(msgs)

    low, high = 0, len(value)          # the answer lies in [low, high); len(value) is over
    while high - low > 8:
        middle = (low + high) // 2
        if tokens_with(middle) <= budget:
            low = middle
        else:
            high = middle
    tokens = tokens_with(low)
    return msgs[index], tokens


# -- doctor ----------------------------------------------------------------------------------

def static_prompt_check(static_tokens: int, context_tokens: int) -> str | None:
    """None when the static prompt leaves at least half the context to the conversation;
    else what `appliance doctor` should print."""
    if static_tokens * 2 <= context_tokens:
        return None
    return (f"the local model's static prompt (persona, facts, rules, tools) takes "
            f"{static_tokens} of [local_llm] context_tokens = {context_tokens} tokens, more "
            f"than half: conversations will lose their history early and every start-up "
            f"warms it for longer. Shorten [business] persona/facts (move details into the "
            f"knowledge base) or raise context_tokens.")
