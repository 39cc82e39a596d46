"""Instant stand-ins for the three models of a call, with the real interfaces.

With these in place a turn costs only what the appliance itself does (VAD, endpointing, queues,
clause splitting, resampling and mu-law, the player, SQLite, the WebSocket), which is the
"overhead" of shared/notes/latency.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np

from appliance.conversation.events import ReplyDone, TextDelta
from appliance.conversation.gate import ReleaseGate
from appliance.stt.whisper import Transcript
from appliance.tts.piper import AudioPiece

TRANSCRIPT = "hello i would like an appointment"
REPLY = "Of course. Which day suits you best?"
CHARS_PER_S = 14.0      # speech rate of the stand-in voice
RATE = 22050            # Piper medium voices' sample rate


class InstantRecognizer:
    """``SpeechRecognizer.transcribe_async`` that answers at once."""

    def __init__(self, language: str = "en") -> None:
        self.language = language

    async def transcribe_async(self, pcm: np.ndarray, language_hint: str | None = None,
                               **_: Any) -> Transcript:
        return Transcript(TRANSCRIPT, language_hint or self.language, 1.0, 0.0, -0.1,
                          round(len(pcm) / 16), 0.0)


class InstantSpeaker:
    """``Speaker.synthesize``: 22.05 kHz audio of a realistic length, produced at once."""

    def __init__(self) -> None:
        t = np.arange(RATE * 60) / RATE
        self._tone = (3000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16)

    def synthesize(self, text: str, language: str | None = None) -> Iterator[AudioPiece]:
        if text.strip():
            samples = max(1, int(len(text) / CHARS_PER_S * RATE))
            yield AudioPiece(samples=self._tone[:samples], sample_rate_hz=RATE)

    def sample_rate_for(self, language: str | None = None) -> int:
        return RATE


class InstantConversation:
    """The real conversation (customer record, history, ...) whose reply is there at once."""

    def __init__(self, inner: Any) -> None:
        object.__setattr__(self, "_inner", inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._inner, name, value)

    async def reply(self, user_text: str, language: str | None = None,
                    gate: ReleaseGate | None = None) -> AsyncIterator[Any]:
        """The fixed answer at once; it stores nothing and runs no tool, so a speculative
        reply's gate has nothing to hold back."""
        yield TextDelta(REPLY)
        yield ReplyDone(REPLY, "instant", 0.0)

    async def mark_heard(self, heard_text: str, interrupted: bool) -> None:
        return None


class InstantEngine:
    """The real engine, except that its conversations answer at once (``open`` is real: it
    reads the customer record once per call)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def open(self, *args: Any, **kwargs: Any) -> InstantConversation:
        return InstantConversation(await self._inner.open(*args, **kwargs))

    def status(self) -> dict[str, Any]:
        return {"mode": "instant"}
