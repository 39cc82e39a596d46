"""Turn-taking of one call: caller audio -> VAD -> end of turn (appliance.turns.decision) and
barge-in (appliance.audio.bargein), with the reply started speculatively in the caller's pauses.

At each Pause (~160 ms of silence) the turn so far is transcribed and scored by the turn model
(call/pauses.py); the transcript starts a speculative reply (LLM, clauses, Piper) whose audio
and tools are held (call/reply.py, conversation/gate.py). Resume cancels it (the Gemini request
with it); Commit releases it when the final words are the same, else a new reply is started.
The decisions are the pure state machines of appliance.turns and appliance.audio; this module
feeds them and carries out what they decide on the call (`CallControl`, the session).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine
from dataclasses import replace
from typing import Protocol, TypeVar

import numpy as np

from ..audio.bargein import (BargeInDetector, BargeInParams, CheckUtterance, Interrupt, PauseBot,
                             ResumeBot, classify_interjection)
from ..audio.vad import WINDOW_MS
from ..stt.whisper import Transcript
from ..telephony.media import Media
from ..config import CallSettings
from ..turns.decision import (Commit, Pause, Resume, TurnDecision, TurnDetector, TurnEvent,
                              TurnParams)
from ..turns.decision import TurnStarted as DetectorTurnStarted
from ..turns.speculation import (CancelReply, ReleaseReply, ReplyAction, RestartReply,
                                 SpeculativeTurns, StartReply)
from ..turns.text import expectation_of
from .deps import CallDeps, TurnScorer
from .events import (BargeIn, CallEvent, SpeechEnded, SpeechStarted, TurnDecided,
                     TurnTranscribed)
from .listener import Listener
from .pauses import PauseWork
from .player import Player
from .reply import ReplyRun
from .timing import TurnTimes

log = logging.getLogger(__name__)
T = TypeVar("T")
BargeInEvent = PauseBot | CheckUtterance | ResumeBot | Interrupt


class EndCall(Exception):
    """Raised inside the call's task group to end the call."""

    def __init__(self, outcome: str, next_action: str | None, transfer_to: str | None = None
                 ) -> None:
        super().__init__(outcome)
        self.outcome, self.next_action, self.transfer_to = outcome, next_action, transfer_to


def turn_params(s: CallSettings) -> TurnParams:
    """The detector's waits: [call] turn_wait_ms is the undecided wait, transcript_wait_ms the
    least wait while the transcript is pending, caller_pause_margin_ms the margin over the
    caller's longest held pause of the call."""
    p = TurnParams()
    base = s.turn_wait_ms         # the shorter waits never exceed it (the table stays ordered)
    return replace(p, fast_wait_ms=min(p.fast_wait_ms, base),
                   quick_wait_ms=min(p.quick_wait_ms, base),
                   text_wait_ms=min(p.text_wait_ms, base),
                   model_wait_ms=min(p.model_wait_ms, base), base_wait_ms=base,
                   doubt_wait_ms=max(p.doubt_wait_ms, base), max_wait_ms=max(p.max_wait_ms, base),
                   pending_wait_ms=s.transcript_wait_ms,
                   adapt_margin_ms=s.caller_pause_margin_ms)


class CallControl(Protocol):
    deps: CallDeps
    player: Player
    call_id: int
    language: str

    @property
    def replying(self) -> bool: ...
    def emit(self, event: CallEvent) -> None: ...
    def spawn(self, coro: Coroutine[object, object, T], name: str) -> asyncio.Task[T]: ...
    def start_reply(self, text: str, language: str | None, times: TurnTimes, *,
                    speculative: bool = False, decided: TurnDecided | None = None
                    ) -> ReplyRun: ...
    def release_reply(self, run: ReplyRun, decided: TurnDecided, times: TurnTimes) -> None: ...
    def cancel_reply(self, run: ReplyRun) -> None: ...
    async def interrupt(self) -> None: ...
    def drop_unheard_reply(self) -> ReplyRun | None: ...
    def caller_active(self) -> None: ...
    def caller_started(self) -> None: ...


class TurnTaking:
    def __init__(self, call: CallControl) -> None:
        self.call = call
        s = call.deps.config.call
        self.clock = call.deps.clock
        self.listener = Listener(call.deps.vad)
        self.detector = TurnDetector(turn_params(s))
        self.speculation: SpeculativeTurns[str] = SpeculativeTurns()
        self.bargein = BargeInDetector(BargeInParams(pause_after_ms=s.barge_in_ms),
                                       interruptible=s.greeting_interruptible)
        self._speculate = s.speculative_replies
        self._attempts: dict[int, ReplyRun] = {}     # live speculative replies by attempt
        self._pause: PauseWork | None = None
        self._turn_start_ms = 0
        self._turns_started = 0                      # TurnStarted events so far (a generation)
        self._counted = (0, 0)                       # speculation counters at the turn's start
        self._media_offset: float | None = None     # clock - media seconds (min over frames)
        self._first_media = True

    @property
    def in_turn(self) -> bool:
        return self.detector.in_turn

    def greeting_done(self) -> None:
        self.bargein.set_interruptible(True)

    def bot_said(self, text: str) -> None:
        """What the bot last said sets what the caller's answer is expected to contain."""
        self.detector.expect(expectation_of(text))

    def media_to_clock(self, media_ms: float) -> float:
        return (self._media_offset or 0.0) + media_ms / 1000

    async def on_media(self, media: Media) -> None:
        now = self.clock()
        if self._first_media:
            self._first_media = False
            self.listener.start_ms = media.timestamp_ms
            self.detector.reset(at_ms=media.timestamp_ms)
            self.bargein.reset(at_ms=media.timestamp_ms)
        offset = now - media.timestamp_ms / 1000
        if self._media_offset is None or offset < self._media_offset:
            self._media_offset = offset
        loop = asyncio.get_running_loop()
        probabilities = await loop.run_in_executor(self.call.deps.audio_executor,
                                                   self.listener.feed, media.payload)
        player = self.call.player
        for p in probabilities:
            if p >= 0.5:
                self.call.caller_active()
            for event in self.detector.frame(p, WINDOW_MS):
                self.on_turn_event(event)
            if player.speaking or self.bargein.bot_paused:
                for event in self.bargein.process(p, WINDOW_MS):
                    await self._on_bargein(event)
            else:
                self.bargein.reset(at_ms=self.detector.now_ms)

    # -- end of turn ---------------------------------------------------------------------------
    def on_turn_event(self, event: TurnEvent) -> None:
        if isinstance(event, DetectorTurnStarted):
            self._turn_start_ms = event.at_ms
            self._turns_started += 1
            c = self.speculation.counters
            self._counted = (c.speculative_starts, c.cancelled)
            self.call.caller_started()
            self.call.emit(SpeechStarted(self.call.call_id, self.clock(), event.at_ms))
            self._merge_if_unheard()
        elif isinstance(event, Pause):
            self._cancel_pause()
            self._pause = PauseWork(self, event.pause_id, self._turn_start_ms, event.at_ms)
        elif isinstance(event, Resume):
            self._act(self.speculation.resume(event.pause_id), None, event.at_ms)
            if self._pause is not None and self._pause.pause_id == event.pause_id:
                self._cancel_pause()
        elif isinstance(event, Commit):
            d = event.decision
            now = self.clock()
            self.call.emit(SpeechEnded(self.call.call_id, now, d.start_ms, d.end_of_speech_ms,
                                       d.silence_ms))
            times = TurnTimes(d.end_of_speech_ms, d.silence_ms,
                              self.media_to_clock(d.end_of_speech_ms), now,
                              start_ms=min(d.start_ms, self._turn_start_ms))
            pause, self._pause = self._pause, None
            c = self.speculation.counters     # this turn's share, before the next one starts
            counts = (c.speculative_starts - self._counted[0], c.cancelled - self._counted[1])
            self.call.spawn(self._on_commit(d, times, pause, counts, self._turns_started),
                            "turn")

    def speculative_transcript(self, pause_id: int, end_ms: int, transcript: Transcript) -> None:
        """The pause's transcript is ready (PauseWork): start a reply, then tell the detector."""
        if not (self.detector.in_turn and self.detector.current_pause_id == pause_id):
            return                                  # the turn was committed meanwhile
        if self._speculate and not (self.call.player.speaking or self.call.replying):
            self._act(self.speculation.transcript(pause_id, transcript.text),
                      transcript.language, end_ms)
        for event in self.detector.transcript(transcript.text, pause_id):
            self.on_turn_event(event)

    def turn_probability(self, pause_id: int, p: float | None) -> None:
        for event in self.detector.turn_probability(p, pause_id):
            self.on_turn_event(event)

    def _merge_if_unheard(self) -> None:
        """The caller went on before any of the reply was sent ("No, thank you. ... Goodbye."):
        drop that reply and treat both parts as one turn."""
        run = self.call.drop_unheard_reply()
        if run is None:
            return
        log.info("caller went on before the reply was heard: one longer turn")
        self._turn_start_ms = min(self._turn_start_ms, run.times.start_ms)

    def _cancel_pause(self) -> None:
        if self._pause is not None:
            self._pause.cancel()
            self._pause = None

    # -- what PauseWork needs ------------------------------------------------------------------
    @property
    def turn_model(self) -> TurnScorer | None:
        return self.call.deps.turn_model

    def spawn(self, coro: Coroutine[object, object, T], name: str) -> asyncio.Task[T]:
        return self.call.spawn(coro, name)

    async def transcribe(self, start_ms: int, end_ms: int) -> Transcript:
        return await self.recognize(self.listener.audio(start_ms, end_ms))

    async def recognize(self, audio: np.ndarray) -> Transcript:
        transcript = await self.submit_stt(audio)
        if transcript.text and transcript.language in self.call.deps.config.languages:
            self.call.language = transcript.language
        return transcript

    def submit_stt(self, audio: np.ndarray) -> Awaitable[Transcript]:
        """The one place the call hands audio to Whisper: the live lane of the CPU scheduler
        (sched/cpu.py); cancelling the awaiting task drops a job that has not started."""
        return self.call.deps.stt.transcribe_async(audio, language_hint=self.call.language)

    async def _final_transcript(self, d: TurnDecision, pause: PauseWork | None) -> Transcript:
        """The words of the whole turn: the final pause's transcript when it covers the turn."""
        if pause is not None and pause.pause_id == d.pause_id and pause.start_ms <= d.start_ms:
            transcript = await pause.transcript()
            if transcript is not None:
                return transcript
        return await self.transcribe(min(d.start_ms, self._turn_start_ms), d.end_of_speech_ms)

    async def _on_commit(self, d: TurnDecision, times: TurnTimes, pause: PauseWork | None,
                         counts: tuple[int, int], generation: int) -> None:
        transcript = await self._final_transcript(d, pause)
        if self._turns_started != generation:
            self._went_on(d, times)
            return
        now = self.clock()
        times = replace(times, transcript_at=now)
        text = transcript.text.strip()
        self.call.emit(TurnTranscribed(self.call.call_id, now, text, transcript.language))
        player = self.call.player
        replying = player.speaking or self.call.replying
        actions = self.speculation.commit(text, d.pause_id)
        if text and replying and classify_interjection(text) != "words":
            log.info("backchannel while the bot speaks: %r, reply continues", text)
            actions = [a for a in actions if not isinstance(a, RestartReply)]
            text = ""
        decided = self._decided(d, actions, counts)
        self.call.emit(decided)
        log.info("turn ended by %s after %d ms silence (wait %d ms, model p %s, %d speculative, "
                 "%d cancelled%s)", d.ended_by, d.silence_ms, d.wait_ms,
                 "-" if d.model_p is None else f"{d.model_p:.2f}", decided.speculative_starts,
                 decided.speculative_cancelled, ", released" if decided.released else "")
        if not text:
            if not transcript.text.strip():
                log.info("turn without words ignored (%s)", transcript.rejected_reason)
            self._act(actions, transcript.language, d.end_of_speech_ms)
            await player.resume()
            return
        if replying:
            await self.call.interrupt()
        self._act(actions, transcript.language, d.end_of_speech_ms, decided, times)

    def _went_on(self, d: TurnDecision, times: TurnTimes) -> None:
        """The caller spoke again while the committed turn's words were still being
        transcribed (a slow box): answering now would talk over them. Drop that turn's reply
        and let the turn going on now cover both parts."""
        log.info("caller went on before the turn's words came: one longer turn")
        self._act(self.speculation.resume(d.pause_id), None, d.end_of_speech_ms)
        self._turn_start_ms = min(self._turn_start_ms, times.start_ms)

    def _decided(self, d: TurnDecision, actions: list[ReplyAction[str]],
                 counts: tuple[int, int]) -> TurnDecided:
        stale = sum(isinstance(a, CancelReply) for a in actions)   # cancelled by the commit
        return TurnDecided(
            self.call.call_id, self.clock(), d.start_ms, d.end_of_speech_ms, d.ended_by,
            d.wait_ms, d.silence_ms, d.model_p, counts[0], counts[1] + stale,
            any(isinstance(a, ReleaseReply) for a in actions))

    def _act(self, actions: list[ReplyAction[str]], language: str | None, end_ms: int,
             decided: TurnDecided | None = None, times: TurnTimes | None = None) -> None:
        """Carry out what the speculation controller decided."""
        for action in actions:
            if isinstance(action, StartReply):
                now = self.clock()
                held = TurnTimes(end_ms, 0, self.media_to_clock(end_ms), now, transcript_at=now,
                                 start_ms=self._turn_start_ms)
                self._attempts[action.attempt] = self.call.start_reply(
                    action.text, language, held, speculative=True)
            elif isinstance(action, CancelReply):
                run = self._attempts.pop(action.attempt, None)
                if run is not None:
                    log.info("speculative reply %d cancelled", action.attempt)
                    self.call.cancel_reply(run)
            elif isinstance(action, ReleaseReply):
                run = self._attempts.pop(action.attempt, None)
                if run is not None and decided is not None and times is not None:
                    self.call.release_reply(run, decided, times)
                self.speculation.forget(action.attempt)
            elif isinstance(action, RestartReply) and times is not None:
                self.call.start_reply(action.text, language, times, decided=decided)
                self.speculation.forget(action.attempt)

    # -- barge-in ------------------------------------------------------------------------------
    async def _on_bargein(self, event: BargeInEvent) -> None:
        player = self.call.player
        if isinstance(event, PauseBot):
            await player.pause()
            self.call.emit(BargeIn(self.call.call_id, self.clock(),
                                   self.media_to_clock(event.onset_ms)))
            log.info("caller speaks over the bot: paused")
        elif isinstance(event, CheckUtterance):
            self.call.spawn(self._check_utterance(event), "check-utterance")
        elif isinstance(event, ResumeBot):
            log.info("not an interruption (%s): resuming", event.reason)
            await player.resume()
        elif isinstance(event, Interrupt):
            await self.call.interrupt()

    async def _check_utterance(self, event: CheckUtterance) -> None:
        transcript = await self.transcribe(event.start_ms, event.end_of_speech_ms)
        for result in self.bargein.resolve(transcript.text, event.utterance_id):
            await self._on_bargein(result)
