"""End of turn: a pure, clock-free state machine that decides when the caller has finished.

Silence alone cannot be both fast and safe, so the machine asks for the evidence early and sets
each pause's wait from it. Feed it, in audio-timeline order:

- ``frame(p, duration_ms)`` for every VAD window (Silero: 32 ms; any duration works), where ``p``
  is the speech probability (``1.0``/``0.0`` for a plain voiced flag);
- ``transcript(text, pause_id)`` when the speculative transcript of the audio up to the pause is
  ready (Whisper on the turn so far);
- ``turn_probability(p, pause_id)`` when the smart-turn model's P(turn complete) for the same audio
  is ready (None if it could not run);
- ``expect(...)`` when the bot asks something (``text.expectation_of(bot_question)``).

It returns events: ``TurnStarted``; ``Pause`` after ``pause_ms`` of silence (start STT, the turn
model and a speculative reply now, on the audio up to ``Pause.at_ms``); ``Resume`` (the caller
went on: cancel that work); ``Commit`` (the turn is over: release the reply) carrying a frozen
``TurnDecision`` that says which signal ended the turn and after how long.

The wait for the current pause (``required_silence_ms``), measured from the end of the last voiced
window, follows ``TurnParams.wait_for``:

    text \\ model            done (p >= 0.7)     unsure / none       not done (p < 0.3)
    strong ("?", "bye")     200  model+text     350  text           450  text
    weak (a plain sentence) 350  model+text     500  text           700  silence
    neutral / pending       500  model          700  silence        900  silence
    unfinished              1500 silence_max    1500 silence_max    1500 silence_max

The model alone never ends a turn fast: on 8 kHz phone audio it scores many finished turns low and
some pauses inside a turn high (bench/results/turn_model.md), so the transcript leads and the
model shortens or lengthens the wait. The caller teaches it too: a pause they went on after (a
``Resume``, or a new turn starting within ``adapt_gap_ms`` of a committed turn's end of speech:
that commit was early) sets a floor for the caller's next turns, the longest such pause plus
``adapt_margin_ms`` (at most ``max_wait_ms``; ended_by "caller_pauses"), so a caller who reads
things out with one-second pauses is cut off once, not at every turn. The floor is the longest
such pause of the whole call (counting only the last few turns measured worse:
bench/results/turn_taking_pause_floor.md). It starts at the next turn: within a turn the text
already says whether more is coming. "pending" (a transcript was asked for but has not come)
never waits less than ``base_wait_ms``. A signal that arrives after its wait has already passed commits at once; signals for an older
pause are ignored. A voiced blip shorter than ``resume_min_ms`` counts as silence, but no turn is
committed while such a blip is going on. Voicing uses hysteresis (open at ``start_threshold``,
hold at ``continue_threshold``), as in ``audio/bargein.py``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from .text import Expect, TextSignal, text_signal

EndedBy = Literal["model+text", "model", "text", "silence", "silence_max", "max_length",
                  "caller_pauses"]


@dataclass(frozen=True)
class TurnParams:
    start_threshold: float = 0.5  # VAD probability that opens a voiced run (Silero default)
    continue_threshold: float = 0.35  # keeps a run voiced
    min_speech_ms: int = 120  # voiced run before TurnStarted: a click or cough is not a turn
    resume_min_ms: int = 64  # voiced run that ends a pause; shorter blips count as silence
    pause_ms: int = 160  # silence before Pause (speculative STT, turn model, reply)
    fast_wait_ms: int = 200  # the model says finished AND the text does (strongly)
    quick_wait_ms: int = 350  # model finished + a plain sentence; or strong text alone
    text_wait_ms: int = 450  # strong text ("?", "bye", "yes") that the model doubts
    model_wait_ms: int = 500  # the model alone; or a plain sentence the model is unsure of
    base_wait_ms: int = 700  # nothing decisive (also: the transcript has not come yet)
    doubt_wait_ms: int = 900  # the model says unfinished and the text says nothing
    max_wait_ms: int = 1500  # the text says unfinished (digits, "um", "and", "my number is")
    model_done: float = 0.7  # P(complete) at or above: the model says finished
    model_not_done: float = 0.3  # P(complete) below: the model says unfinished
    max_turn_ms: int = 30_000  # onset to forced end (Whisper's window is 30 s)
    pending_wait_ms: int = 0  # least wait while the transcript has not come (0: base_wait_ms)
    adapt_margin_ms: int = 150  # later waits >= the caller's longest mid-turn pause + this (0: off)
    adapt_gap_ms: int = 1500  # a turn starting this soon after a commit's end of speech: too early

    def __post_init__(self) -> None:
        if not 0.0 <= self.continue_threshold <= self.start_threshold <= 1.0:
            raise ValueError("need 0 <= continue_threshold <= start_threshold <= 1")
        if not 0.0 <= self.model_not_done <= self.model_done <= 1.0:
            raise ValueError("need 0 <= model_not_done <= model_done <= 1")
        if min(self.min_speech_ms, self.resume_min_ms, self.pause_ms) < 0:
            raise ValueError("durations must be >= 0")
        waits = (self.fast_wait_ms, self.quick_wait_ms, self.text_wait_ms, self.model_wait_ms,
                 self.base_wait_ms, self.doubt_wait_ms, self.max_wait_ms)
        if list(waits) != sorted(waits) or waits[0] <= 0:
            raise ValueError("need 0 < fast <= quick <= text <= model <= base <= doubt <= max")
        if self.max_turn_ms <= 0:
            raise ValueError("max_turn_ms must be > 0")
        if min(self.adapt_margin_ms, self.adapt_gap_ms) < 0:
            raise ValueError("adapt_margin_ms and adapt_gap_ms must be >= 0")

    def wait_for(self, signal: TextSignal | None, model_p: float | None,
                 text_pending: bool = False) -> tuple[int, EndedBy]:
        """The silence (ms) that ends a pause with this evidence, and what ends it then."""
        text = "neutral" if signal is None else signal.level
        if text == "unfinished":
            return self.max_wait_ms, "silence_max"
        model = ("unsure" if model_p is None or self.model_not_done <= model_p < self.model_done
                 else "done" if model_p >= self.model_done else "not_done")
        table: dict[tuple[str, str], tuple[int, EndedBy]] = {
            ("strong", "done"): (self.fast_wait_ms, "model+text"),
            ("strong", "unsure"): (self.quick_wait_ms, "text"),
            ("strong", "not_done"): (self.text_wait_ms, "text"),
            ("weak", "done"): (self.quick_wait_ms, "model+text"),
            ("weak", "unsure"): (self.model_wait_ms, "text"),
            ("weak", "not_done"): (self.base_wait_ms, "silence"),
            ("neutral", "done"): (self.model_wait_ms, "model"),
            ("neutral", "unsure"): (self.base_wait_ms, "silence"),
            ("neutral", "not_done"): (self.doubt_wait_ms, "silence"),
        }
        wait, ended_by = table[(text, model)]
        if text_pending:
            return max(wait, self.pending_wait_ms or self.base_wait_ms), ended_by
        return wait, ended_by


@dataclass(frozen=True)
class TurnDecision:
    """Why and when a turn was committed. Times are on the audio timeline, in ms."""
    start_ms: int  # onset: start of the first voiced window of the turn
    end_of_speech_ms: int  # end of the last voiced window
    decided_ms: int  # when the machine committed (end of speech + silence waited)
    ended_by: EndedBy  # the evidence that set the wait that ran out
    wait_ms: int  # the required silence in force when the turn was committed
    speculative_starts: int  # Pause events in this turn (speculative attempts started)
    model_p: float | None  # the turn model's P(complete) for the final pause, if it answered
    text_signal: TextSignal | None  # the transcript's signal for the final pause, if it came
    text: str | None  # that transcript
    pause_id: int  # the final pause: its speculative reply is the one to release

    @property
    def silence_ms(self) -> int:
        """Silence actually waited after the end of speech (>= wait_ms unless max_length)."""
        return self.decided_ms - self.end_of_speech_ms


@dataclass(frozen=True)
class TurnStarted:
    at_ms: int  # onset of the turn


@dataclass(frozen=True)
class Pause:
    at_ms: int  # end of the last voiced window: transcribe / score the audio up to here
    pause_id: int  # pass back with transcript() and turn_probability()


@dataclass(frozen=True)
class Resume:
    at_ms: int  # start of the voiced run that ended the pause
    pause_ms: int  # how long the pause lasted
    pause_id: int  # the pause that is over: cancel its speculative work


@dataclass(frozen=True)
class Commit:
    decision: TurnDecision


TurnEvent = TurnStarted | Pause | Resume | Commit


class _State(enum.Enum):
    IDLE = "idle"
    SPEECH = "speech"
    PAUSE = "pause"


class TurnDetector:
    """One call's end-of-turn state. Not thread-safe: feed it from one task."""

    def __init__(self, params: TurnParams = TurnParams(), start_ms: int = 0) -> None:
        self.params = params
        self._now_ms = start_ms
        self._pause_id = 0  # increases for every pause, across turns
        self._expect: Expect | None = None
        self._longest_hold_ms = 0  # the longest pause the caller went on after, this call
        self._floor_ms = 0  # the wait floor in force this turn (from the earlier turns)
        self._last_end_ms: int | None = None  # end of speech of the last committed turn
        self.reset()

    def reset(self, at_ms: int | None = None) -> None:
        """Back to IDLE, dropping any turn in progress. ``at_ms`` moves the timeline."""
        if at_ms is not None:
            self._now_ms = at_ms
        self._state = _State.IDLE
        self._run_start_ms: int | None = None  # start of the current voiced run
        self._run_ms = 0
        self._turn_start_ms = 0
        self._last_voiced_end_ms = 0
        self._pauses_in_turn = 0
        self._clear_pause_evidence()

    def _clear_pause_evidence(self) -> None:
        self._announced = False
        self._text: str | None = None
        self._signal: TextSignal | None = None
        self._model_p: float | None = None

    def expect(self, expect: Expect | None) -> None:
        """What the bot's last question asks for; applies to transcripts from now on."""
        self._expect = expect

    # --- read-only views -------------------------------------------------------------------
    @property
    def now_ms(self) -> int:
        return self._now_ms

    @property
    def in_turn(self) -> bool:
        return self._state is not _State.IDLE

    @property
    def end_of_speech_ms(self) -> int | None:
        return self._last_voiced_end_ms if self.in_turn else None

    @property
    def current_pause_id(self) -> int:
        """The latest pause (pass it back with signals for the pause going on now)."""
        return self._pause_id

    @property
    def required_silence_ms(self) -> int:
        """The adaptive wait of the current pause, from the evidence so far."""
        return self._wait()[0]

    @property
    def caller_pause_ms(self) -> int:
        """The longest pause this caller went on after before this turn (0: none)."""
        return self._floor_ms

    def _wait(self) -> tuple[int, EndedBy]:
        pending = self._announced and self._signal is None
        wait, ended_by = self.params.wait_for(self._signal, self._model_p, text_pending=pending)
        p = self.params
        if p.adapt_margin_ms and self._floor_ms:
            floor = min(p.max_wait_ms, self._floor_ms + p.adapt_margin_ms)
            if floor > wait:
                return floor, "caller_pauses"
        return wait, ended_by

    def _held(self, pause_ms: int) -> None:
        self._longest_hold_ms = max(self._longest_hold_ms, pause_ms)

    # --- inputs ----------------------------------------------------------------------------
    def frame(self, speech_probability: float, duration_ms: int) -> list[TurnEvent]:
        """Feed one VAD window; return the events it causes (usually none)."""
        if duration_ms <= 0:
            raise ValueError("duration_ms must be > 0")
        start, self._now_ms = self._now_ms, self._now_ms + duration_ms
        p = self.params
        in_run = self._run_start_ms is not None
        if speech_probability >= (p.continue_threshold if in_run else p.start_threshold):
            if not in_run:
                self._run_start_ms, self._run_ms = start, 0
            self._run_ms += duration_ms
        else:
            self._run_start_ms, self._run_ms = None, 0
        if self._state is _State.IDLE:
            return self._idle()
        events = self._speech() if self._state is _State.SPEECH else self._pause()
        if self.in_turn and self._now_ms - self._turn_start_ms >= p.max_turn_ms:
            events.append(self._commit("max_length", self._wait()[0]))
        return events

    def transcript(self, text: str, pause_id: int) -> list[TurnEvent]:
        """The speculative transcript of the turn up to pause ``pause_id``."""
        if not self._is_current(pause_id):
            return []
        self._text, self._signal = text, text_signal(text, self._expect)
        return self._check_silence()

    def turn_probability(self, p: float | None, pause_id: int) -> list[TurnEvent]:
        """The turn model's P(complete) for the audio up to pause ``pause_id``."""
        if not self._is_current(pause_id):
            return []
        if p is not None and not 0.0 <= p <= 1.0:
            raise ValueError("turn probability must be in [0, 1]")
        self._model_p = p
        return self._check_silence()

    # --- transitions -----------------------------------------------------------------------
    def _is_current(self, pause_id: int) -> bool:
        return self._state is _State.PAUSE and self._announced and pause_id == self._pause_id

    def _idle(self) -> list[TurnEvent]:
        if self._run_start_ms is None or self._run_ms < self.params.min_speech_ms:
            return []
        self._state = _State.SPEECH
        self._turn_start_ms = self._run_start_ms
        if self._last_end_ms is not None and \
                self._turn_start_ms - self._last_end_ms <= self.params.adapt_gap_ms:
            # the last commit was early: a pause of the turn it ended
            self._held(self._turn_start_ms - self._last_end_ms)
        self._last_end_ms = None
        self._floor_ms = self._longest_hold_ms
        self._last_voiced_end_ms = self._now_ms
        self._pauses_in_turn = 0
        return [TurnStarted(at_ms=self._turn_start_ms)]

    def _speech(self) -> list[TurnEvent]:
        if self._run_start_ms is not None:
            self._last_voiced_end_ms = self._now_ms
            return []
        self._state = _State.PAUSE
        self._pause_id += 1
        self._clear_pause_evidence()
        return self._check_silence()

    def _pause(self) -> list[TurnEvent]:
        if self._run_start_ms is None:
            return self._check_silence()
        if self._run_ms < self.params.resume_min_ms:
            return []  # a blip so far: hold the decision until it proves itself or stops
        events: list[TurnEvent] = []
        if self._announced:
            pause_ms = self._run_start_ms - self._last_voiced_end_ms
            self._held(pause_ms)
            events.append(Resume(self._run_start_ms, pause_ms, self._pause_id))
        self._state = _State.SPEECH
        self._last_voiced_end_ms = self._now_ms
        self._clear_pause_evidence()
        return events

    def _check_silence(self) -> list[TurnEvent]:
        if self._run_start_ms is not None:
            return []  # a blip is going on
        silence = self._now_ms - self._last_voiced_end_ms
        events: list[TurnEvent] = []
        if not self._announced and silence >= self.params.pause_ms:
            self._announced = True
            self._pauses_in_turn += 1
            events.append(Pause(self._last_voiced_end_ms, self._pause_id))
        wait, ended_by = self._wait()
        if silence >= wait:
            events.append(self._commit(ended_by, wait))
        return events

    def _commit(self, ended_by: EndedBy, wait: int) -> Commit:
        decision = TurnDecision(
            start_ms=self._turn_start_ms, end_of_speech_ms=self._last_voiced_end_ms,
            decided_ms=self._now_ms, ended_by=ended_by, wait_ms=wait,
            speculative_starts=self._pauses_in_turn, model_p=self._model_p,
            text_signal=self._signal, text=self._text, pause_id=self._pause_id)
        self._last_end_ms = self._last_voiced_end_ms
        self.reset()
        return Commit(decision)
