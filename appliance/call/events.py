"""What a streamed call reports, as it happens: a small set of frozen events, one callback.

Every event carries the call's database id (`call_id`) and a time `at` in seconds on the call's
injected clock (`time.monotonic()` in production, shared by every process on the box). Media
times (`*_ms`) are milliseconds on Twilio's media clock (0 = the first audio frame of the call).

The session calls one `CallObserver`; `CallEvents` fans an event out to every subscriber (the
logs, the benchmarks, the tests, a dashboard): `services.call_events.subscribe(fn)`. A
subscriber must be quick and must not block: it runs on the event loop, inside the call. One
that raises is logged and the call goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from .timing import TurnTimes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallStarted:
    call_id: int
    at: float
    call_sid: str
    stream_sid: str
    caller: str          # E.164; mask it before logging (appliance.logs.mask_phone)
    mode: str            # "greeting" or "after_dial"


@dataclass(frozen=True)
class SpeechStarted:
    call_id: int
    at: float
    start_ms: int        # media clock: onset of the caller's speech


@dataclass(frozen=True)
class SpeechEnded:
    call_id: int
    at: float            # when the turn was declared over
    start_ms: int
    end_of_speech_ms: int
    endpoint_wait_ms: int


@dataclass(frozen=True)
class TurnDecided:
    """The caller's turn is over (appliance.turns.decision): why, and what speculation cost."""

    call_id: int
    at: float
    start_ms: int
    end_of_speech_ms: int
    ended_by: str        # model+text, model, text, silence, silence_max, max_length,
                         # caller_pauses
    wait_ms: int         # the adaptive silence required for the final pause
    silence_ms: int      # the silence actually waited (audio time)
    model_p: float | None            # smart-turn P(complete) for the final pause
    speculative_starts: int          # replies started in this turn's pauses
    speculative_cancelled: int       # ... cancelled (caller went on / said something else)
    released: bool                   # the reply spoken is a speculative one, released now


@dataclass(frozen=True)
class TurnTranscribed:
    call_id: int
    at: float
    text: str
    language: str | None


@dataclass(frozen=True)
class ReplyStarted:
    call_id: int
    at: float
    reply_id: int
    turn_index: int      # 0 for a fixed phrase (greeting, prompts)


@dataclass(frozen=True)
class AudioSent:
    """The first frame of one piece of a reply (a clause, a filler) went to Twilio."""

    call_id: int
    at: float
    reply_id: int
    text: str
    first_of_reply: bool
    filler: bool


@dataclass(frozen=True)
class BargeIn:
    call_id: int
    at: float            # when `clear` went out
    onset_at: float      # the caller's speech onset, media clock converted to the call's clock


@dataclass(frozen=True)
class TurnCompleted:
    call_id: int
    at: float
    turn_index: int
    reply_id: int
    transcript: str
    language: str | None
    reply_text: str
    heard_text: str
    interrupted: bool
    timings: TurnTimes   # per-stage times; `timings.as_row()` gives the stored milliseconds
    decided: TurnDecided | None = None   # how the turn ended (None: not from the detector)


@dataclass(frozen=True)
class ToolRan:
    """The conversation asked the call to act (transfer, hang up, take a message)."""

    call_id: int
    at: float
    kind: str
    target: str


@dataclass(frozen=True)
class CallEnded:
    call_id: int
    at: float
    call_sid: str
    outcome: str         # completed, transferred, caller_hung_up, failed
    next_action: str | None
    transfer_to: str | None


CallEvent = (CallStarted | SpeechStarted | SpeechEnded | TurnDecided | TurnTranscribed
             | ReplyStarted | AudioSent | BargeIn | TurnCompleted | ToolRan | CallEnded)
CallObserver = Callable[[CallEvent], None]


class CallEvents:
    """The fan-out hub: itself a CallObserver, with any number of subscribers."""

    def __init__(self) -> None:
        self._subscribers: list[CallObserver] = []

    def subscribe(self, observer: CallObserver) -> Callable[[], None]:
        """Add `observer`; returns the function that removes it again."""
        self._subscribers.append(observer)
        return lambda: self._subscribers.remove(observer) if observer in self._subscribers \
            else None

    def __call__(self, event: CallEvent) -> None:
        for observer in list(self._subscribers):
            try:
                observer(event)
            except Exception:
                log.exception("call event subscriber %r failed on %s", observer,
                              type(event).__name__)
