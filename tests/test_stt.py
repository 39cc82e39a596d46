"""SpeechRecognizer with the generated Whisper test model, and the hallucination guard.

The test Whisper (tests/support/models.py) has a random encoder and a crafted decoder: whatever the
audio, it transcribes a fixed phrase in a fixed language with no_speech_prob ~0 and
avg_logprob ~0. Variants with another phrase or language are built once under
tests/.cache/models/stt-variants.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr

from appliance.stt.whisper import (
    GuardThresholds,
    SpeechRecognizer,
    SttError,
    Transcript,
    choose_language,
    junk_reason,
    rejection_reason,
    short_window_frames,
)
from tests.support import models as tm

CACHE_DIR = Path(__file__).parent / ".cache" / "models"
AUDIO_DIR = Path(__file__).resolve().parent / "data" / "audio"  # a copy of shared/audio
PHRASE = tm.DEFAULT_PHRASE


def load_utterance(name: str) -> np.ndarray:
    """A shared 8 kHz phone utterance as float32 16 kHz, as the call path hands it over."""
    with wave.open(str(AUDIO_DIR / name)) as wav:
        assert wav.getframerate() == 8000 and wav.getnchannels() == 1
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return soxr.resample(pcm.astype(np.float32) / 32768.0, 8000, 16000).astype(np.float32)


class RecordingModel:
    """The real WhisperModel, recording which entry points ran, on which thread, and the
    encoder window sizes. ``delay_s`` adds blocking work where decoding happens."""

    def __init__(self, model: Any, delay_s: float = 0.0) -> None:
        self._model = model
        self.delay_s = delay_s
        self.calls: list[tuple[str, str]] = []  # (entry point, thread name)
        self.encoder_frames: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def _record(self, name: str) -> None:
        self.calls.append((name, threading.current_thread().name))

    def transcribe(self, *args: Any, **kwargs: Any) -> tuple[Iterator[Any], Any]:
        self._record("transcribe")
        segments, info = self._model.transcribe(*args, **kwargs)

        def consume() -> Iterator[Any]:
            self._record("segments")
            time.sleep(self.delay_s)
            yield from segments

        return consume(), info

    def encode(self, features: np.ndarray) -> Any:
        self._record("encode")
        self.encoder_frames.append(features.shape[-1])
        time.sleep(self.delay_s)
        return self._model.encode(features)

    def detect_language(self, *args: Any, **kwargs: Any) -> Any:
        self._record("detect_language")
        return self._model.detect_language(*args, **kwargs)


def recording(recognizer: SpeechRecognizer, delay_s: float = 0.0, **options: Any
              ) -> tuple[SpeechRecognizer, RecordingModel]:
    model = RecordingModel(recognizer._model, delay_s)
    options.setdefault("languages", recognizer.languages)
    return SpeechRecognizer(model, **options), model


@pytest.fixture(scope="module")
def whisper_dir() -> Path:
    return tm.ensure_models(CACHE_DIR).whisper_dir


@pytest.fixture(scope="module")
def recognizer(whisper_dir: Path) -> SpeechRecognizer:
    return SpeechRecognizer.load(whisper_dir, threads=2, languages=("en",))


def variant_dir(phrase: str = PHRASE, language: str = "en") -> Path:
    slug = f"{language}-" + "-".join(phrase.split())
    return tm.make_whisper(CACHE_DIR / "stt-variants" / slug, phrase=phrase, language=language)


@pytest.fixture(scope="module")
def en_book() -> np.ndarray:
    return load_utterance("en_book.wav")


# -- model-backed ---------------------------------------------------------------------------

def test_transcribes_a_phone_utterance(recognizer: SpeechRecognizer, en_book: np.ndarray) -> None:
    t = recognizer.transcribe(en_book)
    assert isinstance(t, Transcript) and t.accepted
    assert t.text == PHRASE
    assert t.language == "en" and t.language_probability == 1.0
    assert t.no_speech_prob < 0.01 and t.avg_logprob > -0.1
    assert t.audio_ms == 5883  # 5.883 s of 8 kHz, resampled
    assert 0 < t.compute_ms < 5000
    assert t.rejected_reason is None


@pytest.mark.parametrize("name", ["en_yes.wav", "en_long.wav", "he_book.wav", "ru_price.wav"])
def test_every_shared_utterance_goes_through(recognizer: SpeechRecognizer, name: str) -> None:
    t = recognizer.transcribe(load_utterance(name))
    assert t.accepted and t.text == PHRASE and t.language == "en"


def test_decoding_happens_inside_transcribe(recognizer: SpeechRecognizer,
                                            en_book: np.ndarray) -> None:
    rec, model = recording(recognizer)
    rec.transcribe(en_book)
    assert [name for name, _ in model.calls] == ["transcribe", "segments"]


def test_too_short_audio_is_rejected_without_running_the_model(
        recognizer: SpeechRecognizer) -> None:
    rec, model = recording(recognizer)
    t = rec.transcribe(np.zeros(4000, dtype=np.float32))  # 250 ms
    assert t.rejected_reason == "too_short" and t.text == "" and t.audio_ms == 250
    assert math.isnan(t.no_speech_prob) and model.calls == []
    assert rec.transcribe(np.zeros(0, dtype=np.float32)).rejected_reason == "too_short"
    assert rec.transcribe(np.zeros(4800, dtype=np.float32)).accepted  # 300 ms is enough


def test_bad_audio_is_an_error(recognizer: SpeechRecognizer) -> None:
    for bad in (np.zeros(16000, dtype=np.int16), np.zeros((2, 16000), dtype=np.float32)):
        with pytest.raises(SttError) as err:
            recognizer.transcribe(bad)
        assert err.value.code == "bad_audio"
    assert recognizer.transcribe(np.zeros(16000, dtype=np.float64)).accepted


def test_language_is_restricted_to_the_configured_ones(whisper_dir: Path,
                                                       en_book: np.ndarray) -> None:
    """The model hears English (p ~1); only Hebrew and Russian are configured (p ~0 each)."""
    rec = SpeechRecognizer.load(whisper_dir, threads=2, languages=("he", "ru"))
    assert rec.transcribe(en_book).language == "he"  # a tie: the first configured
    assert rec.transcribe(en_book, language_hint="ru").language == "ru"  # the customer's
    assert rec.transcribe(en_book, language_hint="fr").language == "he"  # not configured
    t = rec.transcribe(en_book, language_hint="ru")
    assert t.language_probability < 0.01 and t.text == PHRASE


def test_detected_language_beats_a_weak_hint(en_book: np.ndarray) -> None:
    rec = SpeechRecognizer.load(variant_dir(language="he"), threads=2,
                                languages=("en", "he", "ru"))
    t = rec.transcribe(en_book, language_hint="ru")
    assert t.language == "he" and t.language_probability > 0.99


def test_several_languages_use_one_encoder_pass(whisper_dir: Path, en_book: np.ndarray) -> None:
    rec, model = recording(SpeechRecognizer.load(whisper_dir, threads=2,
                                                 languages=("en", "he")))
    t = rec.transcribe(en_book)
    assert t.language == "en" and t.text == PHRASE
    assert [name for name, _ in model.calls] == ["encode"]
    assert model.encoder_frames == [3000]


def test_direct_path_matches_faster_whisper(whisper_dir: Path, en_book: np.ndarray) -> None:
    """With the full 30 s window the one-pass path computes what WhisperModel.transcribe does."""
    stock = SpeechRecognizer.load(whisper_dir, threads=2, languages=("en",))
    direct = SpeechRecognizer.load(whisper_dir, threads=2, languages=("en", "he"))
    a, b = stock.transcribe(en_book), direct.transcribe(en_book)
    assert (a.text, a.language) == (b.text, b.language)
    assert a.avg_logprob == pytest.approx(b.avg_logprob, abs=1e-6)
    assert a.no_speech_prob == pytest.approx(b.no_speech_prob, abs=1e-6)


def test_short_window_gives_the_encoder_only_the_speech(recognizer: SpeechRecognizer,
                                                        en_book: np.ndarray) -> None:
    rec, model = recording(recognizer, short_window=True)
    t = rec.transcribe(en_book)
    assert t.accepted and t.text == PHRASE and t.language == "en"
    assert model.encoder_frames == [1000]  # 589 frames of speech + 1 s, at least 10 s
    assert rec.short_window and not recognizer.short_window


def test_audio_over_30_s_uses_the_stock_path(recognizer: SpeechRecognizer) -> None:
    rec, model = recording(recognizer, short_window=True, languages=("en", "he"))
    long = np.tile(load_utterance("en_long.wav"), 3)[: 16000 * 32]
    t = rec.transcribe(long)
    assert t.accepted and t.audio_ms == 32000
    assert [name for name, _ in model.calls] == ["detect_language", "transcribe", "segments"]
    assert t.text.startswith(PHRASE)


def test_junk_phrase_from_the_model_is_rejected(en_book: np.ndarray) -> None:
    rec = SpeechRecognizer.load(variant_dir("thank you for watching"), threads=2,
                                languages=("en",))
    t = rec.transcribe(en_book)
    assert t.rejected_reason == "junk_phrase" and t.text == ""
    assert t.no_speech_prob < 0.01 and t.audio_ms == 5883  # the numbers are still reported


def test_a_confident_thank_you_is_kept(en_book: np.ndarray) -> None:
    rec = SpeechRecognizer.load(variant_dir("thank you"), threads=2, languages=("en",))
    t = rec.transcribe(en_book)
    assert t.accepted and t.text == "thank you"


def test_unsupported_language_and_missing_model_fail_at_load(whisper_dir: Path,
                                                             tmp_path: Path) -> None:
    with pytest.raises(SttError) as err:
        SpeechRecognizer.load(whisper_dir, threads=1, languages=("en", "xx"))
    assert err.value.code == "language_unsupported"
    with pytest.raises(SttError) as err:
        SpeechRecognizer.load(tmp_path / "nowhere", threads=1)
    assert err.value.code == "model_missing"
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.bin").write_bytes(b"not a model")
    with pytest.raises(SttError) as err:
        SpeechRecognizer.load(tmp_path / "broken", threads=1)
    assert err.value.code == "model_invalid"


# -- async: model work stays off the event loop ---------------------------------------------

async def _ticks_during(coro: Any) -> tuple[Any, int]:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    try:
        result = await coro
    finally:
        task.cancel()
    return result, ticks


async def test_transcribe_async_keeps_the_loop_responsive(recognizer: SpeechRecognizer,
                                                          en_book: np.ndarray) -> None:
    """Decoding (the segment generator) blocks for 300 ms here: in a thread, so ticks go on."""
    rec, model = recording(recognizer, delay_s=0.3)
    t, ticks = await _ticks_during(rec.transcribe_async(en_book))
    assert t.text == PHRASE
    assert ticks >= 10
    loop_thread = threading.current_thread().name
    assert [name for name, _ in model.calls] == ["transcribe", "segments"]
    assert all(thread != loop_thread for _, thread in model.calls)


async def test_transcribe_async_uses_a_given_executor(recognizer: SpeechRecognizer,
                                                      en_book: np.ndarray) -> None:
    rec, model = recording(recognizer, delay_s=0.1, languages=("en", "ru"))
    with ThreadPoolExecutor(1, thread_name_prefix="stt-worker") as pool:
        t, ticks = await _ticks_during(rec.transcribe_async(en_book, "ru", executor=pool))
    assert t.accepted and ticks >= 5
    assert model.calls and all(thread.startswith("stt-worker") for _, thread in model.calls)


async def test_cancelling_transcribe_async_propagates(recognizer: SpeechRecognizer,
                                                      en_book: np.ndarray) -> None:
    rec, _ = recording(recognizer, delay_s=0.2)
    task = asyncio.create_task(rec.transcribe_async(en_book))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# -- the guard (pure) -----------------------------------------------------------------------

@pytest.mark.parametrize("text, reason", [
    ("", "empty"),
    ("   ", "empty"),
    (".", "no_words"),
    ("...", "no_words"),
    ("?!", "no_words"),
    ("- -", "no_words"),
    ("[Music]", "non_speech"),
    ("(applause) ♪", "non_speech"),
    ("♪♪♪", "non_speech"),
    ("you", "junk_phrase"),
    ("You.", "junk_phrase"),
    ("you you you", "junk_phrase"),
    ("Thank you for watching!", "junk_phrase"),
    ("Thanks for watching.", "junk_phrase"),
    ("Please subscribe to my channel.", "junk_phrase"),
    ("Subtitles by the Amara.org community", "junk_phrase"),
    ("Subtitles by Steve", "junk_phrase"),
    ("Transcribed by ESO, translated by —", "junk_phrase"),
    ("Продолжение следует...", "junk_phrase"),
    ("Редактор субтитров А.Семкин Корректор А.Егорова", "junk_phrase"),
    ("Субтитры сделал DimaTorzok", "junk_phrase"),
    ("Спасибо за просмотр!", "junk_phrase"),
    ("תודה שצפיתם!", "junk_phrase"),
    ("תורגם על ידי יוסי", "junk_phrase"),
    ("no no no no no", "repetition"),
])
def test_junk_reason_rejects(text: str, reason: str) -> None:
    assert junk_reason(text) == reason


@pytest.mark.parametrize("text", [
    "Hello, I would like to book an appointment for tomorrow morning.",
    "No, thank you. Goodbye.",
    "Thank you, I would like to book for Friday.",
    "Can you send me the subtitles by email?",
    "Yes.",
    "Thank you.",  # judged with the scores: see test_suspect_phrases
    "You too.",
    "My number is 054 123 4567.",
    "שלום, אני רוצה לקבוע תור למחר בבוקר.",
    "תודה רבה",  # judged with the scores
    "Здравствуйте, сколько стоит доставка?",
    "Продолжение разговора завтра",
    "no no no",
])
def test_junk_reason_keeps_real_turns(text: str) -> None:
    assert junk_reason(text) is None


def _reason(text: str = "I need a haircut", *, audio_ms: int = 2000, nsp: float = 0.01,
            logprob: float = -0.3, ratio: float = 1.2) -> str | None:
    return rejection_reason(text, audio_ms=audio_ms, no_speech_prob=nsp, avg_logprob=logprob,
                            compression_ratio=ratio)


def test_rejection_rules_and_thresholds() -> None:
    assert _reason() is None
    assert _reason(audio_ms=299) == "too_short"
    assert _reason(audio_ms=300) is None
    # Whisper's rule needs both: likely silence AND an unsure decoder
    assert _reason(nsp=0.7, logprob=-1.2) == "no_speech"
    assert _reason(nsp=0.7, logprob=-0.5) is None
    assert _reason(nsp=0.3, logprob=-1.5) is None
    assert _reason(ratio=2.5) == "repetition"
    assert _reason(nsp=math.nan, logprob=math.nan, text="") == "empty"
    strict = GuardThresholds(min_audio_ms=500, no_speech_prob=0.3)
    assert rejection_reason("hi there", audio_ms=400, no_speech_prob=0.0, avg_logprob=0.0,
                            thresholds=strict) == "too_short"
    assert rejection_reason("hi there", audio_ms=900, no_speech_prob=0.4, avg_logprob=-1.1,
                            thresholds=strict) == "no_speech"


@pytest.mark.parametrize("text", ["Thank you.", "Thanks!", "Thank you very much.", "Bye.",
                                  "תודה רבה", "תודה.", "Спасибо!", "Спасибо большое."])
def test_suspect_phrases_need_strong_evidence_of_speech(text: str) -> None:
    assert _reason(text, nsp=0.01, logprob=-0.2) is None
    assert _reason(text, nsp=0.2, logprob=-0.2) == "suspect_phrase"
    assert _reason(text, nsp=0.01, logprob=-0.9) == "suspect_phrase"
    assert _reason(f"{text} I'd like to book a table", nsp=0.2, logprob=-0.9) is None


def test_choose_language() -> None:
    probs = {"en": 0.55, "ar": 0.25, "he": 0.15, "ru": 0.05}
    assert choose_language(probs, ("en", "he", "ru")) == ("en", 0.55)
    assert choose_language(probs, ("he", "ru")) == ("he", 0.15)  # Arabic is not configured
    assert choose_language(probs, ("he", "ru"), hint="ru") == ("ru", 0.05)  # within 0.15
    assert choose_language(probs, ("en", "he"), hint="he") == ("en", 0.55)  # too far behind
    assert choose_language(probs, ("en", "he"), hint="he", hint_margin=0.5) == ("he", 0.15)
    assert choose_language(probs, ("en", "he"), hint="fr") == ("en", 0.55)
    assert choose_language({}, ("he", "ru"), hint="ru") == ("ru", 0.0)


def test_short_window_frames() -> None:
    assert short_window_frames(30) == 1000           # never under 10 s
    assert short_window_frames(30, min_frames=0) == 200
    assert short_window_frames(589, min_frames=0) == 700
    assert short_window_frames(1589) == 1700
    assert short_window_frames(2900) == 3000
    assert short_window_frames(3000) == 3000
