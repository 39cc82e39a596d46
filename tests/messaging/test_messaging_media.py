"""WhatsApp voice notes: downloaded from Twilio with basic auth, decoded with PyAV and
transcribed on the box by faster-whisper (the generated test model, loaded by the product's
SpeechRecognizer), then answered like text. Broken, silent, huge or unreachable notes get a
polite answer and are recorded."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest

from appliance.messaging.media import MediaError, decode_audio
from appliance.stt.whisper import SpeechRecognizer
from tests.support import models as test_models
from tests.support.fakes.twilio_rest import FakeTwilio
from tests.support.voice_notes import FakeTranscript, RecordingStt, ogg_opus
from tests.support.messaging import (
    FAST,
    Harness,
)

AUDIO = Path(__file__).resolve().parents[1] / "data" / "audio"  # a copy of shared/audio
MODELS = Path(__file__).resolve().parents[1] / ".cache" / "models"
WA = "whatsapp:+972501234567"


@pytest.fixture(scope="module")
def voice_note() -> bytes:
    return ogg_opus(AUDIO / "en_book.wav")


@pytest.fixture(scope="module")
def recognizer() -> SpeechRecognizer:
    whisper_dir = test_models.ensure_models(MODELS).whisper_dir
    return SpeechRecognizer.load(whisper_dir, threads=2, languages=("en", "he", "ru"))


def test_the_voice_note_is_real_ogg_opus(voice_note: bytes) -> None:
    with av.open(io.BytesIO(voice_note)) as container:
        stream = container.streams.audio[0]
        assert container.format.name == "ogg" and stream.codec_context.name == "opus"
    pcm = decode_audio(voice_note, max_seconds=60)
    assert pcm.dtype == np.float32 and 5.5 < pcm.shape[0] / 16000 < 6.5   # en_book is ~5.9 s


def test_decoding_is_bounded(voice_note: bytes) -> None:
    with pytest.raises(MediaError) as info:
        decode_audio(voice_note, max_seconds=2)
    assert info.value.code == "too_long"
    with pytest.raises(MediaError) as info:
        decode_audio(b"OggS" + b"\x00" * 500, max_seconds=60)
    assert info.value.code == "decode_failed"


async def test_a_voice_note_is_transcribed_on_the_box_and_answered(
        tmp_path: Path, fake_twilio: FakeTwilio, voice_note: bytes,
        recognizer: SpeechRecognizer) -> None:
    h = await Harness(tmp_path, fake_twilio, stt=recognizer).start()
    try:
        url = fake_twilio.add_media("audio/ogg", voice_note)
        await h.send(WA, "", media=((url, "audio/ogg"),))
        await h.settle(30)
        (received,) = h.engine.received
        assert (received.text, received.language) == ("hello i would like an appointment", "en")
        (sent,) = fake_twilio.messages
        assert sent.body == "Reply to: hello i would like an appointment"
        (media,) = h.rows("SELECT kind, status, transcript, language, bytes, duration_ms "
                          "FROM message_media")
        assert media["kind"] == "voice" and media["status"] == "transcribed"
        assert media["transcript"] == "hello i would like an appointment"
        assert media["bytes"] == len(voice_note) and 5500 < media["duration_ms"] < 6500
        assert h.rows("SELECT kind, text, language FROM messages_in") == [
            {"kind": "voice", "text": "hello i would like an appointment", "language": "en"}]
        (download,) = [r for r in fake_twilio.requests if "/Media/" in r.path]
        assert download.method == "GET" and download.authorized
    finally:
        await h.stop()


async def test_a_voice_note_with_a_caption(tmp_path: Path, fake_twilio: FakeTwilio,
                                           voice_note: bytes) -> None:
    stt = RecordingStt(FakeTranscript("the washing machine leaks", "en"))
    h = await Harness(tmp_path, fake_twilio, stt=stt).start()
    try:
        url = fake_twilio.add_media("audio/ogg; codecs=opus", voice_note)
        await h.send(WA, "About my order 1234:", media=((url, "audio/ogg; codecs=opus"),))
        await h.settle()
        assert [r.text for r in h.engine.received] == \
            ["About my order 1234:\nthe washing machine leaks"]
        (pcm, _), = stt.calls
        assert pcm.dtype == np.float32 and pcm.ndim == 1
    finally:
        await h.stop()


@pytest.mark.parametrize("situation, notice", [
    ("silence", "couldn't make out your voice message"),
    ("unreachable", "couldn't play your voice message"),
    ("garbage", "couldn't play your voice message"),
    ("untrusted", "couldn't play your voice message"),
    ("too_long", "too long for me"),
    ("no_stt", "couldn't play your voice message"),
])
async def test_unusable_voice_notes_get_a_polite_answer(
        tmp_path: Path, fake_twilio: FakeTwilio, voice_note: bytes, situation: str,
        notice: str) -> None:
    stt = RecordingStt(FakeTranscript("", "en", "no_speech" if situation == "silence" else None))
    options = FAST
    if situation == "too_long":
        options = replace(FAST, media=replace(FAST.media, max_audio_s=2.0))
    h = await Harness(tmp_path, fake_twilio, stt=None if situation == "no_stt" else stt,
                      options=options).start()
    try:
        data = b"OggS" + bytes(range(256)) * 4 if situation == "garbage" else voice_note
        url = fake_twilio.add_media("audio/ogg", data)
        if situation == "unreachable":
            fake_twilio.media_failures = 10
        if situation == "untrusted":
            url = "https://media.example.net/voice.ogg"
        await h.send(WA, "", media=((url, "audio/ogg"),))
        await h.settle()
        (sent,) = fake_twilio.messages
        assert notice in sent.body
        assert h.engine.received == []
        (media,) = h.rows("SELECT status, detail FROM message_media")
        assert media["status"] in ("unusable", "failed") and media["detail"]
        if situation == "unreachable":   # tried a few times, then gave up politely
            tries = [r for r in fake_twilio.requests if "/Media/" in r.path]
            assert len(tries) == FAST.media.download_attempts
        if situation == "untrusted":     # credentials never leave for a non-Twilio host
            assert not any("/Media/" in r.path for r in fake_twilio.requests)
    finally:
        await h.stop()
