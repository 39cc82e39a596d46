"""The work of one pause in the caller's turn: transcribe the turn so far and score it with the
turn model, in parallel, and hand each answer back as it comes (call/turns.py).

Both run off the event loop (the STT worker; the turn model in a thread on the last 8 s of the
16 kHz audio). A Resume cancels the pause's work; the commit reuses its transcript.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Protocol, TypeVar

import numpy as np

from ..stt.whisper import Transcript
from .deps import TurnScorer
from .listener import Listener

log = logging.getLogger(__name__)
T = TypeVar("T")


class PauseHost(Protocol):
    listener: Listener

    @property
    def turn_model(self) -> TurnScorer | None: ...
    def spawn(self, coro: Coroutine[object, object, T], name: str) -> asyncio.Task[T]: ...
    async def recognize(self, audio: np.ndarray) -> Transcript: ...
    def speculative_transcript(self, pause_id: int, end_ms: int,
                               transcript: Transcript) -> None: ...
    def turn_probability(self, pause_id: int, p: float | None) -> None: ...


class PauseWork:
    def __init__(self, host: PauseHost, pause_id: int, start_ms: int, end_ms: int) -> None:
        self.host, self.pause_id, self.start_ms, self.end_ms = host, pause_id, start_ms, end_ms
        audio = host.listener.audio(start_ms, end_ms)
        self._stt = host.spawn(self._transcribe(audio), "pause-stt")
        model = host.turn_model
        self._score = (host.spawn(self._predict(model, audio), "pause-turn-model")
                       if model is not None else None)

    async def _transcribe(self, audio: np.ndarray) -> Transcript:
        transcript = await self.host.recognize(audio)
        self.host.speculative_transcript(self.pause_id, self.end_ms, transcript)
        return transcript

    async def _predict(self, model: TurnScorer, audio: np.ndarray) -> None:
        try:
            p = await model.predict_async(audio)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - without the model the turn ends on text and silence
            log.exception("the turn model failed; deciding on transcript and silence")
            p = None
        self.host.turn_probability(self.pause_id, p)

    async def transcript(self) -> Transcript | None:
        """This pause's transcript (waits for it); None if the work was cancelled."""
        await asyncio.wait([self._stt])
        return None if self._stt.cancelled() else self._stt.result()

    def cancel(self) -> None:
        self._stt.cancel()
        if self._score is not None:
            self._score.cancel()
