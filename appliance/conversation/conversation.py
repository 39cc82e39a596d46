"""One conversation with one customer on one channel (made by `Engine.open()`).

`reply(text)` stores the user turn, builds the context (history, knowledge-base passages),
streams the answer through the model router in rounds, running the tools the model asks for
(tool_calls.py), and stores the assistant turn with the model that produced it. On a call a
"one moment" filler is yielded when nothing can be said in time.

Cancellation (barge-in): cancelling the consumer cancels the model work at once; the assistant
turn is still stored with the text generated so far (flagged interrupted) before the
CancelledError propagates. `mark_heard()` then records what the caller actually heard, which is
what the model sees next turn.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any, AsyncIterator

from .events import Filler, ReplyDone, ReplyEvent, TextDelta
from .gate import ReleaseGate
from .history import as_heard
from .memory import LANGUAGE, Customer
from .privacy import Withheld, confirmed, unconfirmed_about
from .prompt import apology, dynamic_prompt, filler, turn_context
from .reply_turn import End, ReplyTurn
from .tool_calls import call_tool
from .tools import ToolContext
from ..llm.base import ChatMessage, ChatRequest, ModelError, TextChunk, ToolCall, ToolCallChunk
from ..llm.failover import Answering, Prefer

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger(__name__)

HELD_POLL_S = 0.05     # a held (speculative) reply checks this often whether it was released


class Conversation:
    """One conversation with one customer on one channel. Create with `Engine.open()`."""

    def __init__(self, engine: Engine, context: ToolContext, history: list[ChatMessage],
                 prefer: Prefer = "auto", withheld: Withheld | None = None) -> None:
        self.engine = engine
        self.context = context
        self._history = history
        self._prefer = prefer
        self._withheld = withheld       # held back until the caller is confirmed (privacy.py)
        self._dynamic_key: tuple[Customer, bool] | None = None
        self._dynamic = ""
        self._last_reply: tuple[int, ChatMessage] | None = None
        self._pending: asyncio.Future[ReplyDone] | None = None

    @property
    def customer(self) -> Customer:
        return self.context.customer

    @property
    def history(self) -> tuple[ChatMessage, ...]:
        """What the model will see of the past (for tests and `appliance chat`)."""
        return tuple(self._history)

    def _system_dynamic(self) -> str:
        self._release_if_confirmed()
        key = (self.customer, self._withheld is None)
        if self._dynamic_key != key:  # rebuilt only when the record or the confirmation changes
            self._dynamic_key = key
            held = self._withheld
            self._dynamic = dynamic_prompt(
                self.context.channel, self.customer, self.engine.settings.business.timezone,
                unconfirmed=(unconfirmed_about(self.customer.name, held.returning)
                             if held is not None else None))
        return self._dynamic

    def _release_if_confirmed(self) -> None:
        """After the step-up, the earlier conversation goes back before this call's turns."""
        held = self._withheld
        if held is not None and confirmed(self.context, self.engine.trust_attested()):
            self._withheld = None
            self._history[:0] = held.history
            log.info("caller confirmed: %d earlier messages loaded", len(held.history))

    def request_so_far(self) -> ChatRequest:
        """The conversation as the next turn's prompt will start (no new message yet)."""
        return ChatRequest(system_static=self.engine.static_prompt,
                           system_dynamic=self._system_dynamic(),
                           messages=tuple(self._history),
                           tools=self.engine.tools.specs(self.context.channel),
                           voice=self.context.voice, system_local=self.engine.local_prompt,
                           session=self.session)

    @property
    def session(self) -> str:
        """[i17] The key of this conversation's KV cache in the local model."""
        ctx = self.context
        return f"{ctx.channel}:{ctx.customer.id}:{ctx.call_id or ''}"

    def language(self, turn: ReplyTurn | None = None) -> str:
        return ((turn.language if turn else None) or self.customer.language
                or self.engine.settings.business.language)

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
        engine, ctx = self.engine, self.context
        loop = asyncio.get_running_loop()
        turn = ReplyTurn(started=loop.time(), language=language, user_text=user_text, gate=gate)
        await self._settle()
        self._release_if_confirmed()
        if gate is None:
            await self._store_user(turn)
        ctx.language = language
        passages = await self._passages(user_text)
        local_turn = self._prefer == "local" or engine.router.mode != "cloud"
        options = engine.options
        user = self._user_message(user_text, passages, language, local_turn)
        base = [m for m in self._history if m is not turn.user_message] + [user]
        producer = asyncio.create_task(self._produce(base, turn), name="reply")
        getter: asyncio.Future[ReplyEvent | End] | None = None
        try:
            while True:
                if getter is None:
                    getter = asyncio.ensure_future(turn.queue.get())
                timeout = None
                holding = turn.holding
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
                    yield Filler(filler(self.language(turn)), "slow_model")
                    continue
                item, getter = getter.result(), None
                if isinstance(item, End):
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
        kb = self.engine.kb
        if kb is None or not self.engine.options.kb_passages:
            return []
        try:
            return list(await asyncio.to_thread(kb.search, text,
                                                self.engine.settings.kb.top_k))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a broken index must not cost the answer
            log.exception("knowledge-base search failed; answering without passages")
            return []

    def _user_message(self, user_text: str, passages: list[Any], language: str | None,
                      local_turn: bool) -> ChatMessage:
        """The caller's words with the passages that may answer them (for a local turn the
        one or two that matter, each capped: prefill is the local model's cost)."""
        options = self.engine.options
        if local_turn:
            context = turn_context(passages[:options.kb_passages_local], language,
                                   options.kb_passage_chars_local,
                                   options.kb_passage_each_local)
        else:
            context = turn_context(passages, language, options.kb_passage_chars)
        return ChatMessage("user", user_text, context=context)

    async def _store_user(self, turn: ReplyTurn) -> None:
        """Store the caller's words once (at the start, or when a speculative reply is
        released); shielded, so a reply cancelled meanwhile still keeps the turns in order."""
        if turn.user_stored is None:
            turn.user_stored = asyncio.ensure_future(self._add_user_turn(turn))
        await asyncio.shield(turn.user_stored)

    async def _add_user_turn(self, turn: ReplyTurn) -> None:
        engine, ctx = self.engine, self.context
        await engine.memory.add_turn(self.customer.id, ctx.channel, ctx.call_id, "user",
                                     turn.user_text)
        language = turn.language
        if language and not self.customer.language and LANGUAGE.match(language):
            ctx.customer = await engine.memory.update_customer(self.customer.id,
                                                               language=language)
        turn.user_message = ChatMessage("user", turn.user_text)
        self._history.append(turn.user_message)

    async def released(self, turn: ReplyTurn) -> None:
        """A speculative reply waits here before anything takes effect (a tool, a store)."""
        if turn.gate is not None and not turn.gate.released:
            log.info("speculative reply: held until the caller's turn is over")
            await turn.gate.wait()
        await self._store_user(turn)

    async def _produce(self, base: list[ChatMessage], turn: ReplyTurn) -> None:
        try:
            await self._rounds(base, turn)
        except asyncio.CancelledError:
            raise
        except ModelError as exc:
            log.error("no model could answer: %s", exc)
        except Exception:  # noqa: BLE001 - whatever broke, the customer still gets an answer
            log.exception("the reply failed")
        if not turn.text.strip() and turn.actions == 0:
            turn.say(apology(self.language(turn)), None)
        turn.queue.put_nowait(End())

    async def _rounds(self, base: list[ChatMessage], turn: ReplyTurn) -> None:
        engine, ctx = self.engine, self.context
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
                    turn.say(event.text, model, new_round=not said)
                    said += turn.text[before:]
                elif isinstance(event, ToolCallChunk):
                    turn.add_model(model)
                    calls.append(event.call)
            if not calls:
                return
            extra.append(ChatMessage("assistant", said.strip(), tool_calls=tuple(calls)))
            for call in calls:
                result = await call_tool(self, call, turn)
                extra.append(ChatMessage("tool", result, call=call))

    # -- storing --------------------------------------------------------------------------

    async def _store(self, turn: ReplyTurn, interrupted: bool) -> ReplyDone:
        turn.stored = True
        await self.released(turn)
        engine, ctx = self.engine, self.context
        full = turn.text.strip()
        heard = turn.yielded.strip() if interrupted else full
        model = "+".join(turn.models) or "none"
        turn_id = await engine.memory.add_turn(self.customer.id, ctx.channel, ctx.call_id,
                                               "assistant", heard, full_text=full,
                                               interrupted=interrupted, model=model)
        message = ChatMessage("assistant", as_heard(heard, interrupted),
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
        await self.engine.memory.set_heard(turn_id, heard_text.strip(), interrupted)
        index = next((i for i in range(len(self._history) - 1, -1, -1)
                      if self._history[i] is message), None)
        text = as_heard(heard_text, interrupted)
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
        turn_id = await self.engine.memory.add_turn(self.customer.id, ctx.channel, ctx.call_id,
                                                     "assistant", text, full_text=text)
        message = ChatMessage("assistant", text)
        self._history.append(message)
        self._last_reply = (turn_id, message)
