"""smart-turn v3.2: our numpy features against pipecat's reference, and the real model."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from appliance.turns import smart_turn as st
from tests.support.turn_replay import phone_to_16k, read_wav, real_model

AUDIO = Path(__file__).resolve().parent / "data" / "audio"


@pytest.fixture(scope="module")
def model_path() -> Path:
    return real_model("smart-turn-v3.2")


@pytest.fixture(scope="module")
def model(model_path) -> st.SmartTurnModel:
    return st.SmartTurnModel.load(model_path)


def _reference(model_path: Path):
    """pipecat's own numpy feature code, from the same wheel as the model (not vendored)."""
    path = model_path.parent.parent / "_whisper_features.py"
    if not path.is_file():
        pytest.skip(f"pipecat's feature code not found at {path}")
    spec = importlib.util.spec_from_file_location("pipecat_whisper_features", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seconds", [0.3, 3.0, 8.0, 11.0])
def test_features_match_pipecat(model_path, seconds):
    ref = _reference(model_path)
    rng = np.random.default_rng(7)
    pcm = (rng.standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32)
    ours = st.log_mel_features(pcm)
    assert ours.shape == (80, 800) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref.compute_whisper_log_mel_features(st.fit_window(pcm)),
                               atol=1e-5)


def test_window_keeps_the_last_8s_and_pads_the_front():
    short = np.ones(16000, dtype=np.float32)
    fitted = st.fit_window(short)
    assert fitted.shape == (128000,) and fitted[:112000].sum() == 0 and fitted[-1] == 1
    long = np.arange(200000, dtype=np.float32)
    assert st.fit_window(long)[0] == 200000 - 128000


def test_a_finished_question_scores_high_a_half_read_number_low(model):
    hours = phone_to_16k(read_wav(AUDIO / "en_hours.wav")[0])
    phone = phone_to_16k(read_wav(AUDIO / "en_phone.wav")[0])
    finished = model.predict(hours[: int(2.7 * 16000)])  # "What are your opening hours on Friday?"
    half = model.predict(phone[int(0.3 * 16000): int(3.3 * 16000)])  # "My number is 054, 123,"
    assert finished is not None and half is not None
    assert finished > 0.7 and half < 0.3, (finished, half)


def test_input_forms_and_short_audio(model):
    pcm = phone_to_16k(read_wav(AUDIO / "en_yes.wav")[0])[: 16000]
    as_int16 = (pcm * 32767).astype(np.int16)
    assert model.predict(pcm) == pytest.approx(model.predict(as_int16), abs=0.02)
    assert model.predict(pcm[:800]) is None  # 50 ms: nothing to judge
    assert asyncio.run(model.predict_async(pcm)) == pytest.approx(model.predict(pcm))
    with pytest.raises(TypeError):
        model.predict(pcm.astype(np.float64))
    with pytest.raises(ValueError):
        model.predict(pcm.reshape(2, -1))


def test_load_errors(tmp_path):
    with pytest.raises(st.TurnModelError) as missing:
        st.SmartTurnModel.load(tmp_path / "nope.onnx")
    assert missing.value.code == "model_missing"
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(st.TurnModelError) as invalid:
        st.SmartTurnModel.load(bad)
    assert invalid.value.code == "model_invalid"
