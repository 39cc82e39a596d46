"""End-of-turn detection: a pure, clock-free state machine fed VAD windows.

Modelled on Home Assistant's VoiceCommandSegmenter: the caller feeds ``process(p, duration_ms)``
for every VAD window in order (Silero: 32 ms each) and gets typed events back. Time is the audio
timeline, i.e. the sum of the durations fed since ``start_ms`` (align ``start_ms`` with the media
timestamp of the first sample to get Twilio's clock); nothing here reads a clock.

States::

    IDLE --voiced >= min_speech_ms--> SPEECH          emits SpeechStarted(at_ms = onset)
    SPEECH --unvoiced window--> PAUSE (pause_id += 1)
    PAUSE --silence >= speculate_after_ms--> emits SilenceStarted (start speculative STT)
    PAUSE --hint(text)--> wait = short / base / long for this pause
    PAUSE --voiced >= resume_min_ms--> SPEECH         emits SpeechResumed if SilenceStarted went out
    PAUSE --silence >= wait--> IDLE                    emits TurnEnded
    SPEECH/PAUSE --turn length >= max_turn_ms--> IDLE  emits TurnEnded(reason="max_length")

Voicing uses hysteresis: a window is voiced at ``p >= start_threshold`` when entering speech and
at ``p >= continue_threshold`` while already in a voiced run. End of speech is the END of the
last voiced window (docs: latency.md), not the moment the silence wait ran out; the difference is
``endpoint_wait_ms``. A voiced blip inside a pause shorter than ``resume_min_ms`` counts as
silence, but the turn is never ended while such a blip is still going on.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Literal

from ..turns.text import text_signal

logger = logging.getLogger(__name__)

TextClass = Literal["complete", "incomplete", "digits", "neutral"]


@dataclass(frozen=True)
class EndpointParams:
    start_threshold: float = 0.5  # probability that opens a voiced run (Silero's default)
    continue_threshold: float = 0.35  # keeps a run voiced (faster-whisper: threshold - 0.15)
    min_speech_ms: int = 120  # voiced run before SpeechStarted: a click or cough is not a turn
    resume_min_ms: int = 64  # voiced run that ends a pause; shorter blips count as silence
    speculate_after_ms: int = 100  # silence before SilenceStarted (speculative STT/LLM)
    base_wait_ms: int = 500  # silence that ends a turn when nothing is known about the text
    short_wait_ms: int = 250  # ... after a complete-sounding phrase ("Yes.", "... goodbye")
    long_wait_ms: int = 1200  # ... after digits being read out or a trailing "and"/"um"/","
    max_turn_ms: int = 30_000  # onset to forced end (Whisper's window is 30 s)

    def __post_init__(self) -> None:
        if not 0.0 <= self.continue_threshold <= self.start_threshold <= 1.0:
            raise ValueError("need 0 <= continue_threshold <= start_threshold <= 1")
        if min(self.min_speech_ms, self.resume_min_ms, self.speculate_after_ms) < 0:
            raise ValueError("durations must be >= 0")
        if not 0 < self.short_wait_ms <= self.base_wait_ms <= self.long_wait_ms:
            raise ValueError("need 0 < short_wait_ms <= base_wait_ms <= long_wait_ms")
        if self.max_turn_ms <= 0:
            raise ValueError("max_turn_ms must be > 0")

    def wait_for(self, text_class: TextClass | None) -> int:
        """Silence (ms) that ends a turn whose speculative transcript is of ``text_class``."""
        if text_class == "complete":
            return self.short_wait_ms
        if text_class in ("digits", "incomplete"):
            return self.long_wait_ms
        return self.base_wait_ms


@dataclass(frozen=True)
class SpeechStarted:
    at_ms: int  # onset: start of the first voiced window of the turn


@dataclass(frozen=True)
class SilenceStarted:
    at_ms: int  # end of the last voiced window: transcribe audio up to here
    pause_id: int  # pass back to hint() so a late transcript cannot affect a later pause


@dataclass(frozen=True)
class SpeechResumed:
    at_ms: int  # start of the voiced run that ended the pause
    pause_ms: int  # how long the pause lasted
    pause_id: int  # the pause that is over: cancel its speculation


@dataclass(frozen=True)
class TurnEnded:
    start_ms: int  # onset of the turn
    end_of_speech_ms: int  # end of the last voiced window
    endpoint_wait_ms: int  # silence waited after end_of_speech before deciding
    reason: Literal["silence", "max_length"]
    text_class: TextClass | None  # the hint in force when the turn ended, if any


EndpointEvent = SpeechStarted | SilenceStarted | SpeechResumed | TurnEnded


class _State(enum.Enum):
    IDLE = "idle"
    SPEECH = "speech"
    PAUSE = "pause"


class EndpointDetector:
    def __init__(self, params: EndpointParams = EndpointParams(), start_ms: int = 0) -> None:
        self.params = params
        self._now_ms = start_ms
        self._pause_id = 0  # increases for every pause, across turns
        self.reset()

    def reset(self, at_ms: int | None = None) -> None:
        """Back to IDLE, dropping any turn in progress. ``at_ms`` moves the timeline."""
        if at_ms is not None:
            self._now_ms = at_ms
        self._state = _State.IDLE
        self._run_start_ms: int | None = None  # start of the current voiced run (candidate)
        self._run_ms = 0
        self._turn_start_ms: int | None = None
        self._last_voiced_end_ms: int | None = None
        self._silence_announced = False
        self._text_class: TextClass | None = None

    # --- read-only views -------------------------------------------------------------------
    @property
    def now_ms(self) -> int:
        """End of the last window fed, on the audio timeline."""
        return self._now_ms

    @property
    def in_turn(self) -> bool:
        return self._state is not _State.IDLE

    @property
    def end_of_speech_ms(self) -> int | None:
        """End of the last voiced window of the current turn (None outside a turn)."""
        return self._last_voiced_end_ms if self.in_turn else None

    @property
    def current_wait_ms(self) -> int:
        return self.params.wait_for(self._text_class)

    # --- inputs ----------------------------------------------------------------------------
    def process(self, speech_probability: float, duration_ms: int) -> list[EndpointEvent]:
        """Feed one VAD window; return the events it causes (usually none)."""
        if duration_ms <= 0:
            raise ValueError("duration_ms must be > 0")
        start = self._now_ms
        self._now_ms = end = start + duration_ms
        p = self.params
        in_run = self._run_start_ms is not None
        voiced = speech_probability >= (p.continue_threshold if in_run else p.start_threshold)
        if voiced:
            if not in_run:
                self._run_start_ms, self._run_ms = start, 0
            self._run_ms += duration_ms
        else:
            self._run_start_ms, self._run_ms = None, 0

        if self._state is _State.IDLE:
            return self._idle(voiced, end)
        if self._state is _State.SPEECH:
            events = self._speech(voiced, end)
        else:
            events = self._pause(voiced, end)
        if self._state is not _State.IDLE and end - self._turn_start_ms >= p.max_turn_ms:
            events.append(self._end_turn(end, "max_length"))
        return events

    def hint(self, text: str, pause_id: int | None = None) -> list[EndpointEvent]:
        """Speculative transcript of the turn so far, for the pause ``pause_id`` (from
        SilenceStarted). Sets this pause's wait; ends the turn at once if already exceeded.
        Ignored if the caller has resumed speaking or the pause is not the current one."""
        if self._state is not _State.PAUSE:
            return []
        if pause_id is not None and pause_id != self._pause_id:
            return []
        self._text_class = classify_text(text)
        logger.debug("endpoint hint %r -> %s", text, self._text_class)
        if self._run_start_ms is None and self._silence_ms() >= self.current_wait_ms:
            return [self._end_turn(self._now_ms, "silence")]
        return []

    # --- transitions -----------------------------------------------------------------------
    def _idle(self, voiced: bool, end: int) -> list[EndpointEvent]:
        if not voiced or self._run_ms < self.params.min_speech_ms:
            return []
        self._state = _State.SPEECH
        self._turn_start_ms = self._run_start_ms
        self._last_voiced_end_ms = end
        return [SpeechStarted(at_ms=self._turn_start_ms)]

    def _speech(self, voiced: bool, end: int) -> list[EndpointEvent]:
        if voiced:
            self._last_voiced_end_ms = end
            return []
        self._state = _State.PAUSE
        self._pause_id += 1
        self._silence_announced = False
        self._text_class = None
        return self._check_silence()

    def _pause(self, voiced: bool, end: int) -> list[EndpointEvent]:
        if voiced:
            if self._run_ms < self.params.resume_min_ms:
                return []  # a blip so far: hold the decision until it proves itself or stops
            events: list[EndpointEvent] = []
            if self._silence_announced:
                pause_ms = self._run_start_ms - self._last_voiced_end_ms
                events.append(SpeechResumed(self._run_start_ms, pause_ms, self._pause_id))
            self._state = _State.SPEECH
            self._last_voiced_end_ms = end
            self._text_class = None
            return events
        return self._check_silence()

    def _silence_ms(self) -> int:
        return self._now_ms - self._last_voiced_end_ms

    def _check_silence(self) -> list[EndpointEvent]:
        silence = self._silence_ms()
        events: list[EndpointEvent] = []
        if not self._silence_announced and silence >= self.params.speculate_after_ms:
            self._silence_announced = True
            events.append(SilenceStarted(self._last_voiced_end_ms, self._pause_id))
        if silence >= self.current_wait_ms:
            events.append(self._end_turn(self._now_ms, "silence"))
        return events

    def _end_turn(self, decided_ms: int, reason: Literal["silence", "max_length"]) -> TurnEnded:
        event = TurnEnded(
            start_ms=self._turn_start_ms,
            end_of_speech_ms=self._last_voiced_end_ms,
            endpoint_wait_ms=decided_ms - self._last_voiced_end_ms,
            reason=reason,
            text_class=self._text_class,
        )
        self.reset()
        return event


# --- transcript classification ----------------------------------------------------------------


def classify_text(text: str) -> TextClass:
    """How a (speculative) transcript ends, from ``turns.text.text_signal``:

    - ``digits``: a number is being read out ("... zero five four", "054-123", "... zero")
    - ``incomplete``: trailing "...", ",", "-", ":" or a connective/filler ("and", "um", "the")
    - ``complete``: a question, a closing phrase, a short answer or a full sentence
    - ``neutral``: none of these (e.g. a whole 10-digit number, no punctuation); also empty text
    """
    signal = text_signal(text)
    if signal.finished:
        return "complete"
    if signal.reason in ("digits", "expects_more"):
        return "digits"
    if signal.unfinished and signal.reason != "no_words":
        return "incomplete"
    return "neutral"
