"""One streamed call: a task group that listens, decides turns, answers and speaks.

Tasks of a call (all in one TaskGroup; the call ends by raising EndCall in any of them, and a
crash in any stage ends the call with the fallback instead of dead air):
- the reader: WebSocket frames -> VAD -> turn-taking (call/turns.py: endpointing, barge-in);
- the player: bot audio out at real-time pace (call/player.py);
- the silence watch (prompts, then goodbye) and the time limit (`max_call_s`);
- at most one reply at a time (call/reply.py). Barge-in cancels it; what the caller heard is
  what goes into the history.
Everything the call does is reported as events (call/events.py) to `deps.observer`; the call's
record (call/record.py) is written from the same events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import replace
from typing import TypeVar

from aiohttp import WSMsgType, web

from ..conversation.engine import Conversation
from ..conversation.events import Action
from ..conversation.gate import ReleaseGate
from ..telephony.media import Dtmf, Mark, Media, Start, Stop, WireError, parse_frame
from .deps import CallDeps
from .dtmf import Keypad
from .events import (AudioSent, CallEnded, CallEvent, CallStarted, ReplyStarted, ToolRan,
                     TurnCompleted, TurnDecided)
from .phrases import PHRASES
from .player import Piece, Player
from .registry import Admission
from .reply import ReplyOutcome, ReplyRun
from .timing import TurnTimes
from .turns import EndCall, TurnTaking

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_BAD_FRAMES = 50
SILENCE_CHECK_S = 0.25

__all__ = ["PHRASES", "CallSession", "EndCall"]


class CallSession:
    def __init__(self, deps: CallDeps, ws: web.WebSocketResponse, start: Start,
                 admission: Admission) -> None:
        self.deps, self.ws, self.start, self.admission = deps, ws, start, admission
        self.config = deps.config
        self.clock = deps.clock
        self.call_id = admission.call_id
        self.player = Player(self._send, start.stream_sid, self.config.call.lookahead_ms,
                             clock=deps.clock, on_first_frame=self._first_frame,
                             on_heard=self._heard, on_piece_sent=self._piece_sent)
        self.turns = TurnTaking(self)
        self.keypad = Keypad(self, self.config.call.dtmf_quiet_s)   # keyed digits (call/dtmf.py)
        self.language = self.config.language
        self.conversation: Conversation | None = None
        self.tg: asyncio.TaskGroup | None = None
        self.reply_task: asyncio.Task[None] | None = None
        self.replies: dict[int, ReplyRun] = {}
        self._current: ReplyRun | None = None      # the call's reply (not a speculative one)
        self._reply_id = 0
        self._turn_index = 0
        self._heard_on_interrupt = ""
        self._bad_frames = 0
        self.last_activity = self.clock()
        self._silence_prompts = 0
        self.outcome = EndCall("failed", "fallback")

    def emit(self, event: CallEvent) -> None:
        self.deps.observer(event)

    # -- life of the call ----------------------------------------------------------------------
    async def run(self) -> EndCall:
        self.emit(CallStarted(self.call_id, self.clock(), self.start.call_sid,
                              self.start.stream_sid, self.admission.caller, self.admission.mode))
        try:
            await self._open_conversation()
            async with asyncio.TaskGroup() as tg:
                self.tg = tg
                tg.create_task(self._read_loop(), name="reader")
                tg.create_task(self.player.run(), name="player")
                tg.create_task(self._silence_watch(), name="silence")
                tg.create_task(self._time_limit(), name="time-limit")
                tg.create_task(self._greet(), name="greeting")
        except* EndCall as group:
            self.outcome = group.exceptions[0]
        except* Exception as group:  # a crashed stage: fall back instead of dead air
            log.error("call failed: %r", group.exceptions[0], exc_info=group.exceptions[0])
            self.outcome = EndCall("failed", "fallback")
        finally:
            await self._finish()
        return self.outcome

    async def _open_conversation(self) -> None:
        self.conversation = await self.deps.engine.open(self.admission.caller, "call",
                                                        self.call_id)
        customer = self.conversation.customer
        await self.deps.store.set_customer(self.call_id, customer.id)
        if self.deps.enrich is not None:
            self.conversation.customer = await self.deps.enrich(customer)
        customer_language = self.conversation.customer.language
        if customer_language in self.config.languages:
            self.language = customer_language

    async def _finish(self) -> None:
        o = self.outcome
        log.info("call ended: %s%s", o.outcome, f" -> {o.next_action}" if o.next_action else "")
        ended = CallEnded(self.call_id, self.clock(), self.start.call_sid, o.outcome,
                          o.next_action, o.transfer_to)
        await self.deps.store.apply(ended, self.start.stream_sid)
        self.emit(ended)
        if not self.ws.closed:
            await self.ws.close()
        if self.deps.after_call is not None:
            self.deps.after_call(self.call_id)

    async def _send(self, text: str) -> None:
        if self.ws.closed:
            raise EndCall("caller_hung_up", None)
        await self.ws.send_str(text)

    # -- reading the caller --------------------------------------------------------------------
    async def _read_loop(self) -> None:
        async for msg in self.ws:
            if msg.type == WSMsgType.TEXT:
                try:
                    event = parse_frame(msg.data)
                except WireError as exc:
                    self._bad_frame(exc.code)
                    continue
            elif msg.type == WSMsgType.BINARY:
                self._bad_frame("binary_frame")
                continue
            else:
                break
            if isinstance(event, Media):
                await self.turns.on_media(event)
            elif isinstance(event, Mark):
                self.player.on_mark(event.name)
            elif isinstance(event, Dtmf):
                self.spawn(self._on_dtmf(event.digit), "dtmf")
            elif isinstance(event, Stop):
                raise EndCall("caller_hung_up", None)
            elif isinstance(event, Start):
                log.warning("a second start on the same stream, ignored")
        raise EndCall("caller_hung_up", None)

    def _bad_frame(self, code: str) -> None:
        self._bad_frames += 1
        log.warning("bad frame from Twilio ignored: %s (%d so far)", code, self._bad_frames)
        if self._bad_frames > MAX_BAD_FRAMES:
            raise EndCall("failed", "fallback")

    def spawn(self, coro: Coroutine[object, object, T], name: str) -> asyncio.Task[T]:
        assert self.tg is not None, "the call's task group is not running"
        return self.tg.create_task(coro, name=name)

    @property
    def replying(self) -> bool:
        return self.reply_task is not None and not self.reply_task.done()

    # -- answering -----------------------------------------------------------------------------
    def start_reply(self, text: str, language: str | None, times: TurnTimes, *,
                    speculative: bool = False, decided: TurnDecided | None = None) -> ReplyRun:
        """Answer `text`. Speculative: generate now, hold audio and tools until
        `release_reply` (or `cancel_reply`); else it is the call's reply at once."""
        run = self._new_run(times, ReleaseGate() if speculative else None)
        run.task = self.spawn(self._reply(run, text, language),
                              "speculative-reply" if speculative else "reply")
        if not speculative:
            self._begin_turn(run, decided)
        return run

    def release_reply(self, run: ReplyRun, decided: TurnDecided, times: TurnTimes) -> None:
        """The turn is over and `run` answered it: speak it and let it act."""
        run.times = replace(run.times, endpoint_wait_ms=times.endpoint_wait_ms,
                            decided_at=times.decided_at)
        assert run.gate is not None
        run.gate.release()
        self.player.release(run.reply_id)
        self._begin_turn(run, decided)

    def cancel_reply(self, run: ReplyRun) -> None:
        """Drop a speculative reply: nothing of it was heard, stored or done."""
        if run.task is not None:
            run.task.cancel()

    def _begin_turn(self, run: ReplyRun, decided: TurnDecided | None) -> None:
        self._turn_index += 1
        run.turn_index, run.decided = self._turn_index, decided
        self.reply_task, self._current = run.task, run
        self.emit(ReplyStarted(self.call_id, self.clock(), run.reply_id, run.turn_index))

    async def interrupt(self) -> None:
        """Stop speaking now, cancel the reply, keep only what the caller heard."""
        heard = await self.player.stop()
        task = self.reply_task
        if task is not None and not task.done():
            self._heard_on_interrupt = heard.text
            task.cancel()
            await asyncio.wait([task])
            assert self.conversation is not None
            await self.conversation.mark_heard(heard.text, interrupted=True)
            log.info("reply interrupted; the caller heard %d characters", len(heard.text))

    def drop_unheard_reply(self) -> ReplyRun | None:
        """Cancel the reply in progress if none of it has been sent yet; returns it."""
        run = self._current
        if (not self.replying or self.reply_task is None or run is None
                or run.times.first_frame_at is not None):
            return None
        run.dropped = True
        self.reply_task.cancel()
        return run

    def _new_run(self, times: TurnTimes, gate: ReleaseGate | None) -> ReplyRun:
        assert self.conversation is not None
        self._reply_id += 1
        run = ReplyRun(self._reply_id, self.conversation, self.deps.speech, self.player,
                       lambda: self.language, self.clock, times, gate)
        self.replies[run.reply_id] = run
        if gate is not None:
            self.player.hold(run.reply_id)
        self.player.start_reply()
        return run

    async def _reply(self, run: ReplyRun, text: str, language: str | None) -> None:
        outcome: ReplyOutcome | None = None
        try:
            outcome = await run.run(text, language)
        finally:
            if run.gate is not None and not run.gate.released:     # a cancelled speculation
                self.player.drop(run.reply_id)
                self.replies.pop(run.reply_id, None)
            elif run.dropped:       # not a word was sent: the caller's words go on in the
                heard_text = ""     # next turn, so no (empty, interrupted) answer is kept
                assert self.conversation is not None
                await self.conversation.mark_heard("", interrupted=True)
            elif outcome is None:
                heard_text = self._heard_on_interrupt
            else:
                heard_text = self.player.heard().text
                assert self.conversation is not None
                await self.conversation.mark_heard(heard_text, interrupted=False)
            if (run.gate is None or run.gate.released) and not run.dropped:
                await self._complete_turn(TurnCompleted(
                    self.call_id, self.clock(), run.turn_index, run.reply_id, text, language,
                    run.full_text, heard_text, outcome is None, run.times, run.decided))
        if outcome.action is not None:
            await self._act(outcome.action)

    async def _complete_turn(self, turn: TurnCompleted) -> None:
        await self.deps.store.apply(turn, self.start.stream_sid)
        self.emit(turn)
        self.turns.bot_said(turn.reply_text)
        row = turn.timings.as_row()
        log.info("turn %d: turn_latency %s ms, heard_latency %s ms (endpoint_wait %s, stt %s, "
                 "llm_ttft %s, tts %s)%s", turn.turn_index, row["turn_latency_ms"],
                 row["heard_latency_ms"], row["endpoint_wait_ms"], row["stt_ms"],
                 row["llm_ttft_ms"], row["tts_first_audio_ms"],
                 " interrupted" if turn.interrupted else "")

    async def _act(self, action: Action) -> None:
        self.emit(ToolRan(self.call_id, self.clock(), action.kind, action.target))
        if action.kind == "transfer":
            if action.target not in self.config.transfer_numbers:
                log.warning("transfer to an unconfigured number refused")
                return
            raise EndCall("transferred", "transfer", action.target)
        if action.kind == "hangup":
            raise EndCall("completed", "hangup")

    def _first_frame(self, reply_id: int, when: float) -> None:
        run = self.replies.get(reply_id)
        if run is not None:
            run.stamp(first_frame_at=when)

    def _piece_sent(self, piece: Piece, when: float) -> None:
        run = self.replies.get(piece.reply_id)
        first = run is None or run.times.first_frame_at is None
        self.emit(AudioSent(self.call_id, when, piece.reply_id, piece.text, first,
                            run is not None and piece.text in run.fillers))

    def _heard(self, piece: Piece, when: float) -> None:
        self.last_activity = self.clock()
        run = self.replies.get(piece.reply_id)
        if run is not None:
            run.stamp(first_heard_at=when)

    # -- fixed phrases, silence, DTMF and the time limit ---------------------------------------
    def phrase(self, key: str) -> str:
        """A fixed phrase in the call's current language (call/phrases.py)."""
        return self.config.phrase(key, self.language)

    async def say(self, text: str) -> None:
        self._reply_id += 1
        self.player.start_reply()
        piece = self.player.new_piece(text, self._reply_id)
        await self.deps.speech.speak(text, self.language, piece, self.player)
        await self.player.wait_idle()

    async def _greet(self) -> None:
        text = self.phrase("after_dial" if self.admission.mode == "after_dial" else "greeting")
        await self.say(text)
        assert self.conversation is not None
        await self.conversation.said(text)     # the model knows what the caller was told
        self.turns.greeting_done()
        self.turns.bot_said(text)
        self.last_activity = self.clock()

    async def _on_dtmf(self, digit: str) -> None:
        if (not self.config.operator_key or digit != self.config.operator_key
                or self.keypad.pending):
            await self.keypad.press(digit)
            return
        await self.interrupt()
        decision = self.deps.decide_transfer()
        if not decision.allowed:
            log.info("operator key pressed, no transfer (%s): taking a message", decision.reason)
            if self.config.call.voicemail:                 # call/voicemail.py records it
                raise EndCall("completed", "voicemail")
            await self.say(self.phrase("no_transfer"))
            return
        await self.say(self.phrase("transfer"))
        raise EndCall("transferred", "transfer", decision.target)

    async def _time_limit(self) -> None:
        try:
            async with asyncio.timeout(self.config.call.max_call_s):
                await asyncio.Event().wait()
        except TimeoutError:
            await self.interrupt()
            await self.say(self.phrase("goodbye"))
            raise EndCall("completed", "hangup") from None

    async def _silence_watch(self) -> None:
        s = self.config.call
        while True:
            await asyncio.sleep(SILENCE_CHECK_S)
            now = self.clock()
            if self.player.speaking or self.turns.in_turn or self.replying:
                self.last_activity = now
                continue
            if now - self.last_activity >= s.silence_prompt_s:
                if self._silence_prompts >= s.silence_hangup_after:
                    await self.say(self.phrase("goodbye"))
                    raise EndCall("completed", "hangup")
                self._silence_prompts += 1
                await self.say(self.phrase("still_there"))
                self.last_activity = self.clock()

    def caller_active(self) -> None:
        self.last_activity = self.clock()

    def caller_started(self) -> None:
        self._silence_prompts = 0
