"""The conversation engine: one per process, used by every channel.

`Engine.open(phone, channel)` reads the customer record and the recent history (any channel)
and returns a `Conversation`; `Conversation.reply(text)` stores the user turn, builds the
context, streams the reply through the model router (Gemini with failover to the local
model), runs tools in the conversation's own context, and stores the assistant turn with the
model that produced it.

Timing on a streamed call (channel "call"): if nothing can be said within `filler_after_ms` of
the caller's turn (Gemini slow or failing over, a cold local prompt), a Filler ("one moment")
is yielded once; a tool that takes longer than `tool_moment_ms` (or is marked slow) gets one
too. Other channels never get fillers.

The local model's KV cache follows the conversation: after each reply (and at open) the
conversation so far is evaluated on the local model in the background, yielding to any real
generation, so a turn that fails over pays only for its new message.

Cancellation (barge-in): cancelling the consumer cancels the model work at once; the assistant
turn is still stored with the text generated so far (flagged interrupted) before the
CancelledError propagates. `mark_heard()` then records what the caller actually heard, which is
what the model sees next turn.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field, replace
from collections.abc import Awaitable, Callable
from typing import Any, AsyncIterator

from ..config import Settings
from ..llm.base import ChatMessage, ChatRequest, ModelError, TextChunk, ToolCall, ToolCallChunk
from ..llm.failover import Answering, ChatModels, ModelRouter, Prefer
from ..logs import mask_phone
from ..telephony.caller_id import classify
from ..store.db import Database
from .effects import effect_key, run_once
from .events import ActionRequested, Filler, ReplyDone, ReplyEvent, TextDelta
from .gate import ReleaseGate
from .memory import LANGUAGE, Customer, Memory, Turn
from .prompt import (apology, dynamic_prompt, filler, local_static_prompt, static_prompt,
                     turn_context)
from .tools import KB_SEARCH, ToolContext, ToolError, ToolRegistry, check_args

log = logging.getLogger(__name__)

_END = object()
HELD_POLL_S = 0.05     # a held (speculative) reply checks this often whether it was released
INTERRUPTED_MARK = " —"


@dataclass(frozen=True)
class EngineOptions:
    history_turns: int = 24        # earlier user/assistant messages given to the model
    max_tool_rounds: int = 4       # model rounds per reply; the last one may not call tools
    filler_after_ms: int = 1000    # on a call: "one moment" if nothing to say by then
    tool_moment_ms: int = 700      # on a call: "one moment" when a tool takes longer
    filler_gap_ms: int = 3000      # never two fillers closer than this
    kb_passages: bool = True       # attach knowledge-base passages to every user turn ...
    kb_passage_chars: int = 1200   # ... at most this much text (~300 tokens) for Gemini,
    kb_passage_chars_local: int = 520  # ... and less when the local model answers (each
                                       # token of it is prefilled on every turn, ~4 ms/token
                                       # on 2 cores for 0.5B, ~12 ms/token for 1.5B):
    kb_passages_local: int = 2         # [i17] the best two passages, the first cut at
    kb_passage_each_local: int = 300   # [i17] this many characters, the second at the rest
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
                   model: Prefer = "auto", message_sid: str | None = None) -> "Conversation":
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
        conversation = Conversation(self, context, history_messages(turns), model)
        self.prefill(conversation.request_so_far())
        return conversation

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


def history_messages(turns: list[Turn]) -> list[ChatMessage]:
    """Stored turns as the model sees them: heard text only, interruptions marked."""
    out: list[ChatMessage] = []
    for t in turns:
        if t.role == "user":
            out.append(ChatMessage("user", t.text))
        elif t.role == "assistant":
            text = _heard_text(t.text, t.interrupted)
            if text:
                out.append(ChatMessage("assistant", text, interrupted=t.interrupted))
    while out and out[0].role != "user":
        out.pop(0)
    return out


def _heard_text(text: str, interrupted: bool) -> str:
    text = text.strip()
    return text + INTERRUPTED_MARK if interrupted and text else text


@dataclass
class _Turn:
    """What one reply produced so far (shared by the producer task and the consumer)."""

    started: float
    language: str | None
    user_text: str = ""
    gate: ReleaseGate | None = None   # a speculative reply: store and act only once released
    user_stored: asyncio.Future[None] | None = None
    user_message: ChatMessage | None = None      # the caller's words as put in the history
    text: str = ""                 # generated
    yielded: str = ""              # handed to the channel
    models: list[str] = field(default_factory=list)
    first_text_at: float | None = None
    spoken: bool = False           # a TextDelta or Filler reached the channel
    last_filler_at: float | None = None
    actions: int = 0
    stored: bool = False

    def add_model(self, name: str | None) -> None:
        if name and name not in self.models:
            self.models.append(name)


class Conversation:
    """One conversation with one customer on one channel. Create with `Engine.open()`."""

    def __init__(self, engine: Engine, context: ToolContext, history: list[ChatMessage],
                 prefer: Prefer = "auto") -> None:
        self._engine = engine
        self.context = context
        self._history = history
        self._prefer = prefer
        self._dynamic_key: Customer | None = None
        self._dynamic = ""
        self._last_reply: tuple[int, ChatMessage] | None = None
        self._pending: asyncio.Future[Any] | None = None

    @property
    def customer(self) -> Customer:
        return self.context.customer

    @property
    def history(self) -> tuple[ChatMessage, ...]:
        """What the model will see of the past (for tests and `appliance chat`)."""
        return tuple(self._history)

    def _system_dynamic(self) -> str:
        if self._dynamic_key != self.customer:  # rebuilt only when the record changes
            self._dynamic_key = self.customer
            self._dynamic = dynamic_prompt(self.context.channel, self.customer,
                                           self._engine.settings.business.timezone)
        return self._dynamic

    def request_so_far(self) -> ChatRequest:
        """The conversation as the next turn's prompt will start (no new message yet)."""
        return ChatRequest(system_static=self._engine.static_prompt,
                           system_dynamic=self._system_dynamic(),
                           messages=tuple(self._history),
                           tools=self._engine.tools.specs(self.context.channel),
                           voice=self.context.voice, system_local=self._engine.local_prompt,
                           session=self.session)

    @property
    def session(self) -> str:
        """[i17] The key of this conversation's KV cache in the local model."""
        ctx = self.context
        return f"{ctx.channel}:{ctx.customer.id}:{ctx.call_id or ''}"

    def _language(self, turn: _Turn | None = None) -> str:
        return ((turn.language if turn else None) or self.customer.language
                or self._engine.settings.business.language)

    async def _settle(self) -> None:
        """Wait for the store of an interrupted reply, so turns stay in order."""
        if self._pending is not None:
            await asyncio.shield(self._pending)
            self._pending = None

    # -- the reply ------------------------------------------------------------------------

    async def reply(self, user_text: str, language: str | None = None,
                    gate: ReleaseGate | None = None) -> AsyncIterator[ReplyEvent]:
        """Stream the answer to `user_text`. With a `gate` (a speculative reply, see gate.py)
        nothing is stored and no tool runs until the gate is released."""
        engine, ctx = self._engine, self.context
        loop = asyncio.get_running_loop()
        turn = _Turn(started=loop.time(), language=language, user_text=user_text, gate=gate)
        await self._settle()
        if gate is None:
            await self._store_user(turn)
        ctx.language = language
        passages = await self._passages(user_text)
        local_turn = self._prefer == "local" or engine.router.mode != "cloud"
        options = engine.options
        user = self._user_message(user_text, passages, language, local_turn)
        base = [m for m in self._history if m is not turn.user_message] + [user]
        queue: asyncio.Queue[Any] = asyncio.Queue()
        producer = asyncio.create_task(self._produce(base, queue, turn), name="reply")
        getter: asyncio.Future[Any] | None = None
        try:
            while True:
                if getter is None:
                    getter = asyncio.ensure_future(queue.get())
                timeout = None
                holding = gate is not None and not gate.released
                if holding:
                    timeout = HELD_POLL_S      # no filler while the turn is not over
                elif ctx.live_audio and not turn.spoken and turn.last_filler_at is None:
                    since = max(turn.started, gate.released_at or 0.0) if gate else turn.started
                    timeout = max(0.0, since + options.filler_after_ms / 1000 - loop.time())
                done, _ = await asyncio.wait({getter}, timeout=timeout)
                if not done and holding:
                    continue
                if not done:
                    turn.last_filler_at = loop.time()
                    turn.spoken = True
                    yield Filler(filler(self._language(turn)), "slow_model")
                    continue
                item, getter = getter.result(), None
                if item is _END:
                    break
                if isinstance(item, TextDelta):
                    turn.yielded += item.text
                if isinstance(item, (TextDelta, Filler)):
                    turn.spoken = True
                yield item
            done_event = await self._store(turn, interrupted=False)
            engine.prefill(self.request_so_far())
            yield done_event
        finally:
            if getter is not None and not getter.done():
                getter.cancel()
            if not producer.done():
                producer.cancel()
            await asyncio.wait({producer})
            if not turn.stored and (gate is None or gate.released):
                self._pending = asyncio.ensure_future(self._store(turn, interrupted=True))
                await asyncio.shield(self._pending)

    async def _passages(self, text: str) -> list[Any]:
        kb = self._engine.kb
        if kb is None or not self._engine.options.kb_passages:
            return []
        try:
            return list(await asyncio.to_thread(kb.search, text,
                                                self._engine.settings.kb.top_k))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a broken index must not cost the answer
            log.exception("knowledge-base search failed; answering without passages")
            return []

    def _user_message(self, user_text: str, passages: list[Any], language: str | None,
                      local_turn: bool) -> ChatMessage:
        """The caller's words with the passages that may answer them (for a local turn the
        one or two that matter, each capped: prefill is the local model's cost)."""
        options = self._engine.options
        if local_turn:
            context = turn_context(passages[:options.kb_passages_local], language,
                                   options.kb_passage_chars_local,
                                   options.kb_passage_each_local)
        else:
            context = turn_context(passages, language, options.kb_passage_chars)
        return ChatMessage("user", user_text, context=context)

    async def _store_user(self, turn: _Turn) -> None:
        """Store the caller's words once (at the start, or when a speculative reply is
        released); shielded, so a reply cancelled meanwhile still keeps the turns in order."""
        if turn.user_stored is None:
            turn.user_stored = asyncio.ensure_future(self._add_user_turn(turn))
        await asyncio.shield(turn.user_stored)

    async def _add_user_turn(self, turn: _Turn) -> None:
        engine, ctx = self._engine, self.context
        await engine.memory.add_turn(self.customer.id, ctx.channel, ctx.call_id, "user",
                                     turn.user_text)
        language = turn.language
        if language and not self.customer.language and LANGUAGE.match(language):
            ctx.customer = await engine.memory.update_customer(self.customer.id,
                                                               language=language)
        turn.user_message = ChatMessage("user", turn.user_text)
        self._history.append(turn.user_message)

    async def _released(self, turn: _Turn) -> None:
        """A speculative reply waits here before anything takes effect (a tool, a store)."""
        if turn.gate is not None and not turn.gate.released:
            log.info("speculative reply: held until the caller's turn is over")
            await turn.gate.wait()
        await self._store_user(turn)

    async def _produce(self, base: list[ChatMessage], queue: asyncio.Queue[Any],
                       turn: _Turn) -> None:
        try:
            await self._rounds(base, queue, turn)
        except asyncio.CancelledError:
            raise
        except ModelError as exc:
            log.error("no model could answer: %s", exc)
        except Exception:  # noqa: BLE001 - whatever broke, the customer still gets an answer
            log.exception("the reply failed")
        if not turn.text.strip() and turn.actions == 0:
            self._say(queue, turn, apology(self._language(turn)), None)
        queue.put_nowait(_END)

    def _say(self, queue: asyncio.Queue[Any], turn: _Turn, text: str, model: str | None,
             new_round: bool = False) -> None:
        if not turn.text:
            text = text.lstrip()
        elif new_round and not turn.text[-1].isspace() and not text[:1].isspace():
            text = " " + text
        if not text:
            return
        if turn.first_text_at is None:
            turn.first_text_at = asyncio.get_running_loop().time()
        turn.add_model(model)
        turn.text += text
        queue.put_nowait(TextDelta(text))

    async def _rounds(self, base: list[ChatMessage], queue: asyncio.Queue[Any],
                      turn: _Turn) -> None:
        engine, ctx = self._engine, self.context
        extra: list[ChatMessage] = []
        specs = engine.tools.specs(ctx.channel)
        rounds = engine.options.max_tool_rounds
        for number in range(rounds):
            request = ChatRequest(
                system_static=engine.static_prompt, system_dynamic=self._system_dynamic(),
                messages=tuple(base + extra), tools=specs,
                tool_choice="auto" if number < rounds - 1 else "none", voice=ctx.voice,
                system_local=engine.local_prompt, session=self.session)
            if (number == 0 and self._prefer == "auto" and engine.router.mode == "cloud"
                    and (turn.gate is None or turn.gate.released)):   # not for a speculation
                engine.prefill(request, whole=True)  # so a failover starts at once
            calls: list[ToolCall] = []
            said = ""
            model: str | None = None
            async for event in engine.router.stream(request, self._prefer):
                if isinstance(event, Answering):
                    model = event.model
                    if event.reason:
                        log.info("turn taken over by %s (%s)", event.model, event.reason)
                elif isinstance(event, TextChunk):
                    before = len(turn.text)
                    self._say(queue, turn, event.text, model, new_round=not said)
                    said += turn.text[before:]
                elif isinstance(event, ToolCallChunk):
                    turn.add_model(model)
                    calls.append(event.call)
            if not calls:
                return
            extra.append(ChatMessage("assistant", said.strip(), tool_calls=tuple(calls)))
            for call in calls:
                result = await self._call_tool(call, queue, turn)
                extra.append(ChatMessage("tool", result, call=call))

    # -- tools ----------------------------------------------------------------------------

    def _filler(self, queue: asyncio.Queue[Any], turn: _Turn, reason: str) -> None:
        now = asyncio.get_running_loop().time()
        gap = self._engine.options.filler_gap_ms / 1000
        if turn.last_filler_at is not None and now - turn.last_filler_at < gap:
            return
        turn.last_filler_at = now
        queue.put_nowait(Filler(filler(self._language(turn)), reason))

    async def _call_tool(self, call: ToolCall, queue: asyncio.Queue[Any], turn: _Turn) -> str:
        engine, ctx = self._engine, self.context
        tool = engine.tools.get(call.name)
        if tool is None or not tool.available(ctx.channel):
            return f"There is no tool called {call.name} here."
        try:
            args = check_args(tool, call.args)
        except ToolError as exc:
            return f"{call.name} was not run: {exc}."
        await self._released(turn)       # a speculative reply acts only once the turn is over
        loop = asyncio.get_running_loop()
        before = len(ctx.actions)
        started = loop.time()
        if ctx.live_audio and tool.slow:
            self._filler(queue, turn, "slow_tool")
        key = effect_key(ctx.message_sid, call.name, args) if ctx.message_sid else None
        task = asyncio.ensure_future(run_once(engine.memory.db, key,
                                              lambda: tool.handler(ctx, args)))
        try:
            if ctx.live_audio and not tool.slow:
                done, _ = await asyncio.wait({task}, timeout=engine.options.tool_moment_ms / 1000)
                if not done:
                    self._filler(queue, turn, "slow_tool")
            await asyncio.wait({task}, timeout=max(0.0, started + tool.timeout_s - loop.time()))
        except asyncio.CancelledError:
            # The reply was interrupted: the tool finishes on its own (it may be half-way
            # through a booking) and its outcome is stored when it does.
            task.add_done_callback(lambda t: self._store_tool_later(call, args, t))
            raise
        result = self._tool_result(call, task)
        elapsed = (loop.time() - started) * 1000
        log.info("tool %s ran in %.0f ms", call.name, elapsed)
        await engine.memory.add_turn(self.customer.id, ctx.channel, ctx.call_id, "tool", result,
                                     full_text=json.dumps(args, ensure_ascii=False),
                                     tool_name=call.name)
        for action in ctx.actions[before:]:
            turn.actions += 1
            queue.put_nowait(ActionRequested(action))
        return result

    def _tool_result(self, call: ToolCall, task: asyncio.Future[str]) -> str:
        if not task.done():
            task.cancel()
            log.warning("tool %s timed out", call.name)
            return (f"{call.name} did not answer in time. Tell the customer you could not do "
                    "it right now and offer another way.")
        if task.cancelled():
            return f"{call.name} was cancelled."
        exc = task.exception()
        if isinstance(exc, ToolError):
            return f"{call.name} failed: {exc}."
        if exc is not None:
            log.error("tool %s failed", call.name, exc_info=exc)
            return (f"{call.name} failed because of a technical problem. Apologise and offer "
                    "another way.")
        return str(task.result())

    def _store_tool_later(self, call: ToolCall, args: dict[str, Any],
                          task: asyncio.Future[str]) -> None:
        result = self._tool_result(call, task)
        ctx = self.context
        store = asyncio.ensure_future(self._engine.memory.add_turn(
            self.customer.id, ctx.channel, ctx.call_id, "tool", result,
            full_text=json.dumps(args, ensure_ascii=False), tool_name=call.name))
        self._engine._stores.add(store)     # a reference, so the write is not collected
        store.add_done_callback(self._engine._stores.discard)

    # -- storing --------------------------------------------------------------------------

    async def _store(self, turn: _Turn, interrupted: bool) -> ReplyDone:
        turn.stored = True
        await self._released(turn)
        engine, ctx = self._engine, self.context
        full = turn.text.strip()
        heard = turn.yielded.strip() if interrupted else full
        model = "+".join(turn.models) or "none"
        turn_id = await engine.memory.add_turn(self.customer.id, ctx.channel, ctx.call_id,
                                               "assistant", heard, full_text=full,
                                               interrupted=interrupted, model=model)
        message = ChatMessage("assistant", _heard_text(heard, interrupted),
                              interrupted=interrupted)
        if message.text:
            self._history.append(message)
        self._last_reply = (turn_id, message)
        loop = asyncio.get_running_loop()
        ttft = None if turn.first_text_at is None else (turn.first_text_at - turn.started) * 1000
        log.info("reply by %s: %d chars, first text %s ms, total %.0f ms%s", model, len(full),
                 "-" if ttft is None else f"{ttft:.0f}", (loop.time() - turn.started) * 1000,
                 " (interrupted)" if interrupted else "")
        return ReplyDone(full, model, ttft)

    async def mark_heard(self, heard_text: str, interrupted: bool) -> None:
        """What the caller actually heard of the last reply (the call path knows it)."""
        await self._settle()
        if self._last_reply is None:
            return
        turn_id, message = self._last_reply
        await self._engine.memory.set_heard(turn_id, heard_text.strip(), interrupted)
        index = next((i for i in range(len(self._history) - 1, -1, -1)
                      if self._history[i] is message), None)
        text = _heard_text(heard_text, interrupted)
        updated = replace(message, text=text, interrupted=interrupted)
        if index is not None and text:
            self._history[index] = updated
        elif index is not None:
            del self._history[index]
        elif text:
            self._history.append(updated)
        self._last_reply = (turn_id, updated)

    async def said(self, text: str) -> None:
        """Record something the bot said that no model generated (the greeting, a prompt)."""
        await self._settle()
        ctx = self.context
        turn_id = await self._engine.memory.add_turn(self.customer.id, ctx.channel, ctx.call_id,
                                                     "assistant", text, full_text=text)
        message = ChatMessage("assistant", text)
        self._history.append(message)
        self._last_reply = (turn_id, message)
