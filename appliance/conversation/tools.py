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
from datetime import datetime
from typing import Any, Awaitable, Callable, Iterable, Mapping
from zoneinfo import ZoneInfo

from ..config import Settings
from ..llm.base import ToolSpec
from .events import Action
from .memory import GENDERS, LANGUAGE, Customer, Memory

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

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def within_hours(spec: str, now: datetime) -> bool:
    """Is `now` inside e.g. "sun-thu 09:00-18:00; fri 09:00-13:00"? Empty means always."""
    if not spec.strip():
        return True
    day = _DAYS[now.weekday()]
    minutes = now.hour * 60 + now.minute
    for item in spec.split(";"):
        item = item.strip().lower()
        if not item:
            continue
        match = re.fullmatch(r"([a-z]{3})(?:-([a-z]{3}))?\s+(\d\d):(\d\d)-(\d\d):(\d\d)", item)
        if not match or match.group(1) not in _DAYS or (match.group(2) or "mon") not in _DAYS:
            log.warning("[business] transfer_hours: cannot read %r; transfers allowed", item)
            return True
        first = _DAYS.index(match.group(1))
        last = _DAYS.index(match.group(2) or match.group(1))
        days = {_DAYS[(first + i) % 7] for i in range((last - first) % 7 + 1)}
        start = int(match.group(3)) * 60 + int(match.group(4))
        end = int(match.group(5)) * 60 + int(match.group(6))
        if day in days and start <= minutes < end:
            return True
    return False


# -- the built-in tools ----------------------------------------------------------------------

async def _transfer(ctx: ToolContext, args: dict[str, Any]) -> str:
    target = ctx.settings.twilio.operator_number
    if not target:
        return ("No person can take calls here. Offer to take a message: ask for the "
                "caller's name and what it is about.")
    business = ctx.settings.business
    now = datetime.now(ZoneInfo(business.timezone))
    if not within_hours(business.transfer_hours, now):
        return (f"Nobody can take the call now (people answer {business.transfer_hours}; it is "
                f"{now:%a %H:%M}). Say so and offer to take a message.")
    ctx.request(Action("transfer", target=target, reason=args.get("reason", "")))
    return ("The call will be transferred to a person right after your next sentence. "
            "Tell the caller in one short sentence that you are connecting them.")


async def _end_call(ctx: ToolContext, args: dict[str, Any]) -> str:
    ctx.request(Action("hangup", reason=args.get("reason", "")))
    return "The call will end after your next sentence. Say a short, friendly goodbye."


async def _update_customer(ctx: ToolContext, args: dict[str, Any]) -> str:
    values: dict[str, Any] = {}
    if args.get("name"):
        values["name"] = args["name"][:80]
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


TRANSFER = Tool(
    name="transfer_to_human",
    description=("Transfer the phone call to a person of the business. Use it when the caller "
                 "asks for a person or you cannot help. The number is fixed by the business."),
    parameters={"type": "object", "properties": {
        "reason": {"type": "string", "description": "Why, in a few words."}}},
    handler=_transfer, channels=VOICE_CHANNELS, timeout_s=3.0)

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

