"""Voice and Speaker with the generated Piper test voices.

The test voice (tests/support/models.py) runs Piper's real espeak-ng phonemizer, then its "acoustic
model" emits 256 samples of tone per phoneme id (times length_scale), at the rate written in
its .onnx.json (16000 Hz, or 22050 Hz for the second voice).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from appliance.tts.piper import AudioPiece, Speaker, TtsError, Voice
from tests.support import models as tm

CACHE_DIR = Path(__file__).parent / ".cache" / "models"


@pytest.fixture(scope="module")
def voice_16k() -> Path:
    return tm.ensure_models(CACHE_DIR).piper_voice


@pytest.fixture(scope="module")
def voice_22k() -> Path:
    return tm.make_piper_voice(CACHE_DIR, sample_rate=22050)


@pytest.fixture(scope="module")
def voice(voice_16k: Path) -> Voice:
    return Voice.load(voice_16k, threads=1)


def samples(pieces: list[AudioPiece]) -> int:
    return sum(len(p.samples) for p in pieces)


def test_voice_yields_int16_pieces_at_the_configured_rate(voice: Voice, voice_16k: Path) -> None:
    config = json.loads(Path(f"{voice_16k}.json").read_text())
    assert voice.sample_rate_hz == config["audio"]["sample_rate"] == 16000
    pieces = list(voice.synthesize("Hello, how can I help you today?"))
    assert len(pieces) == 1
    piece = pieces[0]
    assert piece.samples.dtype == np.int16 and piece.samples.ndim == 1
    assert piece.sample_rate_hz == 16000
    assert piece.duration_ms == pytest.approx(len(piece.samples) / 16)
    assert np.abs(piece.samples.astype(np.int32)).max() > 10000  # not silence
    assert len(piece.samples) % tm.PIPER_HOP == 0  # whole phoneme ids


def test_audio_length_grows_with_text_length(voice: Voice) -> None:
    texts = ["Yes.", "Yes, of course.", "Yes, of course, I can book that for you tomorrow."]
    lengths = [samples(list(voice.synthesize(t))) for t in texts]
    assert lengths[0] < lengths[1] < lengths[2]
    assert lengths[2] > 3 * lengths[0]


def test_one_piece_per_sentence(voice: Voice) -> None:
    pieces = list(voice.synthesize("Hello. We are open until six. Goodbye!"))
    assert len(pieces) == 3
    whole = samples(pieces)
    assert whole == sum(samples(list(voice.synthesize(s)))
                        for s in ("Hello.", "We are open until six.", "Goodbye!"))


def test_empty_text_yields_nothing(voice: Voice) -> None:
    assert list(voice.synthesize("")) == []
    assert list(voice.synthesize("   ")) == []


def test_length_scale_slows_speech_down(voice_16k: Path, voice: Voice) -> None:
    slow = Voice.load(voice_16k, threads=1, length_scale=2.0)
    text = "See you tomorrow at ten."
    assert samples(list(slow.synthesize(text))) == 2 * samples(list(voice.synthesize(text)))


def test_threads_reach_onnxruntime(voice: Voice) -> None:
    options = voice._voice.session.get_session_options()
    assert options.intra_op_num_threads == 1


def test_speaker_picks_the_voice_by_language(voice_16k: Path, voice_22k: Path) -> None:
    speaker = Speaker.load({"": voice_16k, "en": voice_16k, "he": voice_22k}, threads=1)
    assert speaker.languages == ("en", "he")
    assert speaker.sample_rate_for("he") == 22050
    assert speaker.sample_rate_for("en") == 16000
    assert speaker.sample_rate_for("en-US") == 16000
    assert speaker.sample_rate_for("ru") == 16000  # no Russian voice: the default one
    assert speaker.sample_rate_for(None) == 16000
    assert speaker.voice_for("en") is speaker.voice_for(None)  # one path, loaded once
    he = list(speaker.synthesize("Shalom, see you tomorrow.", language="he"))
    en = list(speaker.synthesize("Shalom, see you tomorrow.", language="en"))
    assert [p.sample_rate_hz for p in he] == [22050]
    assert [p.sample_rate_hz for p in en] == [16000]
    assert len(he[0].samples) == len(en[0].samples)  # same phonemes, same 256 samples per id


def test_synthesize_is_lazy_and_streams_sentence_by_sentence(voice: Voice) -> None:
    speaker = Speaker({"": voice})
    stream = speaker.synthesize("First sentence here. Second one.")
    first = next(iter(stream))
    assert first.duration_ms > 0
    assert len(list(stream)) == 1


def test_load_errors(tmp_path: Path, voice_16k: Path) -> None:
    with pytest.raises(TtsError) as err:
        Voice.load(tmp_path / "missing.onnx")
    assert err.value.code == "voice_missing"
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    Path(f"{broken}.json").write_text(Path(f"{voice_16k}.json").read_text())
    with pytest.raises(TtsError) as err:
        Voice.load(broken)
    assert err.value.code == "voice_invalid"
    with pytest.raises(TtsError) as err:
        Speaker({})
    assert err.value.code == "no_voice"
