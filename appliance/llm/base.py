"""What every chat model speaks: messages in, a stream of text and tool calls out.

Both models (Gemini in gemini.py, the local llama.cpp model in local.py) take one `ChatRequest`
and return an async iterator of `StreamEvent`s. A failure raises `ModelError` with a short
machine code and whether any output had already been produced (`started`), which is what the
failover policy (failover.py) needs to decide between "re-run the turn" and "finish it".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Literal, Mapping, Protocol, Union, runtime_checkable

Role = Literal["user", "assistant", "tool"]
ToolChoice = Literal["auto", "required", "none"]


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the models see it: name, description, JSON-schema parameters (an object)."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True)
class ToolCall:
    """A tool call requested by a model.

    `raw` is the provider's own representation (for Gemini the whole `Part`, which carries the
    thought signature that must be sent back unchanged); None for calls of the local model.
    """

    name: str
    args: Mapping[str, Any]
    id: str = ""
    raw: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ChatMessage:
    """One message of the conversation as given to a model.

    user:      `text` is what the customer said; `context` is per-turn material (knowledge-base
               passages, the language heard) rendered before it and not stored in the history;
               `context_local` the local model's shorter version of it (fewer, shorter
               passages: every token is prefill time on 2 cores); empty: `context`.
    assistant: `text` is what the bot said (for an interrupted reply: what the caller heard);
               `tool_calls` the calls it made in this message.
    tool:      `text` is the tool's result sentence, `call` the call it answers.
    """

    role: Role
    text: str = ""
    context: str = ""
    context_local: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    call: ToolCall | None = None
    interrupted: bool = False


@dataclass(frozen=True)
class ChatRequest:
    """Everything one model round needs.

    `system_static` is identical for every conversation of this process (persona, business
    facts, rules, tool rules); it comes first so the local model's KV cache of it is reused.
    `system_dynamic` follows it (channel style, customer record, date).
    `prefix` asks the model to continue an assistant reply that already starts with this text
    (the local model finishing a Gemini stream that broke); only the continuation is streamed.
    `voice` marks a spoken channel (Gemini: thinking as configured for voice).
    `system_local` is the short static prompt the local model uses instead of system_static
    (llm/local_prompt.py; empty: system_static). `session` names the conversation, so the
    local model can keep its KV cache per conversation (llm/kvcache.py); "" for none.
    """

    system_static: str
    system_dynamic: str
    messages: tuple[ChatMessage, ...]
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = "auto"
    prefix: str = ""
    voice: bool = False
    max_tokens: int | None = None
    system_local: str = ""
    session: str = ""

    @property
    def system(self) -> str:
        return f"{self.system_static}\n\n{self.system_dynamic}".strip()


@dataclass(frozen=True)
class TextChunk:
    """Text of the reply as it streams (a few characters to a few words)."""

    text: str


@dataclass(frozen=True)
class ToolCallChunk:
    """A complete tool call. A model round that asked for tools ends after its calls."""

    call: ToolCall


@dataclass(frozen=True)
class StreamDone:
    """The model finished the round normally. `finish_reason` is the provider's word for it."""

    finish_reason: str = "stop"
    prompt_tokens: int = 0
    cached_tokens: int = 0       # local model: prompt tokens whose KV cache was reused
    output_tokens: int = 0


StreamEvent = Union[TextChunk, ToolCallChunk, StreamDone]


class ModelError(Exception):
    """A model could not answer.

    code: connect, http_<status>, first_token_timeout, stall_timeout, total_timeout, broken,
          empty, blocked, bad_response, not_loaded, local_error, no_key.
    started: True when text or a tool call had already been produced in this round.
    outage: True when the model should be skipped for a while (network, server, quota, key);
            False for a per-request refusal (an empty or blocked answer).
    """

    def __init__(self, code: str, message: str, *, started: bool = False,
                 outage: bool = True) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.started = started
        self.outage = outage


@runtime_checkable
class ChatModel(Protocol):
    """A model that streams one round of a conversation."""

    @property
    def name(self) -> str:
        """What is stored per turn: "gemini:<model>" or "local:<file name>"."""
        ...

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Stream the round. Raises ModelError; cancellation stops the model promptly."""
        ...
