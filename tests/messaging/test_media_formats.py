"""Issue 13, item 16: voice-note bytes reach only the demuxers of the formats voice notes come
in (OGG/Opus, MP4/M4A, AMR, MP3, WAV), recognised by their magic bytes; anything else (an HLS
playlist, Matroska, a text file that FFmpeg's probing would happily open) is refused before
FFmpeg sees it, through the real messaging app too. Decoding has a wall-clock limit."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from appliance.messaging.media import MediaError, decode_audio, sniff_audio
from tests.support.fakes.twilio_rest import FakeTwilio
from tests.support.messaging import Harness, twilio_stand_in
from tests.support.voice_notes import FakeTranscript, RecordingStt, ogg_opus

AUDIO = Path(__file__).resolve().parents[1] / "data" / "audio"
WA = "whatsapp:+972501234567"
PLAYLIST = b"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:10.0,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"


def wav_bytes(seconds: float = 1.0, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        t = np.arange(int(seconds * rate)) / rate
        w.writeframes((np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).tobytes())
    return buf.getvalue()


def encoded(fmt: str, codec: str, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    pcm = (np.sin(np.arange(rate) / 10) * 8000).astype(np.int16).reshape(1, -1)
    with av.open(buf, mode="w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono",
                                      rate=rate)
        for f in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def test_the_voice_note_formats_are_recognised_and_decoded() -> None:
    samples = {"ogg": ogg_opus(AUDIO / "en_book.wav"), "wav": wav_bytes()}
    for fmt, codec in (("mp4", "aac"), ("mp3", "libmp3lame")):
        try:
            samples[fmt] = encoded(fmt, codec)
        except (av.FFmpegError, ValueError):       # an FFmpeg build without the encoder
            pass
    for fmt, data in samples.items():
        assert sniff_audio(data) == fmt
        assert decode_audio(data, max_seconds=60).shape[0] > 8000
    assert sniff_audio(b"#!AMR\n" + b"\x00" * 10) == "amr"


@pytest.mark.parametrize("data", [
    PLAYLIST, b"\x1a\x45\xdf\xa3" + b"\x00" * 64, b"RIFF\x00\x00\x00\x00AVI LIST",
    b"%PDF-1.4", b"", b"hello",
])
def test_other_bytes_never_reach_ffmpeg(data: bytes) -> None:
    assert sniff_audio(data) is None
    with pytest.raises(MediaError) as info:
        decode_audio(data, max_seconds=60)
    assert info.value.code == "unsupported_format"


def test_decoding_has_a_wall_clock_limit() -> None:
    with pytest.raises(MediaError) as info:
        decode_audio(wav_bytes(seconds=30), max_seconds=600, timeout_s=0.0)
    assert info.value.code == "decode_timeout"


async def test_a_playlist_sent_as_a_voice_note_is_declined(tmp_path: Path) -> None:
    fake: FakeTwilio
    async with twilio_stand_in() as fake:
        stt = RecordingStt(FakeTranscript("hello", "en"))
        h = await Harness(tmp_path, fake, stt=stt).start()
        try:
            url = fake.add_media("audio/ogg", PLAYLIST)
            await h.send(WA, "", media=((url, "audio/ogg"),))
            await h.settle()
            (sent,) = fake.messages
            assert "voice" in sent.body.lower()
            (media,) = h.rows("SELECT status, detail FROM message_media")
            assert media["status"] == "failed" and "unsupported_format" in media["detail"]
            assert stt.calls == [] and h.engine.received == []
        finally:
            await h.stop()
