"""WhatsApp voice notes for the media tests: a real OGG/Opus note made from a WAV file (PyAV),
and a speech recogniser stand-in that records the audio it was given."""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np


def ogg_opus(wav_path: Path, rate: int = 16000) -> bytes:
    """A WhatsApp-style voice note (OGG container, Opus codec) made from a WAV file."""
    with wave.open(str(wav_path)) as w:
        source_rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=rate)
        stream.layout = "mono"
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = source_rate
        for resampled in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(resampled):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


@dataclass(frozen=True)
class FakeTranscript:
    text: str
    language: str
    rejected_reason: str | None = None


class RecordingStt:
    """transcribe_async as SpeechRecognizer has it; records the audio it was given."""

    def __init__(self, transcript: FakeTranscript) -> None:
        self.transcript = transcript
        self.calls: list[tuple[np.ndarray, str | None]] = []

    async def transcribe_async(self, pcm: np.ndarray, language_hint: str | None = None):
        self.calls.append((pcm, language_hint))
        return self.transcript
