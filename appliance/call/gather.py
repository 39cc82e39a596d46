"""The replies of <Gather> calls: Twilio transcribes, the conversation engine answers, and each
piece of the answer (tts/clauses.py) becomes a <Play> clip (call/clips.py) the moment its text
exists, so the first sentence plays while the rest is still being written and synthesised.

One `GatherCall` per CallSid keeps the call's conversation (opened once, like a streamed call's)
and its current `ReplyRun`. The webhooks (call/gather_hooks.py) take the run's pieces as they
come (`ReplyRun.next`): the first ones for /respond, the rest for /continue.

Partial results start the reply early: `partial()` starts a speculative run with a
`ReleaseGate` (conversation/gate.py) once the caller's words have settled for SETTLE_S; it
writes, stores and acts on nothing. The final SpeechResult (`final()`) releases it when it is
the same words (turns/text.py `normalise`), else cancels it and starts afresh. Nothing stays
forever: a call idle for CALL_IDLE_S is forgotten, and a run still going after REPLY_LIMIT_S
is cancelled."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..conversation.conversation import Conversation
from ..conversation.events import Action, ActionRequested, ReplyDone, TextDelta
from ..conversation.gate import ReleaseGate
from ..tts.clauses import ClauseSplitter
from ..turns.text import normalise
from .clips import Clip, ClipStore, Render
from .deps import ConversationOpener

log = logging.getLogger(__name__)
GATHER_DEADLINE_S = 9.0       # Twilio waits 15 s for a webhook; leave room for the network
REPLY_LIMIT_S = 120.0         # a reply still being made by then is cancelled
CALL_IDLE_S = 1800.0          # a call not heard of for this long is forgotten
SETTLE_S = 0.25               # a partial result unchanged this long starts a speculative reply


@dataclass(frozen=True)
class Piece:
    """One piece of a reply: its clip, or None when the language has no local voice (<Say>)."""

    text: str
    clip: Clip | None


@dataclass
class GatherStats:
    speculative_starts: int = 0
    speculative_cancelled: int = 0
    speculative_released: int = 0


class ReplyRun:
    """One reply being made: text cut into pieces, each synthesised as soon as it exists."""

    def __init__(self, speech: str, language: str, gate: ReleaseGate | None) -> None:
        self.speech, self.language, self.gate = speech, language, gate
        self.started = time.perf_counter()
        self.pieces: list[Piece] = []
        self.handed = 0                     # pieces given to Twilio so far
        self.answered = False               # the TwiML after its end was given (next turn)
        self.finished = False
        self.action: Action | None = None
        self.text = ""
        self.error: BaseException | None = None
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def add(self, piece: Piece) -> None:
        self.pieces.append(piece)
        self._changed.set()

    def finish(self, error: BaseException | None = None) -> None:
        self.finished, self.error = True, error
        self._changed.set()

    async def next(self, timeout_s: float | None = None) -> list[Piece] | None:
        """The pieces not handed out yet (at least one, unless the reply is over); None when
        nothing new came within `timeout_s` (GATHER_DEADLINE_S)."""
        wait = GATHER_DEADLINE_S if timeout_s is None else timeout_s
        deadline = asyncio.get_running_loop().time() + wait
        while self.handed == len(self.pieces) and not self.finished:
            self._changed.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(self._changed.wait(), max(0.0, remaining))
            except asyncio.TimeoutError:
                return None
        new, self.handed = self.pieces[self.handed:], len(self.pieces)
        return new

    @property
    def all_handed(self) -> bool:
        return self.finished and self.handed == len(self.pieces)


@dataclass
class GatherCall:
    call_sid: str
    caller: str
    call_id: int
    conversation: Conversation | None = None
    run: ReplyRun | None = None               # the released (or final) reply
    speculative: ReplyRun | None = None       # started on partial results, held by its gate
    settling: asyncio.Task[None] | None = None
    seen: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


Voiced = Callable[[str], Render | None]      # language -> its local voice, or None (<Say>)


class GatherTurns:
    """CallSid -> the call's conversation and reply in progress."""

    def __init__(self, engine: ConversationOpener | None, clips: ClipStore, voice: Voiced,
                 default_language: str) -> None:
        self.engine, self.clips, self.voice = engine, clips, voice
        self.default_language = default_language
        self.stats = GatherStats()
        self._calls: dict[str, GatherCall] = {}

    # -- calls -----------------------------------------------------------------------------
    def _call(self, call_sid: str, caller: str, call_id: int) -> GatherCall:
        self._forget_idle()
        call = self._calls.get(call_sid)
        if call is None:
            call = self._calls[call_sid] = GatherCall(call_sid, caller, call_id)
        call.seen = time.monotonic()
        return call

    async def conversation(self, call_sid: str, caller: str, call_id: int) -> Conversation:
        call = self._call(call_sid, caller, call_id)
        async with call.lock:
            if call.conversation is None:
                if self.engine is None:
                    raise RuntimeError("no conversation engine")
                call.conversation = await self.engine.open(caller, "gather", call_id)
            return call.conversation

    async def language(self, call_sid: str, caller: str, call_id: int,
                       languages: tuple[str, ...]) -> str:
        """The caller's language: their record's, if it is one we speak; else the business's."""
        conversation = await self.conversation(call_sid, caller, call_id)
        known = conversation.customer.language
        return known if known in languages else self.default_language

    def caller(self, call_sid: str) -> str | None:
        call = self._calls.get(call_sid)
        return call.caller if call is not None else None

    def current(self, call_sid: str) -> ReplyRun | None:
        call = self._calls.get(call_sid)
        return call.run if call is not None else None

    def pending_count(self) -> int:
        return sum(1 for c in self._calls.values() if c.run and not c.run.all_handed)

    def end(self, call_sid: str) -> None:
        """The call is over (its status callback): cancel what is left, drop its clips."""
        call = self._calls.pop(call_sid, None)
        if call is not None:
            for run in (call.run, call.speculative):
                self._cancel(run)
            if call.settling is not None:
                call.settling.cancel()
        self.clips.drop_call(call_sid)

    def _forget_idle(self) -> None:
        now = time.monotonic()
        for sid in [s for s, c in self._calls.items() if c.seen < now - CALL_IDLE_S]:
            log.info("a <Gather> call not heard of for %.0f s was forgotten", CALL_IDLE_S)
            self.end(sid)

    # -- replies ---------------------------------------------------------------------------
    def partial(self, call_sid: str, caller: str, call_id: int, text: str,
                language: str) -> None:
        """A partial result: (re)start the speculative reply once the words settle."""
        call = self._call(call_sid, caller, call_id)
        if not normalise(text) or (call.run is not None and not call.run.finished):
            return
        live = call.speculative
        if live is not None and normalise(live.speech) == normalise(text):
            return
        if call.settling is not None:
            call.settling.cancel()
        call.settling = asyncio.create_task(self._settle(call, text, language))

    async def _settle(self, call: GatherCall, text: str, language: str) -> None:
        await asyncio.sleep(SETTLE_S)
        async with call.lock:
            await self._drop_speculative(call)
            call.speculative = await self._start(call, text, language, ReleaseGate())
            self.stats.speculative_starts += 1

    async def final(self, call_sid: str, caller: str, call_id: int, speech: str,
                    language: str) -> ReplyRun:
        """The SpeechResult: the speculative reply released if it answered these words."""
        call = self._call(call_sid, caller, call_id)
        if call.settling is not None:
            call.settling.cancel()
        async with call.lock:
            spec, call.speculative = call.speculative, None
            if (spec is not None and spec.gate is not None and spec.error is None
                    and normalise(spec.speech) == normalise(speech)):
                spec.gate.release()
                self.stats.speculative_released += 1
                call.run = spec
                return spec
            call.speculative = spec
            await self._drop_speculative(call)
            self._cancel(call.run)
            call.run = await self._start(call, speech, language, None)
            return call.run

    async def _drop_speculative(self, call: GatherCall) -> None:
        spec, call.speculative = call.speculative, None
        if spec is not None:
            self.stats.speculative_cancelled += 1
            self._cancel(spec)
            if spec.task is not None:
                await asyncio.wait([spec.task])

    def _cancel(self, run: ReplyRun | None) -> None:
        if run is None:
            return
        if run.task is not None and not run.task.done():
            run.task.cancel()
        for piece in run.pieces[run.handed:]:
            if piece.clip is not None:
                self.clips.discard(piece.clip)

    async def _start(self, call: GatherCall, speech: str, language: str,
                     gate: ReleaseGate | None) -> ReplyRun:
        if call.conversation is None:
            if self.engine is None:
                raise RuntimeError("no conversation engine")
            call.conversation = await self.engine.open(call.caller, "gather", call.call_id)
        run = ReplyRun(speech, language, gate)
        run.task = asyncio.create_task(self._produce(call, call.conversation, run))
        limit = asyncio.get_running_loop().call_later(REPLY_LIMIT_S, run.task.cancel)
        run.task.add_done_callback(lambda _t: limit.cancel())
        return run

    async def _produce(self, call: GatherCall, conversation: Conversation, run: ReplyRun
                       ) -> None:
        splitter = ClauseSplitter()
        render = self.voice(run.language)
        try:
            async for event in conversation.reply(run.speech, run.language, gate=run.gate):
                if isinstance(event, TextDelta):
                    for text in splitter.feed(event.text):
                        run.add(self._piece(call, text, run.language, render))
                elif isinstance(event, ActionRequested):
                    run.action = event.action
                elif isinstance(event, ReplyDone):
                    run.text = event.full_text
            for text in splitter.flush():
                run.add(self._piece(call, text, run.language, render))
            await conversation.mark_heard(run.text, interrupted=False)
        except asyncio.CancelledError:
            run.finish(RuntimeError("cancelled"))
            raise
        except Exception as exc:  # noqa: BLE001 - the webhook answers with the fallback
            log.exception("<Gather> reply failed")
            run.finish(exc)
            return
        run.finish()

    def _piece(self, call: GatherCall, text: str, language: str, render: Render | None
               ) -> Piece:
        if render is None:
            return Piece(text, None)
        return Piece(text, self.clips.add(call.call_sid, text, language, render))
