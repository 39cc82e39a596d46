"""The conversation engine: one per process, used by every channel.

`Engine.open(phone, channel)` reads the customer record and the recent history (any channel)
and returns a `Conversation` (conversation.py); `Conversation.reply(text)` stores the user
turn, builds the context, streams the reply through the model router (Gemini with failover to
the local model), runs tools in the conversation's own context (tool_calls.py), and stores the
assistant turn with the model that produced it.

Timing on a streamed call (channel "call"): if nothing can be said within `filler_after_ms` of
the caller's turn (Gemini slow or failing over, a cold local prompt), a Filler ("one moment")
is yielded once; a tool that takes longer than `tool_moment_ms` (or is marked slow) gets one
too. Other channels never get fillers.

The local model's KV cache follows the conversation: after each reply (and at open) the
conversation so far is evaluated on the local model in the background, yielding to any real
generation, so a turn that fails over pays only for its new message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from ..llm.base import ChatRequest
from ..llm.failover import ChatModels, ModelRouter, Prefer
from ..logs import mask_phone
from ..telephony.caller_id import classify
from ..store.db import Database
from .conversation import Conversation
from .history import history_messages
from .memory import Customer, Memory
from .privacy import Withheld, confirmed
from .prompt import local_static_prompt, static_prompt
from .tools import KB_SEARCH, ToolContext, ToolRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineOptions:
    history_turns: int = 24        # earlier user/assistant messages given to the model
    max_tool_rounds: int = 4       # model rounds per reply; the last one may not call tools
    filler_after_ms: int = 1000    # on a call: "one moment" if nothing to say by then
    tool_moment_ms: int = 700      # on a call: "one moment" when a tool takes longer
    filler_gap_ms: int = 3000      # never two fillers closer than this
    kb_passages: bool = True       # attach knowledge-base passages to every user turn ...
    kb_passage_chars: int = 1200   # ... at most this much text (~300 tokens) for Gemini,
    kb_passage_chars_local: int = 360  # ... and less when the local model answers (each
                                       # token of it is prefilled on every turn, ~6 ms/token
                                       # on 2 cores for 0.5B, ~9 ms/token for 1.5B):
    kb_passages_local: int = 2         # [i17] the best two passages, the first cut at
    kb_passage_each_local: int = 240   # [i17] this many characters, the second at the rest
    prefill_local: bool = True     # keep the local model's KV cache on the latest conversation


class Engine:
    """Built once at start-up with its parts injected; `await start()` warms the local model."""

    def __init__(self, settings: Settings, db: Database, models: ChatModels,
                 tools: ToolRegistry, kb: Any = None,
                 options: EngineOptions = EngineOptions()) -> None:
        self.settings = settings
        self.memory = Memory(db)
        self.models = models
        self.router = ModelRouter(models, settings.gemini)
        self.tools = tools
        self.kb = kb
        if kb is not None and "kb_search" not in tools:
            tools.register(KB_SEARCH)
        self.options = options
        self.static_prompt = static_prompt(settings.business)
        self.local_prompt = local_static_prompt(settings.business)   # [i17] the local mode's
        self._warm: asyncio.Task[None] | None = None
        # the CRM lookup (actions/crm.py), the same for every channel; set by appliance.compose
        self.enrich: Callable[[Customer], Awaitable[Customer]] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._stores: set[asyncio.Future[Any]] = set()   # history writes: awaited at close

    async def start(self) -> None:
        """Evaluate the static prompt on the local model now (else on the first open())."""
        self._ensure_warm()
        if self._warm is not None:
            await asyncio.shield(self._warm)

    def _ensure_warm(self) -> None:
        if self._warm is None and self.models.local is not None:
            self._warm = asyncio.get_running_loop().create_task(self._warm_up(),
                                                                name="local-llm-warm")

    async def _warm_up(self) -> None:
        try:
            await self.models.local.warm(self.local_prompt, self.tools.specs("call"))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a failed warm-up only costs the first turn time
            log.exception("warming the local model failed")

    async def open(self, phone: str, channel: str, call_id: int | None = None, *,
                   model: Prefer = "auto", message_sid: str | None = None) -> Conversation:
        """A conversation with the customer behind `phone` ("+972...", "whatsapp:+972...").

        `model` forces one model ("gemini" or "local", for `appliance chat`); "auto" fails over.
        """
        self._ensure_warm()
        caller = classify(phone)
        if caller.anonymous:        # withheld number: a throw-away customer for this call only
            customer = await self.memory.anonymous_customer(call_id)
        else:
            customer = await self.memory.customer(caller.number or phone)
            if self.enrich is not None:
                customer = await self.enrich(customer)
        turns = await self.memory.recent_turns(customer.id, self.options.history_turns)
        attestation, verified = await self.memory.call_identity(call_id)
        context = ToolContext(phone=customer.phone, channel=channel, call_id=call_id,
                              customer=customer, settings=self.settings, memory=self.memory,
                              kb=self.kb, attestation=attestation, verified=verified,
                              message_sid=message_sid)
        log.info("conversation with %s on %s (customer %d, %d earlier messages, llm mode %s)",
                 mask_phone(customer.phone), channel, customer.id, len(turns), self.router.mode)
        history = history_messages(turns)
        withheld = None
        if not customer.anonymous and not confirmed(context, self.trust_attested()):
            withheld, history = Withheld(history, bool(turns)), []   # conversation/privacy.py
        conversation = Conversation(self, context, history, model, withheld)
        self.prefill(conversation.request_so_far())
        return conversation

    def trust_attested(self) -> bool:
        return self.settings.security.trust_attested_callers

    def prefill(self, request: ChatRequest, whole: bool = False) -> None:
        """In the background, put this conversation in the local model's KV cache, so a turn
        that fails over pays only for its new message (the model yields to real turns).
        `whole`: the turn's full prompt, while Gemini answers it."""
        local = self.models.local
        # [i17] offline, and for the conversations in progress once Gemini failed over
        wanted = self.options.prefill_local or self.router.mode != "cloud"
        if not wanted or local is None or not hasattr(local, "prefill"):
            return
        task = asyncio.get_running_loop().create_task(self._prefill(local, request, whole),
                                                      name="local-llm-prefill")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def idle(self) -> None:
        """Wait until the background work on the local model (warm-up, prefill) is done."""
        tasks = [t for t in (self._warm, *self._background) if t is not None and not t.done()]
        if tasks:
            await asyncio.wait(tasks)

    async def _prefill(self, local: Any, request: ChatRequest, whole: bool) -> None:
        if self._warm is not None:
            await asyncio.wait({self._warm})
        try:
            stats = await local.prefill(request, whole)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - only an optimisation
            log.exception("prefilling the local model failed")
            return
        if stats is not None:
            log.debug("local model prefilled: %d tokens (%d cached) in %.0f ms",
                      stats.prompt_tokens, stats.cached_tokens, stats.total_ms)

    def keep(self, write: Awaitable[object]) -> None:
        """Run a history write on its own (an interrupted reply's tool outcome); a reference
        is held, so it is not collected, and close() waits for it."""
        store = asyncio.ensure_future(write)
        self._stores.add(store)
        store.add_done_callback(self._stores.discard)

    def status(self) -> dict[str, Any]:
        """For /healthz: {"mode": "cloud"|"local"|"offline", "gemini": {...}, "local": {...}}."""
        return self.router.status()

    async def close(self) -> None:
        """Stop the probe and the warm-up; close the Gemini client (the local model is closed
        by whoever loaded it)."""
        await self.router.aclose()
        pending = [t for t in (self._warm, *self._background) if t is not None and not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        if self._stores:
            await asyncio.wait(list(self._stores), timeout=5)
        if self.models.gemini is not None and hasattr(self.models.gemini, "aclose"):
            await self.models.gemini.aclose()
