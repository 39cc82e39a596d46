"""G.711 mu-law <-> 16-bit PCM, and small numpy helpers. Pure: no I/O, no clock.

Twilio Media Streams carry raw mu-law at 8 kHz, mono, conventionally 160 bytes (20 ms) per
frame. PCM16 here is always little-endian signed 16-bit, mono ("native" for ``audioop`` on the
x86/ARM machines this runs on).
"""

from __future__ import annotations

import logging
import sys
import warnings

import numpy as np

if sys.version_info >= (3, 13):  # removed from the stdlib; the audioop-lts wheel provides it
    import audioop
else:  # stdlib module, deprecated since 3.11: import it without the DeprecationWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop

logger = logging.getLogger(__name__)

TELEPHONY_RATE_HZ = 8000
FRAME_MS = 20
FRAME_SAMPLES = TELEPHONY_RATE_HZ * FRAME_MS // 1000  # 160 samples per 20 ms frame
ULAW_FRAME_BYTES = FRAME_SAMPLES  # 1 byte per mu-law sample: 160 bytes = 20 ms
PCM16_FRAME_BYTES = FRAME_SAMPLES * 2  # 320 bytes = 20 ms of 8 kHz PCM16
ULAW_SILENCE_BYTE = 0xFF  # mu-law code of (positive) zero; what a quiet phone line sends

_PCM16_SCALE = 32768.0


def ulaw_to_pcm16(data: bytes) -> bytes:
    """Decode mu-law bytes to PCM16 (2 bytes per input byte)."""
    return audioop.ulaw2lin(data, 2)


def pcm16_to_ulaw(data: bytes) -> bytes:
    """Encode PCM16 bytes to mu-law (1 byte per sample). ``data`` must have an even length."""
    if len(data) % 2:
        raise ValueError(f"PCM16 data must have an even byte length, got {len(data)}")
    return audioop.lin2ulaw(data, 2)


def ulaw_silence(duration_ms: int) -> bytes:
    """Mu-law silence at 8 kHz lasting ``duration_ms`` (rounded down to whole samples)."""
    if duration_ms < 0:
        raise ValueError("duration_ms must be >= 0")
    return bytes([ULAW_SILENCE_BYTE]) * (TELEPHONY_RATE_HZ * duration_ms // 1000)


def split_frames(data: bytes, frame_bytes: int = ULAW_FRAME_BYTES) -> tuple[list[bytes], bytes]:
    """Cut ``data`` into whole frames of ``frame_bytes``; return (frames, leftover tail)."""
    if frame_bytes <= 0:
        raise ValueError("frame_bytes must be > 0")
    whole = len(data) - len(data) % frame_bytes
    frames = [data[i : i + frame_bytes] for i in range(0, whole, frame_bytes)]
    return frames, data[whole:]


def pcm16_bytes_to_array(data: bytes) -> np.ndarray:
    """PCM16 bytes -> int16 numpy array (a copy, so the result is writable)."""
    if len(data) % 2:
        raise ValueError(f"PCM16 data must have an even byte length, got {len(data)}")
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def array_to_pcm16_bytes(samples: np.ndarray) -> bytes:
    """int16 numpy array -> little-endian PCM16 bytes."""
    if samples.dtype != np.int16:
        raise TypeError(f"expected int16 samples, got {samples.dtype}")
    return samples.astype("<i2", copy=False).tobytes()


def pcm16_to_float32(samples: np.ndarray | bytes) -> np.ndarray:
    """PCM16 (bytes or int16 array) -> float32 array in [-1.0, 1.0)."""
    if isinstance(samples, (bytes, bytearray, memoryview)):
        samples = np.frombuffer(samples, dtype="<i2")
    if samples.dtype != np.int16:
        raise TypeError(f"expected int16 samples, got {samples.dtype}")
    return samples.astype(np.float32) / _PCM16_SCALE


def float32_to_pcm16(samples: np.ndarray) -> np.ndarray:
    """float32 array (nominally [-1, 1]) -> int16 array, clipped, rounded to nearest."""
    scaled = np.rint(np.asarray(samples, dtype=np.float32) * _PCM16_SCALE)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def ulaw_to_float32(data: bytes) -> np.ndarray:
    """Mu-law bytes -> float32 samples in [-1, 1)."""
    return pcm16_to_float32(ulaw_to_pcm16(data))


def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level of int16 or float32 samples in dB relative to full scale (-inf for silence)."""
    if samples.size == 0:
        return float("-inf")
    x = pcm16_to_float32(samples) if samples.dtype == np.int16 else samples.astype(np.float64)
    power = float(np.mean(np.square(x, dtype=np.float64)))
    return 10.0 * float(np.log10(power)) if power > 0.0 else float("-inf")
