"""Streaming, anti-aliased sample-rate conversion for mono audio.

Two implementations with one interface (``process`` / ``flush`` / ``reset``):

- ``Resampler``: any ratio, built on ``soxr.ResampleStream``. Used for Piper's 16 kHz /
  22.05 kHz output -> 8 kHz for Twilio. Measured (python-soxr 1.1, 20 ms chunks): alias
  rejection of a 5 kHz tone going 16 kHz -> 8 kHz about -146 dB, flat to 3.4 kHz. But libsoxr
  works in blocks, so output trails input by ~63 ms on average (12-115 ms sawtooth) at every
  quality except QQ (which has no real anti-aliasing). Harmless for TTS, which arrives a sentence
  at a time, but it would add that much to every endpoint and barge-in decision on the caller path.
- ``Upsampler2x``: exact 2x (8 kHz -> 16 kHz, caller audio -> VAD/STT) with a 79-tap
  Kaiser-windowed sinc in polyphase form: constant 2.4 ms delay, passband flat to 3.4 kHz, images
  of phone-band content (>= 4.6 kHz) below -90 dB. The telephone channel is band-limited to
  ~3.4 kHz, so the 3.4-4.6 kHz transition band costs nothing.

``make_resampler`` picks between them. Both are time-aligned: the filter delay is removed from the
front and emitted by ``flush()``, so over a whole stream ``len(out) == round(len(in) * ratio)``
and sample ``k`` of the output sits at time ``k / out_rate``. Call ``flush()`` once at the end of
a continuous stream (e.g. the end of a TTS reply); afterwards the object is ready for a new one.
"""

from __future__ import annotations

import logging
from typing import Literal, Protocol

import numpy as np
import soxr

logger = logging.getLogger(__name__)

SampleDType = Literal["int16", "float32"]
_INT16_SCALE = 32768.0
SoxrQuality = Literal["QQ", "LQ", "MQ", "HQ", "VHQ"]


class StreamResampler(Protocol):
    in_rate_hz: int
    out_rate_hz: int

    def process(self, samples: np.ndarray) -> np.ndarray: ...

    def flush(self) -> np.ndarray: ...

    def reset(self) -> None: ...


def _float_to_int16(y: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(y), -32768, 32767).astype(np.int16)


def _check_input(samples: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if not isinstance(samples, np.ndarray):
        raise TypeError("samples must be a numpy array")
    if samples.dtype != dtype:
        raise TypeError(f"expected {dtype} samples, got {samples.dtype}")
    if samples.ndim != 1:
        raise ValueError("samples must be mono (1-D)")
    return np.ascontiguousarray(samples)


class Resampler:
    """Stateful soxr stream: ``in_rate_hz`` -> ``out_rate_hz``, mono, ``dtype`` in and out."""

    def __init__(
        self,
        in_rate_hz: int,
        out_rate_hz: int,
        *,
        dtype: SampleDType = "int16",
        quality: SoxrQuality = "HQ",
    ) -> None:
        if in_rate_hz <= 0 or out_rate_hz <= 0:
            raise ValueError("sample rates must be > 0")
        self.in_rate_hz = in_rate_hz
        self.out_rate_hz = out_rate_hz
        self.quality = quality
        self._dtype = np.dtype(dtype)
        self._passthrough = in_rate_hz == out_rate_hz
        # soxr always runs in float32: its int16 output is dithered (+-2 LSB of noise that
        # differs run to run), so int16 is converted here with plain rounding instead.
        self._stream = (
            None
            if self._passthrough
            else soxr.ResampleStream(in_rate_hz, out_rate_hz, 1, dtype="float32", quality=quality)
        )

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Resample one chunk (any length, may be empty); may return fewer samples than the
        ratio implies while the filter fills up."""
        samples = _check_input(samples, self._dtype)
        if self._stream is None:
            return samples.copy()
        if self._dtype == np.int16:
            samples = samples.astype(np.float32) / _INT16_SCALE
        return self._out(self._stream.resample_chunk(samples))

    def flush(self) -> np.ndarray:
        """Emit the held-back tail of the stream and reset for a new stream."""
        if self._stream is None:
            return np.zeros(0, dtype=self._dtype)
        tail = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        self._stream.clear()
        return self._out(tail)

    def _out(self, y: np.ndarray) -> np.ndarray:
        if self._dtype == np.int16:
            return _float_to_int16(y * _INT16_SCALE)
        return y

    def reset(self) -> None:
        """Drop buffered audio (e.g. the reply was interrupted) and start a new stream."""
        if self._stream is not None:
            self._stream.clear()


def _halfband_lowpass(num_taps: int, kaiser_beta: float) -> np.ndarray:
    """Kaiser-windowed sinc cutting at a quarter of the output rate, gain 2 (for zero-stuffing)."""
    n = np.arange(num_taps) - (num_taps - 1) / 2
    h = 0.5 * np.sinc(0.5 * n) * np.kaiser(num_taps, kaiser_beta)
    return 2.0 * h / h.sum()


class Upsampler2x:
    """Low-latency exact 2x upsampler (polyphase FIR), e.g. 8 kHz caller audio -> 16 kHz."""

    NUM_TAPS = 79  # odd: integer group delay of 39 output samples (2.4 ms at 16 kHz)
    KAISER_BETA = 9.0

    def __init__(self, in_rate_hz: int = 8000, *, dtype: SampleDType = "int16") -> None:
        if in_rate_hz <= 0:
            raise ValueError("in_rate_hz must be > 0")
        self.in_rate_hz = in_rate_hz
        self.out_rate_hz = 2 * in_rate_hz
        self._dtype = np.dtype(dtype)
        h = _halfband_lowpass(self.NUM_TAPS, self.KAISER_BETA)
        even = h[0::2]
        odd = np.concatenate([h[1::2], [0.0]])  # pad so both phases have the same length
        self._phases = (even, odd)
        self._history_len = len(even) - 1
        self._delay_out = (self.NUM_TAPS - 1) // 2
        self.reset()

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def delay_ms(self) -> float:
        """Constant filter delay; already compensated in the output timeline."""
        return 1000.0 * self._delay_out / self.out_rate_hz

    def reset(self) -> None:
        self._history = np.zeros(self._history_len, dtype=np.float64)
        self._in_count = 0
        self._out_count = 0
        self._to_drop = self._delay_out

    def _filter(self, x: np.ndarray) -> np.ndarray:
        ext = np.concatenate([self._history, x])
        self._history = ext[len(ext) - self._history_len :]
        even, odd = self._phases
        y = np.empty(2 * len(x), dtype=np.float64)
        y[0::2] = np.convolve(ext, even, mode="valid")
        y[1::2] = np.convolve(ext, odd, mode="valid")
        return y

    def _emit(self, y: np.ndarray) -> np.ndarray:
        if self._to_drop:
            dropped = min(self._to_drop, len(y))
            y = y[dropped:]
            self._to_drop -= dropped
        self._out_count += len(y)
        if self._dtype == np.int16:
            return _float_to_int16(y)
        return y.astype(self._dtype)

    def process(self, samples: np.ndarray) -> np.ndarray:
        samples = _check_input(samples, self._dtype)
        if samples.size == 0:
            return np.zeros(0, dtype=self._dtype)
        self._in_count += len(samples)
        return self._emit(self._filter(samples.astype(np.float64)))

    def flush(self) -> np.ndarray:
        """Emit the last ``delay_ms`` of output (filter tail) and reset for a new stream."""
        owed = 2 * self._in_count - self._out_count
        tail = np.zeros(0, dtype=self._dtype)
        if owed > 0:
            zeros = np.zeros((self._to_drop + owed + 1) // 2 + 1)
            tail = self._emit(self._filter(zeros))[:owed]
        self.reset()
        return tail


def make_resampler(
    in_rate_hz: int,
    out_rate_hz: int,
    *,
    dtype: SampleDType = "int16",
    low_latency: bool = True,
    quality: SoxrQuality = "HQ",
) -> StreamResampler:
    """``Upsampler2x`` for an exact 2x ratio when ``low_latency``; else a soxr ``Resampler``."""
    if low_latency and out_rate_hz == 2 * in_rate_hz:
        return Upsampler2x(in_rate_hz, dtype=dtype)
    return Resampler(in_rate_hz, out_rate_hz, dtype=dtype, quality=quality)
