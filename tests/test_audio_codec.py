import os
import wave
from pathlib import Path

import numpy as np
import pytest

from appliance.audio import codec


def _find_audio_dir() -> Path | None:
    """Caller WAVs: $APPLIANCE_TEST_AUDIO_DIR, tests/data/audio, or ../shared/audio."""
    here = Path(__file__).resolve().parent
    candidates = [os.environ.get("APPLIANCE_TEST_AUDIO_DIR"), here / "data" / "audio",
                  here.parents[1] / "shared" / "audio"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "manifest.json").is_file():
            return Path(candidate)
    return None


AUDIO_DIR = _find_audio_dir()
needs_audio = pytest.mark.skipif(AUDIO_DIR is None, reason="caller WAVs not found")


def test_frame_constants():
    assert codec.TELEPHONY_RATE_HZ == 8000
    assert codec.ULAW_FRAME_BYTES == 160
    assert codec.PCM16_FRAME_BYTES == 320
    assert codec.FRAME_MS == 20


def test_ulaw_silence_decodes_to_zero():
    frame = codec.ulaw_silence(20)
    assert frame == b"\xff" * 160
    assert codec.ulaw_to_pcm16(frame) == b"\x00\x00" * 160


def test_known_ulaw_values():
    pcm = codec.pcm16_bytes_to_array(codec.ulaw_to_pcm16(bytes([0x00, 0x80, 0xFF, 0x7F])))
    assert pcm.tolist() == [-32124, 32124, 0, 0]


def test_every_ulaw_code_round_trips():
    codes = bytes(range(256))
    back = codec.pcm16_to_ulaw(codec.ulaw_to_pcm16(codes))
    # 0x7F is mu-law's "negative zero"; it decodes to 0, which encodes as 0xFF.
    expected = bytes(0xFF if c == 0x7F else c for c in codes)
    assert back == expected


def test_pcm16_to_ulaw_length_and_odd_input():
    assert len(codec.pcm16_to_ulaw(b"\x00\x01" * 160)) == 160
    with pytest.raises(ValueError):
        codec.pcm16_to_ulaw(b"\x00\x01\x02")


@needs_audio
def test_speech_round_trip_snr():
    with wave.open(str(AUDIO_DIR / "en_book.wav"), "rb") as w:
        assert w.getframerate() == 8000 and w.getsampwidth() == 2
        pcm = w.readframes(w.getnframes())
    back = codec.ulaw_to_pcm16(codec.pcm16_to_ulaw(pcm))
    x = codec.pcm16_bytes_to_array(pcm).astype(np.float64)
    y = codec.pcm16_bytes_to_array(back).astype(np.float64)
    snr_db = 10 * np.log10(np.sum(x**2) / np.sum((x - y) ** 2))
    assert snr_db > 30  # G.711 gives ~38 dB on speech


def test_split_frames():
    frames, rest = codec.split_frames(bytes(range(200)) * 2)
    assert [len(f) for f in frames] == [160, 160]
    assert rest == (bytes(range(200)) * 2)[320:]
    assert codec.split_frames(b"") == ([], b"")
    with pytest.raises(ValueError):
        codec.split_frames(b"x", 0)


def test_float_conversions():
    pcm = np.array([-32768, -16384, 0, 16384, 32767], dtype=np.int16)
    f = codec.pcm16_to_float32(pcm)
    assert f.dtype == np.float32
    assert f.tolist() == [-1.0, -0.5, 0.0, 0.5, 32767 / 32768]
    assert np.array_equal(codec.float32_to_pcm16(f), pcm)
    assert codec.float32_to_pcm16(np.array([2.0, -2.0], np.float32)).tolist() == [32767, -32768]
    assert np.array_equal(codec.pcm16_to_float32(codec.array_to_pcm16_bytes(pcm)), f)
    with pytest.raises(TypeError):
        codec.pcm16_to_float32(np.zeros(3, np.float32))


def test_ulaw_to_float32_and_rms():
    assert codec.ulaw_to_float32(codec.ulaw_silence(20)).tolist() == [0.0] * 160
    t = np.arange(8000) / 8000
    sine = codec.float32_to_pcm16(np.sin(2 * np.pi * 1000 * t).astype(np.float32) * 0.5)
    assert codec.rms_dbfs(sine) == pytest.approx(-9.03, abs=0.05)
    assert codec.rms_dbfs(np.zeros(10, np.int16)) == float("-inf")
