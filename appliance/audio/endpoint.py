"""End-of-turn detection for the current call loop: the text-only face of ``turns.decision``.

``EndpointDetector`` keeps the interface ``call/session.py`` uses (``process(p, duration_ms)``,
``hint(text, pause_id)``, events ``SpeechStarted`` / ``SilenceStarted`` / ``SpeechResumed`` /
``TurnEnded``) and runs ``appliance.turns.decision.TurnDetector`` underneath, with no turn model and
three waits: ``short_wait_ms`` after a finished-sounding transcript, ``base_wait_ms`` when it says
nothing (or has not come), ``long_wait_ms`` while it is unfinished (digits, "and", "um", ",").
When the call's turn loop moves to ``TurnDetector`` itself (and the smart-turn model), this
adapter can go. Pure and clock-free; the audio timeline is the sum of the durations fed since
``start_ms``. See ``turns/decision.py`` for voicing, blips and pause ids.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from ..turns.decision import Commit, Pause, Resume, TurnDetector, TurnEvent, TurnParams
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

    def turn_params(self) -> TurnParams:
        """The same behaviour as ``TurnParams``: no model, so only three waits apply."""
        short, base, long = self.short_wait_ms, self.base_wait_ms, self.long_wait_ms
        return TurnParams(
            start_threshold=self.start_threshold, continue_threshold=self.continue_threshold,
            min_speech_ms=self.min_speech_ms, resume_min_ms=self.resume_min_ms,
            pause_ms=self.speculate_after_ms, fast_wait_ms=short, quick_wait_ms=short,
            text_wait_ms=short, model_wait_ms=short, base_wait_ms=base, doubt_wait_ms=long,
            max_wait_ms=long, max_turn_ms=self.max_turn_ms)


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


class EndpointDetector:
    def __init__(self, params: EndpointParams = EndpointParams(), start_ms: int = 0) -> None:
        self.params = params
        self._turns = TurnDetector(params.turn_params(), start_ms)

    def reset(self, at_ms: int | None = None) -> None:
        """Back to IDLE, dropping any turn in progress. ``at_ms`` moves the timeline."""
        self._turns.reset(at_ms)

    @property
    def now_ms(self) -> int:
        """End of the last window fed, on the audio timeline."""
        return self._turns.now_ms

    @property
    def in_turn(self) -> bool:
        return self._turns.in_turn

    @property
    def end_of_speech_ms(self) -> int | None:
        """End of the last voiced window of the current turn (None outside a turn)."""
        return self._turns.end_of_speech_ms

    @property
    def current_wait_ms(self) -> int:
        return self._turns.required_silence_ms

    def process(self, speech_probability: float, duration_ms: int) -> list[EndpointEvent]:
        """Feed one VAD window; return the events it causes (usually none)."""
        return self._translate(self._turns.frame(speech_probability, duration_ms))

    def hint(self, text: str, pause_id: int | None = None) -> list[EndpointEvent]:
        """Speculative transcript of the turn so far, for the pause ``pause_id`` (from
        SilenceStarted; None: the current pause). Sets this pause's wait; ends the turn at once
        if already exceeded. Ignored if the caller has resumed or the pause is not current."""
        pause = self._turns.current_pause_id if pause_id is None else pause_id
        logger.debug("endpoint hint %r -> %s", text, classify_text(text))
        return self._translate(self._turns.transcript(text, pause))

    @staticmethod
    def _translate(events: list[TurnEvent]) -> list[EndpointEvent]:
        out: list[EndpointEvent] = []
        for event in events:
            if isinstance(event, Pause):
                out.append(SilenceStarted(event.at_ms, event.pause_id))
            elif isinstance(event, Resume):
                out.append(SpeechResumed(event.at_ms, event.pause_ms, event.pause_id))
            elif isinstance(event, Commit):
                d = event.decision
                out.append(TurnEnded(
                    start_ms=d.start_ms, end_of_speech_ms=d.end_of_speech_ms,
                    endpoint_wait_ms=d.silence_ms,
                    reason="max_length" if d.ended_by == "max_length" else "silence",
                    text_class=None if d.text is None else classify_text(d.text)))
            else:
                out.append(SpeechStarted(event.at_ms))
        return out


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
