"""Tools: one typed definition serves both models, and always runs in the conversation's context.

A `Tool` has a name, a description, JSON-schema parameters and an async handler
`handler(ctx, args) -> str`. The schema is rendered into Gemini's FunctionDeclarations
(gemini.py) and into the local model's prompt and grammar (local.py). The handler gets a
`ToolContext` built by the engine for this conversation: the customer's number, the channel,
the call; a model can only fill in `args`, so it cannot choose whom to message or where to
transfer. The engine validates the arguments, applies the timeout, turns errors into a
sentence the model can use, and plays "one moment" on a call when a tool is slow.

Built in: transfer_to_human, end_call (spoken channels only), update_customer, and kb_search
(when a knowledge base is present). The business tools register the same way.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Iterable, Mapping

from ..config import Settings
from ..llm.base import ToolSpec
from ..hours import within_hours as within_hours   # re-exported: the one hours reader
from ..transfer import TransferDecision, decide_transfer
from .events import Action
from .memory import GENDERS, LANGUAGE, Customer, Memory
from .names import InvalidName, clean_name

log = logging.getLogger(__name__)

VOICE_CHANNELS = frozenset({"call", "gather"})


class ToolError(Exception):
    """A failure whose message is meant for the model (it may repeat it to the customer)."""


@dataclass
class ToolContext:
    """The conversation a tool runs for. Built by the engine, never by the model."""

    phone: str                      # E.164 of the customer
    channel: str                    # call, gather, whatsapp, sms, chat
    call_id: int | None
    customer: Customer
    settings: Settings
    memory: Memory
    kb: Any = None
    language: str | None = None     # the language of the current turn, if known
    attestation: str = ""           # a call's STIR/SHAKEN verdict (calls.attestation)
    verified: bool = False          # the caller read back a one-time code (actions/stepup.py)
    message_sid: str | None = None  # the inbound message answered: its tools run once
    actions: list[Action] = field(default_factory=list)

    @property
    def voice(self) -> bool:
        """A phone call, streamed or <Gather>: spoken style, call tools."""
        return self.channel in VOICE_CHANNELS

    @property
    def live_audio(self) -> bool:
        """A streamed call, where a "one moment" can be played while the answer is delayed."""
        return self.channel == "call"

    def request(self, action: Action) -> None:
        """Ask the channel to act after the reply (transfer, hang up, take a message)."""
        self.actions.append(action)


Handler = Callable[[ToolContext, dict[str, Any]], Awaitable[str]]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: Mapping[str, Any]     # a JSON schema of type object
    handler: Handler
    slow: bool = False                # say "one moment" before running it on a call
    timeout_s: float = 8.0
    channels: frozenset[str] | None = None   # None: every channel

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.parameters)

    def available(self, channel: str) -> bool:
        return self.channels is None or channel in self.channels


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]{0,63}", tool.name):
            raise ValueError(f"tool name {tool.name!r} is not a valid function name")
        if tool.parameters.get("type") != "object":
            raise ValueError(f"tool {tool.name}: parameters must be a JSON schema object")
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    def for_channel(self, channel: str) -> tuple[Tool, ...]:
        return tuple(t for t in self._tools.values() if t.available(channel))

    def specs(self, channel: str) -> tuple[ToolSpec, ...]:
        return tuple(t.spec for t in self.for_channel(channel))

    @classmethod
    def default(cls) -> "ToolRegistry":
        """The built-in tools (kb_search is added by the Engine when it has a knowledge base)."""
        return cls([TRANSFER, END_CALL, UPDATE_CUSTOMER])


# -- arguments -------------------------------------------------------------------------------

def check_args(tool: Tool, args: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments the schema allows (unknown keys dropped); ToolError when unusable."""
    props: Mapping[str, Any] = tool.parameters.get("properties", {})
    out: dict[str, Any] = {}
    for key, value in args.items():
        schema = props.get(key)
        if schema is None:
            continue
        kind = schema.get("type")
        if kind == "string":
            if not isinstance(value, str):
                value = str(value)
            value = value.strip()
        elif kind == "integer" and not (isinstance(value, int) and not isinstance(value, bool)):
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise ToolError(f"{key} must be a whole number") from None
        elif kind == "number" and not isinstance(value, (int, float)):
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ToolError(f"{key} must be a number") from None
        elif kind == "boolean" and not isinstance(value, bool):
            value = str(value).lower() in ("true", "1", "yes")
        if "enum" in schema and value not in schema["enum"]:
            raise ToolError(f"{key} must be one of {', '.join(map(str, schema['enum']))}")
        out[key] = value
    missing = [k for k in tool.parameters.get("required", ()) if out.get(k) in (None, "")]
    if missing:
        raise ToolError(f"missing {', '.join(missing)}")
    return out


# -- transfer hours --------------------------------------------------------------------------

# -- the built-in tools ----------------------------------------------------------------------

TransferRecord = Callable[["ToolContext", TransferDecision, str, datetime], Awaitable[None]]


def transfer_tool(record: TransferRecord | None = None,
                  now: Callable[[], datetime] | None = None) -> Tool:
    """The one transfer_to_human tool: the allow-listed decision of appliance/transfer.py;
    `record` (the business actions) keeps what was asked and decided."""
    async def handler(ctx: ToolContext, args: dict[str, Any]) -> str:
        at = now() if now is not None else datetime.now(timezone.utc)
        decision = decide_transfer(ctx.settings, at)
        reason = str(args.get("reason", ""))[:200]
        if decision.allowed:
            ctx.request(Action("transfer", target=decision.target, reason=reason))
        if record is not None:
            await record(ctx, decision, reason, at)
        return decision.message

    return Tool(
        name="transfer_to_human",
        description=("Transfer the phone call to a person of the business, when the caller "
                     "asks for a person or you cannot help. The number is fixed by the "
                     "business; outside its hours you will be told to take a message."),
        parameters={"type": "object", "properties": {
            "reason": {"type": "string", "description": "Why, in a few words."}}},
        handler=handler, channels=VOICE_CHANNELS, timeout_s=3.0)


async def _end_call(ctx: ToolContext, args: dict[str, Any]) -> str:
    ctx.request(Action("hangup", reason=args.get("reason", "")))
    return "The call will end after your next sentence. Say a short, friendly goodbye."


async def _update_customer(ctx: ToolContext, args: dict[str, Any]) -> str:
    values: dict[str, Any] = {}
    if args.get("name"):
        try:
            values["name"] = clean_name(str(args["name"]))
        except InvalidName as exc:
            raise ToolError(str(exc)) from None
    if args.get("language"):
        language = args["language"].lower()[:3]
        if not LANGUAGE.match(language):
            raise ToolError("language must be a language code like en or he")
        values["language"] = language
    if args.get("gender"):
        values["gender"] = args["gender"]
    if not values:
        raise ToolError("give at least one of name, language, gender")
    ctx.customer = await ctx.memory.update_customer(ctx.customer.id, **values)
    return "Saved: " + ", ".join(f"{k} = {v}" for k, v in values.items()) + "."


async def _kb_search(ctx: ToolContext, args: dict[str, Any]) -> str:
    if ctx.kb is None:
        return "There is no knowledge base."
    hits = await asyncio.to_thread(ctx.kb.search, args["query"], ctx.settings.kb.top_k)
    if not hits:
        return "Nothing in the knowledge base matches. Say you do not know and offer help."
    return format_passages(hits)


def format_passages(hits: Iterable[Any], max_chars: int = 600, total_chars: int = 2400) -> str:
    """Passages for the model: appliance.kb's own `for_prompt()` form when the hit has it.
    Each is cut at `max_chars`, and passages stop at `total_chars` (every character costs the
    local model prefill time on every turn)."""
    out: list[str] = []
    used = 0
    for hit in hits:
        if hasattr(hit, "for_prompt"):
            text = hit.for_prompt()
        else:
            text = f"[{getattr(hit, 'source', '')}]\n{hit.text}"
        limit = min(max_chars, total_chars - used)
        if limit < 80 and out:
            break
        if len(text) > limit:
            text = text[:limit].rsplit(" ", 1)[0] + " ..."
        out.append(text)
        used += len(text)
    return "\n\n".join(out)


TRANSFER = transfer_tool()

END_CALL = Tool(
    name="end_call",
    description="End the phone call after saying goodbye, when the caller is done.",
    parameters={"type": "object", "properties": {
        "reason": {"type": "string", "description": "Why, in a few words."}}},
    handler=_end_call, channels=VOICE_CHANNELS, timeout_s=3.0)

UPDATE_CUSTOMER = Tool(
    name="update_customer",
    description=("Save what the customer tells you about themselves: their name, the language "
                 "they prefer, and (for Hebrew) whether to address them in the feminine (f) or "
                 "masculine (m) form. Only for the customer you are talking to."),
    parameters={"type": "object", "properties": {
        "name": {"type": "string", "description": "The customer's name."},
        "language": {"type": "string", "description": "ISO 639-1 code, e.g. en, he, ru."},
        "gender": {"type": "string", "enum": list(GENDERS),
                   "description": "Grammatical gender to address them with."}}},
    handler=_update_customer, timeout_s=5.0)

KB_SEARCH = Tool(
    name="kb_search",
    description=("Search the business's documents (prices, services, policies, opening hours) "
                 "for an answer. Use the customer's words as the query."),
    parameters={"type": "object", "required": ["query"], "properties": {
        "query": {"type": "string", "description": "What to look for."}}},
    handler=_kb_search, timeout_s=5.0)

