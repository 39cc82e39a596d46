"""Turn-taking of one call: caller audio -> VAD -> endpointing (when a turn is over) and
barge-in (when the caller talks over the bot), with speculative transcription in pauses.

The decisions themselves are the pure state machines of appliance.audio (endpoint.py,
bargein.py); this module feeds them and carries out what they decide on the call
(`CallControl`, implemented by the session).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from ..audio.bargein import (BargeInDetector, BargeInParams, CheckUtterance, Interrupt, PauseBot,
                             ResumeBot, classify_interjection)
from ..audio.endpoint import (EndpointDetector, EndpointParams, SilenceStarted, SpeechResumed,
                              TurnEnded)
from ..audio.endpoint import SpeechStarted as VadSpeechStarted
from ..audio.vad import WINDOW_MS
from ..stt.whisper import Transcript
from ..telephony.media import Media
from .deps import CallDeps
from .events import BargeIn, CallEvent, SpeechEnded, SpeechStarted, TurnTranscribed
from .listener import Listener
from .player import Player
from .reply import ReplyRun
from .timing import TurnTimes

log = logging.getLogger(__name__)
T = TypeVar("T")
EndpointEvent = VadSpeechStarted | SilenceStarted | SpeechResumed | TurnEnded
BargeInEvent = PauseBot | CheckUtterance | ResumeBot | Interrupt


class EndCall(Exception):
    """Raised inside the call's task group to end the call."""

    def __init__(self, outcome: str, next_action: str | None, transfer_to: str | None = None
                 ) -> None:
        super().__init__(outcome)
        self.outcome, self.next_action, self.transfer_to = outcome, next_action, transfer_to


class CallControl(Protocol):
    deps: CallDeps
    player: Player
    call_id: int
    language: str

    @property
    def replying(self) -> bool: ...
    def emit(self, event: CallEvent) -> None: ...
    def spawn(self, coro: Coroutine[object, object, T], name: str) -> asyncio.Task[T]: ...
    def start_reply(self, text: str, language: str | None, times: TurnTimes) -> None: ...
    async def interrupt(self) -> None: ...
    def drop_unheard_reply(self) -> ReplyRun | None: ...
    def caller_active(self) -> None: ...
    def caller_started(self) -> None: ...


@dataclass
class _Speculation:
    pause_id: int
    end_ms: int
    task: asyncio.Task[Transcript]


class TurnTaking:
    def __init__(self, call: CallControl) -> None:
        self.call = call
        s = call.deps.config.call
        self.clock = call.deps.clock
        self.listener = Listener(call.deps.vad)
        self.endpointer = EndpointDetector(EndpointParams(
            base_wait_ms=s.endpoint_wait_ms, short_wait_ms=s.endpoint_short_wait_ms,
            long_wait_ms=s.endpoint_long_wait_ms))
        self.bargein = BargeInDetector(BargeInParams(pause_after_ms=s.barge_in_ms),
                                       interruptible=s.greeting_interruptible)
        self._spec: _Speculation | None = None
        self._turn_start_ms = 0
        self._media_offset: float | None = None     # clock - media seconds (min over frames)
        self._first_media = True

    @property
    def in_turn(self) -> bool:
        return self.endpointer.in_turn

    def greeting_done(self) -> None:
        self.bargein.set_interruptible(True)

    def media_to_clock(self, media_ms: float) -> float:
        return (self._media_offset or 0.0) + media_ms / 1000

    async def on_media(self, media: Media) -> None:
        now = self.clock()
        if self._first_media:
            self._first_media = False
            self.listener.start_ms = media.timestamp_ms
            self.endpointer.reset(at_ms=media.timestamp_ms)
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
            for event in self.endpointer.process(p, WINDOW_MS):
                self._on_endpoint(event)
            if player.speaking or self.bargein.bot_paused:
                for event in self.bargein.process(p, WINDOW_MS):
                    await self._on_bargein(event)
            else:
                self.bargein.reset(at_ms=self.endpointer.now_ms)

    # -- endpointing ---------------------------------------------------------------------------
    def _on_endpoint(self, event: EndpointEvent) -> None:
        if isinstance(event, VadSpeechStarted):
            self._turn_start_ms = event.at_ms
            self.call.caller_started()
            self.call.emit(SpeechStarted(self.call.call_id, self.clock(), event.at_ms))
            self._merge_if_unheard()
        elif isinstance(event, SilenceStarted):
            self._cancel_speculation()
            task = self.call.spawn(self._speculate(event.pause_id, event.at_ms), "speculate")
            self._spec = _Speculation(event.pause_id, event.at_ms, task)
        elif isinstance(event, SpeechResumed):
            if self._spec and self._spec.pause_id == event.pause_id:
                self._cancel_speculation()
        elif isinstance(event, TurnEnded):
            now = self.clock()
            self.call.emit(SpeechEnded(self.call.call_id, now, event.start_ms,
                                       event.end_of_speech_ms, event.endpoint_wait_ms))
            times = TurnTimes(event.end_of_speech_ms, event.endpoint_wait_ms,
                              self.media_to_clock(event.end_of_speech_ms), now,
                              start_ms=event.start_ms)
            self.call.spawn(self._on_turn(event, times), "turn")

    def _merge_if_unheard(self) -> None:
        """The caller went on before any of the reply was sent ("No, thank you. ... Goodbye."):
        drop that reply and treat both parts as one turn."""
        run = self.call.drop_unheard_reply()
        if run is None:
            return
        log.info("caller went on before the reply was heard: one longer turn")
        self._turn_start_ms = min(self._turn_start_ms, run.times.start_ms)

    def _cancel_speculation(self) -> None:
        if self._spec is not None:
            self._spec.task.cancel()
            self._spec = None

    async def _speculate(self, pause_id: int, end_ms: int) -> Transcript:
        """Transcribe during the pause: the text decides how long to wait, and the turn can
        reuse it when the caller does not go on."""
        transcript = await self._transcribe(self._turn_start_ms, end_ms)
        for event in self.endpointer.hint(transcript.text, pause_id):
            self._on_endpoint(event)
        return transcript

    async def _transcribe(self, start_ms: int, end_ms: int) -> Transcript:
        audio = self.listener.audio(start_ms, end_ms)
        transcript = await self.call.deps.stt.transcribe_async(audio,
                                                               language_hint=self.call.language)
        if transcript.text and transcript.language in self.call.deps.config.languages:
            self.call.language = transcript.language
        return transcript

    async def _on_turn(self, event: TurnEnded, times: TurnTimes) -> None:
        spec = self._spec
        if spec and spec.end_ms == event.end_of_speech_ms and not spec.task.cancelled():
            self._spec = None
            transcript = await spec.task
        else:
            transcript = await self._transcribe(min(event.start_ms, self._turn_start_ms),
                                                event.end_of_speech_ms)
        now = self.clock()
        times = replace(times, transcript_at=now)
        text = transcript.text.strip()
        self.call.emit(TurnTranscribed(self.call.call_id, now, text, transcript.language))
        player = self.call.player
        replying = player.speaking or self.call.replying
        if not text:
            log.info("turn without words ignored (%s)", transcript.rejected_reason)
            await player.resume()
            return
        if replying:
            if classify_interjection(text) != "words":
                log.info("backchannel while the bot speaks: %r, reply continues", text)
                await player.resume()
                return
            await self.call.interrupt()
        self.call.start_reply(text, transcript.language, times)

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
        transcript = await self._transcribe(event.start_ms, event.end_of_speech_ms)
        for result in self.bargein.resolve(transcript.text, event.utterance_id):
            await self._on_bargein(result)
