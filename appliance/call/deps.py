"""What one streamed call needs, typed: built once by appliance.compose, shared by every call.

A call is `CallSession(deps, ws, start, admission)`; it reports through `deps.observer` (see
call/events.py) and stores its record through `deps.store` (call/record.py). Nothing else of
the process is reachable from a call.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..transfer import TransferDecision
from ..audio.vad import SileroVad
from ..config import CallSettings
from ..conversation.conversation import Conversation
from ..conversation.memory import Customer
from ..stt.whisper import Transcript
from .events import CallObserver
from .phrases import PhraseBook, base_language, phrase_book
from .record import CallStore
from .speech import PhoneSpeech


class Clock(Protocol):
    def __call__(self) -> float:
        """Seconds, monotonic (time.monotonic in production)."""
        ...


class Recognizer(Protocol):
    async def transcribe_async(self, pcm: np.ndarray, language_hint: str | None = None
                               ) -> Transcript: ...


class TurnScorer(Protocol):
    async def predict_async(self, pcm_16k: np.ndarray, *, executor: Executor | None = None
                            ) -> float | None:
        """P(the caller has finished the turn) from the turn's 16 kHz audio."""
        ...


class ConversationOpener(Protocol):
    async def open(self, phone: str, channel: str, call_id: int | None = None
                   ) -> Conversation: ...


@dataclass(frozen=True)
class CallConfig:
    """The settings a call reads (a slice of appliance.config.Settings)."""

    call: CallSettings
    greeting: str
    language: str                      # the business's language, until the caller's is known
    languages: tuple[str, ...]         # what speech recognition may switch to
    transfer_numbers: frozenset[str]
    operator_key: str                  # DTMF digit asking for a person ("" = none)
    phrases: PhraseBook = field(default_factory=lambda: phrase_book({}))

    def phrase(self, key: str, language: str | None) -> str:
        """A fixed phrase in `language`; the greeting of the business's own language is
        `greeting` (config.ini's [business] greeting)."""
        if key == "greeting" and base_language(language) == base_language(self.language):
            return self.greeting
        return self.phrases.text(key, language)


@dataclass(frozen=True)
class CallDeps:
    config: CallConfig
    vad: SileroVad
    stt: Recognizer
    speech: PhoneSpeech
    engine: ConversationOpener
    store: CallStore
    observer: CallObserver
    audio_executor: Executor
    decide_transfer: Callable[[], TransferDecision]        # may the caller be put through now?
    enrich: Callable[[Customer], Awaitable[Customer]] | None = None   # CRM lookup, if set up
    after_call: Callable[[int], None] | None = None        # summary to the owner (call_id)
    clock: Clock = time.monotonic
    turn_model: TurnScorer | None = None                   # smart-turn (None: text + silence)
