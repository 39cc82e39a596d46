"""Caller audio in: mu-law 8 kHz -> 16 kHz float -> Silero VAD windows, plus recent audio for STT.

The timeline is the audio itself (samples received), starting at the first media frame's
timestamp, so end_of_speech is on Twilio's media clock as latency.md defines it. The last
`keep_s` seconds are kept so any span of the current turn can be transcribed.

After ~1 s of silence the VAD's LSTM state is reset once (the audio context stays): the state
the caller's last words left made Silero slow to hear their next onset (p ~0.45 instead of ~0.8
for "Does the ..."), which held a barge-in's `clear` back by up to ~650 ms
(bench/results/turn_taking_bargein.md). pipecat resets Silero's state every 5 s for the same
kind of drift.
"""

from __future__ import annotations

import numpy as np

from ..audio.codec import ulaw_to_float32
from ..audio.resample import make_resampler
from ..audio.vad import VAD_RATE_HZ, WINDOW_MS, SileroVad

SAMPLES_PER_MS = VAD_RATE_HZ // 1000
QUIET_P = 0.1                    # a VAD window this unlikely to be speech is silence
RESET_AFTER_QUIET_WINDOWS = 31   # ~1 s of such windows in a row resets the VAD's LSTM state


class Listener:
    def __init__(self, vad: SileroVad, start_ms: int = 0, keep_s: float = 40.0) -> None:
        self._vad = vad.stream()
        self._up = make_resampler(8000, VAD_RATE_HZ, dtype="float32")
        self.start_ms = start_ms
        self._keep = int(keep_s * VAD_RATE_HZ)
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = 0          # sample index (since start) of _buf[0]
        self._total = 0              # samples received since start
        self._quiet_windows = 0      # consecutive silent VAD windows

    @property
    def now_ms(self) -> int:
        return self.start_ms + self._total // SAMPLES_PER_MS

    def feed(self, ulaw: bytes) -> list[float]:
        """Blocking (run it off the loop): one speech probability per completed 32 ms window."""
        samples = self._up.process(ulaw_to_float32(ulaw))
        self._buf = np.concatenate([self._buf, samples])
        self._total += len(samples)
        if len(self._buf) > self._keep * 1.5:
            drop = len(self._buf) - self._keep
            self._buf = self._buf[drop:]
            self._buf_start += drop
        probabilities = self._vad.process(samples)
        for p in probabilities:
            self._quiet_windows = self._quiet_windows + 1 if p < QUIET_P else 0
            if self._quiet_windows == RESET_AFTER_QUIET_WINDOWS:
                self._vad.reset_state()      # once per silence: the next words start afresh
        return probabilities

    def audio(self, start_ms: int, end_ms: int, pad_ms: int = 200) -> np.ndarray:
        """16 kHz float32 audio between two timeline points, with a little padding."""
        lo = max(0, (start_ms - pad_ms - self.start_ms) * SAMPLES_PER_MS - self._buf_start)
        hi = max(0, (end_ms + pad_ms - self.start_ms) * SAMPLES_PER_MS - self._buf_start)
        return self._buf[lo:hi].copy()


__all__ = ["Listener", "WINDOW_MS"]
