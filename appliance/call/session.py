"""One streamed call: a task group that listens, decides turns, answers and speaks.

Tasks of a call (all in one TaskGroup; the call ends by raising EndCall in any of them, and a
crash in any stage ends the call with the fallback instead of dead air):
- the reader: WebSocket frames -> VAD -> endpointing and barge-in decisions;
- the player: bot audio out at real-time pace (call/player.py);
- the watchdog: silence prompts and the maximum call length;
- at most one reply at a time: conversation engine -> clauses -> Piper -> player. Barge-in
  cancels it; what the caller heard is what goes into the history.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from ..audio.bargein import (BargeInDetector, BargeInParams, CheckUtterance, Interrupt, PauseBot,
                             ResumeBot, classify_interjection)
from ..audio.endpoint import (EndpointDetector, EndpointParams, SilenceStarted, SpeechResumed,
                              SpeechStarted, TurnEnded)
from ..actions.crm import enrich
from ..actions.handover import decide_transfer
from ..actions.summary import after_call
from ..audio.vad import WINDOW_MS
from ..conversation.events import ActionRequested, Filler, ReplyDone, TextDelta
from ..telephony.media import Dtmf, Mark, Media, Start, Stop, WireError, parse_frame
from ..tts.clauses import ClauseSplitter, speakable
from .listener import Listener
from .player import Player
from .registry import Admission
from .timing import TurnTimings, insert_call_turn

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger(__name__)
MAX_BAD_FRAMES = 50
PHRASES = {
    "still_there": "Are you still there?",
    "goodbye": "Thank you for calling. Goodbye!",
    "transfer": "One moment, I'm connecting you now.",
    "no_transfer": "I'm sorry, nobody can take the call right now. I can take a message: "
                   "what would you like me to pass on?",
    "after_dial": "I'm sorry, nobody could answer just now. I can take a message: what would "
                  "you like me to pass on?",
}


class EndCall(Exception):
    """Raised inside the call's task group to end the call."""

    def __init__(self, outcome: str, next_action: str | None, transfer_to: str | None = None
                 ) -> None:
        super().__init__(outcome)
        self.outcome, self.next_action, self.transfer_to = outcome, next_action, transfer_to


@dataclass
class _Speculation:
    pause_id: int
    end_ms: int
    task: asyncio.Task


class CallSession:
    def __init__(self, rt: "Runtime", ws: web.WebSocketResponse, start: Start,
                 admission: Admission) -> None:
        self.rt, self.ws, self.start, self.admission = rt, ws, start, admission
        s = rt.settings.call
        self.settings = rt.settings
        self.speech = rt.extras["phone_speech"]
        self.player = Player(self._send, start.stream_sid, s.lookahead_ms,
                             on_first_frame=self._first_frame, on_heard=self._heard)
        self.listener = Listener(rt.vad)
        self.endpointer = EndpointDetector(EndpointParams(
            base_wait_ms=s.endpoint_wait_ms, short_wait_ms=s.endpoint_short_wait_ms,
            long_wait_ms=s.endpoint_long_wait_ms))
        self.bargein = BargeInDetector(BargeInParams(pause_after_ms=s.barge_in_ms),
                                       interruptible=s.greeting_interruptible)
        self.language = rt.settings.business.language
        self.conversation: Any = None
        self._tg: asyncio.TaskGroup | None = None
        self._reply_task: asyncio.Task | None = None
        self._reply_id = 0
        self._heard_on_interrupt = ""
        self._turn_index = 0
        self._timings: dict[int, TurnTimings] = {}
        self._spec: _Speculation | None = None
        self._turn_start_ms = 0
        self._media_offset: float | None = None     # wall - media seconds (min over frames)
        self._first_media = True
        self._bad_frames = 0
        self._started = time.monotonic()
        self._last_activity = time.monotonic()
        self._silence_prompts = 0
        self.barge_ins: list[dict[str, float]] = []   # for benchmarks and tests
        self.outcome = EndCall("failed", "fallback")

    # -- life of the call ----------------------------------------------------------------------
    async def run(self) -> EndCall:
        try:
            self.conversation = await self.rt.engine.open(self.admission.caller, "call",
                                                          self.admission.call_id)
            customer = self.conversation.customer
            await self.rt.db.execute("UPDATE calls SET customer_id = ? WHERE id = ?",
                                     (customer.id, self.admission.call_id))
            actions = self.rt.extras.get("actions")
            if actions is not None and actions.crm is not None:
                self.conversation.customer = await enrich(actions.crm, self.rt.engine.memory,
                                                          customer)
            customer_language = getattr(self.conversation.customer, "language", None)
            if customer_language in self.settings.stt.languages:
                self.language = customer_language
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                tg.create_task(self._read_loop(), name="reader")
                tg.create_task(self.player.run(), name="player")
                tg.create_task(self._watchdog(), name="watchdog")
                tg.create_task(self._greet(), name="greeting")
        except* EndCall as group:
            self.outcome = group.exceptions[0]
        except* Exception as group:  # a crashed stage: fall back instead of dead air
            log.error("call failed: %r", group.exceptions[0], exc_info=group.exceptions[0])
            self.outcome = EndCall("failed", "fallback")
        finally:
            await self._finish()
        return self.outcome

    async def _finish(self) -> None:
        o = self.outcome
        log.info("call ended: %s%s", o.outcome, f" -> {o.next_action}" if o.next_action else "")
        await self.rt.db.write(lambda c: c.execute(
            "UPDATE calls SET ended_at = strftime('%Y-%m-%dT%H:%M:%fZ','now'), outcome = ?, "
            "next_action = ?, transfer_to = ?, stream_sid = ? WHERE id = ?",
            (o.outcome, o.next_action, o.transfer_to, self.start.stream_sid,
             self.admission.call_id)))
        if not self.ws.closed:
            await self.ws.close()
        actions = self.rt.extras.get("actions")
        if actions is not None:
            self.rt.spawn(after_call(actions, self.admission.call_id), "call-summary")

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
                await self._on_media(event)
            elif isinstance(event, Mark):
                self.player.on_mark(event.name)
            elif isinstance(event, Dtmf):
                self._tg.create_task(self._on_dtmf(event.digit), name="dtmf")
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

    def media_to_wall(self, media_ms: float) -> float:
        return (self._media_offset or 0.0) + media_ms / 1000

    async def _on_media(self, media: Media) -> None:
        now = time.monotonic()
        if self._first_media:
            self._first_media = False
            self.listener.start_ms = media.timestamp_ms
            self.endpointer.reset(at_ms=media.timestamp_ms)
            self.bargein.reset(at_ms=media.timestamp_ms)
        offset = now - media.timestamp_ms / 1000
        if self._media_offset is None or offset < self._media_offset:
            self._media_offset = offset
        loop = asyncio.get_running_loop()
        probabilities = await loop.run_in_executor(self.rt.audio_executor, self.listener.feed,
                                                   media.payload)
        for p in probabilities:
            if p >= 0.5:
                self._last_activity = time.monotonic()
            for event in self.endpointer.process(p, WINDOW_MS):
                self._on_endpoint(event)
            if self.player.speaking or self.bargein.bot_paused:
                for event in self.bargein.process(p, WINDOW_MS):
                    await self._on_bargein(event)
            else:
                self.bargein.reset(at_ms=self.endpointer.now_ms)

    def _on_endpoint(self, event: Any) -> None:
        if isinstance(event, SpeechStarted):
            self._turn_start_ms = event.at_ms
            self._silence_prompts = 0
            self._merge_if_unheard()
        elif isinstance(event, SilenceStarted):
            self._cancel_speculation()
            task = self._tg.create_task(self._speculate(event.pause_id, event.at_ms))
            self._spec = _Speculation(event.pause_id, event.at_ms, task)
        elif isinstance(event, SpeechResumed):
            if self._spec and self._spec.pause_id == event.pause_id:
                self._cancel_speculation()
        elif isinstance(event, TurnEnded):
            timings = TurnTimings(event.end_of_speech_ms, event.endpoint_wait_ms,
                                  self.media_to_wall(event.end_of_speech_ms), time.monotonic(),
                                  start_ms=event.start_ms)
            self._tg.create_task(self._on_turn(event, timings), name="turn")

    def _merge_if_unheard(self) -> None:
        """The caller went on before any of the reply was sent ("No, thank you. ... Goodbye."):
        drop that reply and treat both parts as one turn."""
        task, timings = self._reply_task, self._timings.get(self._reply_id)
        if task is None or task.done() or timings is None or timings.first_frame_at is not None:
            return
        log.info("caller went on before the reply was heard: one longer turn")
        task.cancel()
        self._turn_start_ms = min(self._turn_start_ms, timings.start_ms)

    def _cancel_speculation(self) -> None:
        if self._spec is not None:
            self._spec.task.cancel()
            self._spec = None

    async def _speculate(self, pause_id: int, end_ms: int) -> Any:
        """Transcribe during the pause: the text decides how long to wait, and the turn can
        reuse it when the caller does not go on."""
        transcript = await self._transcribe(self._turn_start_ms, end_ms)
        for event in self.endpointer.hint(transcript.text, pause_id):
            self._on_endpoint(event)
        return transcript

    async def _transcribe(self, start_ms: int, end_ms: int) -> Any:
        audio = self.listener.audio(start_ms, end_ms)
        transcript = await self.rt.stt.transcribe_async(audio, language_hint=self.language)
        if transcript.text and transcript.language in self.settings.stt.languages:
            self.language = transcript.language
        return transcript

    async def _on_turn(self, event: TurnEnded, timings: TurnTimings) -> None:
        spec = self._spec
        if spec and spec.end_ms == event.end_of_speech_ms and not spec.task.cancelled():
            self._spec = None
            transcript = await spec.task
        else:
            transcript = await self._transcribe(min(event.start_ms, self._turn_start_ms),
                                                event.end_of_speech_ms)
        timings.transcript_at = time.monotonic()
        text = transcript.text.strip()
        replying = self.player.speaking or (self._reply_task and not self._reply_task.done())
        if not text:
            log.info("turn without words ignored (%s)", transcript.rejected_reason)
            await self.player.resume()
            return
        if replying:
            if classify_interjection(text) != "words":
                log.info("backchannel while the bot speaks: %r, reply continues", text)
                await self.player.resume()
                return
            await self._interrupt()
        self._turn_index += 1
        self._reply_task = self._tg.create_task(
            self._reply(text, transcript.language, timings, self._turn_index), name="reply")

    # -- barge-in ------------------------------------------------------------------------------
    async def _on_bargein(self, event: Any) -> None:
        if isinstance(event, PauseBot):
            await self.player.pause()
            self.barge_ins.append({"onset_at": self.media_to_wall(event.onset_ms),
                                   "clear_at": time.monotonic()})
            log.info("caller speaks over the bot: paused")
        elif isinstance(event, CheckUtterance):
            self._tg.create_task(self._check_utterance(event))
        elif isinstance(event, ResumeBot):
            log.info("not an interruption (%s): resuming", event.reason)
            await self.player.resume()
        elif isinstance(event, Interrupt):
            await self._interrupt()

    async def _check_utterance(self, event: CheckUtterance) -> None:
        transcript = await self._transcribe(event.start_ms, event.end_of_speech_ms)
        for result in self.bargein.resolve(transcript.text, event.utterance_id):
            await self._on_bargein(result)

    async def _interrupt(self) -> None:
        """Stop speaking now, cancel the reply, keep only what the caller heard."""
        heard = await self.player.stop()
        task = self._reply_task
        if task is not None and not task.done():
            self._heard_on_interrupt = heard.text
            task.cancel()
            await asyncio.wait([task])
            await self.conversation.mark_heard(heard.text, interrupted=True)
            log.info("reply interrupted; the caller heard %d characters", len(heard.text))

    # -- answering -----------------------------------------------------------------------------
    async def _reply(self, text: str, language: str | None, timings: TurnTimings,
                     index: int) -> None:
        self._reply_id += 1
        reply_id = self._reply_id
        self._timings[reply_id] = timings
        self.player.start_reply()
        clauses: asyncio.Queue[str | None] = asyncio.Queue()
        state: dict[str, Any] = {"full": "", "action": None}
        interrupted = True
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._generate(text, language, timings, clauses, state))
                tg.create_task(self._synthesize(reply_id, timings, clauses))
            await self.player.wait_idle()
            interrupted = False
        finally:
            if interrupted:
                heard_text = self._heard_on_interrupt
            else:
                heard_text = self.player.heard().text
                await self.conversation.mark_heard(heard_text, interrupted=False)
            await self._store_turn(index, text, language, state["full"], heard_text,
                                   interrupted, timings)
        action = state["action"]
        if action is not None:
            await self._act(action)

    async def _generate(self, text: str, language: str | None, timings: TurnTimings,
                        clauses: asyncio.Queue, state: dict[str, Any]) -> None:
        splitter = ClauseSplitter()
        try:
            async for event in self.conversation.reply(text, language):
                if isinstance(event, TextDelta):
                    if timings.first_token_at is None:
                        timings.first_token_at = time.monotonic()
                    for clause in splitter.feed(event.text):
                        self._put_clause(clause, timings, clauses)
                elif isinstance(event, Filler):
                    for clause in splitter.flush():
                        self._put_clause(clause, timings, clauses)
                    clauses.put_nowait(speakable(event.text))
                elif isinstance(event, ActionRequested):
                    state["action"] = event.action
                elif isinstance(event, ReplyDone):
                    state["full"] = event.full_text
                    timings.model = event.model
            for clause in splitter.flush():
                self._put_clause(clause, timings, clauses)
        finally:
            clauses.put_nowait(None)

    def _put_clause(self, clause: str, timings: TurnTimings, clauses: asyncio.Queue) -> None:
        clause = speakable(clause)
        if not clause:
            return
        if timings.first_clause_at is None:
            timings.first_clause_at = time.monotonic()
        clauses.put_nowait(clause)

    async def _synthesize(self, reply_id: int, timings: TurnTimings,
                          clauses: asyncio.Queue) -> None:
        while (clause := await clauses.get()) is not None:
            piece = self.player.new_piece(clause, reply_id)
            first_audio = await self.speech.speak(clause, self.language, piece, self.player)
            if timings.first_audio_at is None and first_audio is not None:
                timings.first_audio_at = time.monotonic()

    def _first_frame(self, reply_id: int, when: float) -> None:
        timings = self._timings.get(reply_id)
        if timings and timings.first_frame_at is None:
            timings.first_frame_at = when

    def _heard(self, piece: Any, when: float) -> None:
        self._last_activity = time.monotonic()
        timings = self._timings.get(piece.reply_id)
        if timings and timings.first_heard_at is None:
            timings.first_heard_at = when

    async def _store_turn(self, index: int, transcript: str, language: str | None, reply: str,
                          heard: str, interrupted: bool, timings: TurnTimings) -> None:
        call_id = self.admission.call_id
        await self.rt.db.write(lambda c: insert_call_turn(
            c, call_id, index, transcript, language, reply, heard, interrupted, timings))
        row = timings.as_row()
        log.info("turn %d: turn_latency %s ms, heard_latency %s ms (endpoint_wait %s, stt %s, "
                 "llm_ttft %s, tts %s)%s", index, row["turn_latency_ms"],
                 row["heard_latency_ms"], row["endpoint_wait_ms"], row["stt_ms"],
                 row["llm_ttft_ms"], row["tts_first_audio_ms"],
                 " interrupted" if interrupted else "")

    async def _act(self, action: Any) -> None:
        kind = action.kind
        if kind == "transfer":
            target = action.target
            if target not in self.settings.twilio.transfer_numbers:
                log.warning("transfer to an unconfigured number refused")
                return
            raise EndCall("transferred", "transfer", target)
        if kind == "hangup":
            raise EndCall("completed", "hangup")

    # -- fixed phrases, silence and DTMF -------------------------------------------------------
    async def _say(self, text: str) -> None:
        self._reply_id += 1
        self.player.start_reply()
        piece = self.player.new_piece(text, self._reply_id)
        await self.speech.speak(text, self.language, piece, self.player)
        await self.player.wait_idle()

    async def _greet(self) -> None:
        text = (PHRASES["after_dial"] if self.admission.mode == "after_dial"
                else self.settings.business.greeting)
        await self._say(text)
        await self.conversation.said(text)     # the model knows what the caller was told
        self.bargein.set_interruptible(True)
        self._last_activity = time.monotonic()

    async def _on_dtmf(self, digit: str) -> None:
        log.info("DTMF %s", digit)
        if not self.settings.twilio.operator_key or digit != self.settings.twilio.operator_key:
            return
        await self._interrupt()
        decision = decide_transfer(self.settings, datetime.now(timezone.utc))
        if not decision.allowed:
            log.info("operator key pressed, no transfer (%s): taking a message", decision.reason)
            await self._say(PHRASES["no_transfer"])
            return
        await self._say(PHRASES["transfer"])
        raise EndCall("transferred", "transfer", decision.target)

    async def _watchdog(self) -> None:
        s = self.settings.call
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            if now - self._started > s.max_call_s:
                await self._interrupt()
                await self._say(PHRASES["goodbye"])
                raise EndCall("completed", "hangup")
            busy = (self.player.speaking or self.endpointer.in_turn
                    or (self._reply_task is not None and not self._reply_task.done()))
            if busy:
                self._last_activity = now
                continue
            if now - self._last_activity >= s.silence_prompt_s:
                if self._silence_prompts >= s.silence_hangup_after:
                    await self._say(PHRASES["goodbye"])
                    raise EndCall("completed", "hangup")
                self._silence_prompts += 1
                await self._say(PHRASES["still_there"])
                self._last_activity = time.monotonic()
