"""Text to phone audio: Piper in a worker thread -> anti-aliased resample to 8 kHz -> mu-law.

Piper yields one chunk per sentence; each is converted and handed to the player as soon as it
exists, so the caller hears the first words while the rest is synthesised. Fixed phrases (the
greeting, "are you still there?", "one moment") are synthesised once and cached.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor, Future
from typing import Awaitable, Callable, Iterator, Protocol, TypeVar, runtime_checkable

import numpy as np

from ..audio.codec import TELEPHONY_RATE_HZ, pcm16_to_ulaw
from ..audio.resample import Resampler
from .player import Piece, Player

log = logging.getLogger(__name__)
T = TypeVar("T")


class AudioPieceLike(Protocol):
    samples: np.ndarray   # int16 mono
    sample_rate_hz: int   # Hz


class SpeakerLike(Protocol):
    def synthesize(self, text: str, language: str | None = None) -> Iterator[AudioPieceLike]: ...


@runtime_checkable
class DueExecutor(Protocol):
    """An executor that orders jobs by when they are due (sched/cpu.py LaneExecutor)."""

    def submit_by(self, deadline: float | None, fn: Callable[[], T]) -> Future[T]: ...


# Piper's next chunk is due this long before the caller's queued audio runs out: a sentence
# takes ~60 ms per second of audio on this box, plus the wait behind a job already running.
DUE_MARGIN_S = 0.5


class PhoneSpeech:
    def __init__(self, speaker: SpeakerLike, executor: Executor | None = None) -> None:
        self._speaker = speaker
        self._executor = executor
        self._cache: dict[tuple[str, str | None], bytes] = {}

    def _chunks(self, text: str, language: str | None) -> Iterator[bytes]:
        """Blocking: mu-law chunks for `text`. Runs in a worker thread, one chunk per next()."""
        resampler: Resampler | None = None
        for piece in self._speaker.synthesize(text, language):
            samples = np.asarray(piece.samples, dtype=np.int16)
            if resampler is None:
                resampler = Resampler(piece.sample_rate_hz, TELEPHONY_RATE_HZ, dtype="int16")
            out = resampler.process(samples)
            if len(out):
                yield pcm16_to_ulaw(out.astype("<i2").tobytes())
        if resampler is not None:
            tail = resampler.flush()
            if len(tail):
                yield pcm16_to_ulaw(tail.astype("<i2").tobytes())

    def _next_chunk(self, loop: asyncio.AbstractEventLoop, iterator: Iterator[bytes],
                    player: Player) -> Awaitable[bytes | None]:
        """The next mu-law chunk, from a worker; due when the audio queued before it would
        run out (a first clause: now), so the scheduler serves callers who hear nothing yet
        before a reply that still has seconds of audio queued."""
        executor = self._executor
        if isinstance(executor, DueExecutor):
            due = time.perf_counter() + max(0.0, player.queued_s() - DUE_MARGIN_S)
            return asyncio.wrap_future(executor.submit_by(due, lambda: next(iterator, None)))
        return loop.run_in_executor(executor, next, iterator, None)

    async def speak(self, text: str, language: str | None, piece: Piece, player: Player,
                    ) -> float | None:
        """Synthesise into `piece` as audio arrives; returns the time of the first audio."""
        loop = asyncio.get_running_loop()
        key = (text, language)
        if key in self._cache:
            piece.add_audio(self._cache[key])
            piece.finish()
            player.audio_added()
            return time.perf_counter()
        iterator = self._chunks(text, language)
        first: float | None = None
        try:
            while True:
                chunk = await self._next_chunk(loop, iterator, player)
                if chunk is None:
                    break
                if first is None:
                    first = time.perf_counter()
                piece.add_audio(chunk)
                player.audio_added()
        finally:
            piece.finish()
            player.audio_added()
            try:
                iterator.close()
            except ValueError:  # cancelled while the worker thread is inside next(): it ends
                pass            # on its own and its chunk is dropped
        return first

    async def synthesize(self, text: str, language: str | None = None) -> bytes:
        """The whole text as mu-law, not cached (a reply's sentence, for a <Play> clip)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, lambda: b"".join(self._chunks(text, language)))

    async def render(self, text: str, language: str | None = None) -> bytes:
        """The whole phrase as mu-law, cached (for fixed phrases)."""
        key = (text, language)
        if key not in self._cache:
            loop = asyncio.get_running_loop()
            self._cache[key] = await loop.run_in_executor(
                self._executor, lambda: b"".join(self._chunks(text, language)))
        return self._cache[key]
