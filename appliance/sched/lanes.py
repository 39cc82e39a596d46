"""The speech models as each kind of work sees them: every job goes to the CPU scheduler in the
lane of that work (sched/cpu.py). Built once by appliance.compose.

* `LaneRecognizer`: Whisper for a call's turns (Lane.LIVE);
* `LaneScorer`: the turn model at a pause (Lane.SPECULATIVE: the caller may go on);
* `NoteRecognizer`: Whisper for voice notes (Lane.NOTE), one job per 30 s window, so a live
  turn that arrives while a 300 s note is being transcribed waits for one window at most (and
  for none when a second worker is free, since notes use one worker at a time). faster-whisper
  decodes a long recording window by window too when it runs without timestamps, as we do.
"""

from __future__ import annotations

import math
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..stt.whisper import WINDOW_SAMPLES, Transcript


class WhisperLike(Protocol):
    async def transcribe_async(self, pcm: np.ndarray, language_hint: str | None = None, *,
                               executor: Executor | None = None) -> Transcript: ...


class ScorerLike(Protocol):
    async def predict_async(self, pcm_16k: np.ndarray, *, executor: Executor | None = None
                            ) -> float | None: ...


@dataclass(frozen=True)
class LaneRecognizer:
    """call/deps.Recognizer: Whisper, each turn one job in ``executor``'s lane."""

    stt: WhisperLike
    executor: Executor

    async def transcribe_async(self, pcm: np.ndarray, language_hint: str | None = None
                               ) -> Transcript:
        return await self.stt.transcribe_async(pcm, language_hint, executor=self.executor)


@dataclass(frozen=True)
class LaneScorer:
    """call/deps.TurnScorer: the turn model, each score one job in ``executor``'s lane."""

    model: ScorerLike
    executor: Executor

    async def predict_async(self, pcm_16k: np.ndarray, *, executor: Executor | None = None
                            ) -> float | None:
        return await self.model.predict_async(pcm_16k, executor=self.executor)


@dataclass(frozen=True)
class NoteRecognizer:
    """Whisper for a voice note: one low-priority job per ``window`` samples (16 kHz)."""

    stt: WhisperLike
    executor: Executor
    window: int = WINDOW_SAMPLES

    async def transcribe_async(self, pcm: np.ndarray, language_hint: str | None = None
                               ) -> Transcript:
        parts: list[Transcript] = []
        for start in range(0, max(len(pcm), 1), self.window):
            part = await self.stt.transcribe_async(pcm[start:start + self.window],
                                                   language_hint, executor=self.executor)
            if part.accepted and part.text:
                language_hint = part.language        # the note's language, once heard
            parts.append(part)
        return join_transcripts(parts)


def join_transcripts(parts: list[Transcript]) -> Transcript:
    """One transcript for consecutive windows: the accepted windows' words in order; rejected
    only when no window was accepted (then with the first window's reason)."""
    accepted = [p for p in parts if p.accepted and p.text]
    if not accepted:
        first = parts[0]
        return Transcript("", first.language, first.language_probability, first.no_speech_prob,
                          first.avg_logprob, sum(p.audio_ms for p in parts),
                          sum(p.compute_ms for p in parts), first.rejected_reason or "empty")
    head = accepted[0]
    weights = [max(p.audio_ms, 1) for p in accepted]
    logprob = sum(p.avg_logprob * w for p, w in zip(accepted, weights)) / sum(weights)
    return Transcript(
        text=" ".join(p.text for p in accepted), language=head.language,
        language_probability=head.language_probability,
        no_speech_prob=min((p.no_speech_prob for p in accepted
                            if not math.isnan(p.no_speech_prob)), default=math.nan),
        avg_logprob=logprob, audio_ms=sum(p.audio_ms for p in parts),
        compute_ms=round(sum(p.compute_ms for p in parts), 2))
