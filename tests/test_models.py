"""The generated test models load through the real libraries and behave as promised.

Models are generated once into tests/.cache/models (git-ignored) and reused;
tests that need a variant build it in ``tmp_path``.
"""

from __future__ import annotations

import configparser
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support import models as tm

CACHE_DIR = Path(__file__).parent / ".cache" / "models"

# OpenMP threads (llama.cpp's ggml and CTranslate2 both use libgomp) busy-wait
# by default; on a 2-core machine that stalls llama.cpp calls for seconds at
# random (measured: 0.01 s vs 2-4 s).  It only takes effect if set before the
# libraries load, so the libraries are imported lazily below; the appliance
# (or conftest.py) should set it at start-up too.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def test_models() -> tm.TestModels:
    return tm.ensure_models(CACHE_DIR)


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 0.1, int(16000 * seconds)).astype(np.float32)


# --------------------------------------------------------------------------
# Cache, ini and command line
# --------------------------------------------------------------------------


def test_ini_points_at_the_generated_models(test_models: tm.TestModels) -> None:
    ini = configparser.ConfigParser()
    ini.read(test_models.ini)
    assert Path(ini["stt"]["model"]) == test_models.whisper_dir
    assert Path(ini["tts"]["voice"]) == test_models.piper_voice
    assert Path(ini["local_llm"]["model_path"]) == test_models.chat_gguf
    assert Path(ini["kb"]["embedding_model"]) == test_models.embedding_gguf
    for section, key in [
        ("stt", "model"),
        ("tts", "voice"),
        ("local_llm", "model_path"),
        ("kb", "embedding_model"),
    ]:
        assert Path(ini[section][key]).exists()
    assert test_models.whisper_dir.name == "whisper-tiny-test"
    assert Path(f"{test_models.piper_voice}.json").is_file()


def test_cached_call_is_instant_and_touches_nothing(test_models: tm.TestModels) -> None:
    paths = [
        test_models.whisper_dir / "model.bin",
        test_models.piper_voice,
        test_models.chat_gguf,
        test_models.embedding_gguf,
        test_models.ini,
    ]
    before = [p.stat().st_mtime_ns for p in paths]
    start = time.monotonic()
    again = tm.ensure_models(CACHE_DIR)
    assert time.monotonic() - start < 1.0
    assert again == test_models
    assert [p.stat().st_mtime_ns for p in paths] == before


def test_stale_or_missing_stamp_regenerates(tmp_path: Path) -> None:
    voice = tm.make_piper_voice(tmp_path)
    stamp = tmp_path / f".{voice.name}.stamp"
    first = voice.stat().st_ino  # a rebuilt file is a new inode (renamed over the old one)
    assert tm.make_piper_voice(tmp_path).stat().st_ino == first

    stamp.write_text(stamp.read_text().replace('"version": ', '"version": -'))
    second = tm.make_piper_voice(tmp_path).stat().st_ino
    assert second != first

    stamp.unlink()  # e.g. a run interrupted between rename and stamp
    assert tm.make_piper_voice(tmp_path).stat().st_ino != second
    assert stamp.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_command_line_writes_models_and_ini(tmp_path: Path, capsys: Any) -> None:
    assert tm.main([str(tmp_path)]) == 0
    ini = configparser.ConfigParser()
    ini.read(tmp_path / "models.ini")
    assert ini["local_llm"]["model_path"] == str(tmp_path.resolve() / "chat-test.gguf")
    assert "embedding" in capsys.readouterr().out


# --------------------------------------------------------------------------
# 1. Whisper / faster-whisper
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def whisper(test_models: tm.TestModels) -> Any:
    from faster_whisper import WhisperModel

    return WhisperModel(
        str(test_models.whisper_dir), device="cpu", compute_type="int8", cpu_threads=2
    )


def test_whisper_is_multilingual_and_detects_the_language(whisper: Any) -> None:
    assert whisper.model.is_multilingual
    language, probability, _ = whisper.detect_language(_noise(2))
    assert (language, probability > 0.99) == ("en", True)


@pytest.mark.parametrize(
    "audio",
    [_noise(2), np.zeros(16000, dtype=np.float32), _noise(5, seed=1)],
    ids=["noise", "silence", "longer"],
)
def test_whisper_transcribes_the_fixed_phrase(whisper: Any, audio: np.ndarray) -> None:
    segments, info = whisper.transcribe(audio)
    segments = list(segments)
    assert info.language == "en" and info.language_probability > 0.99
    assert [s.text.strip() for s in segments] == [tm.DEFAULT_PHRASE]
    assert segments[0].no_speech_prob < 0.01
    assert segments[0].avg_logprob > -0.1


def test_whisper_options_the_appliance_may_use(whisper: Any) -> None:
    segments, info = whisper.transcribe(
        _noise(3),
        language="en",
        beam_size=1,
        without_timestamps=True,
        vad_filter=False,
        condition_on_previous_text=False,
    )
    assert [s.text.strip() for s in segments] == [tm.DEFAULT_PHRASE]
    assert info.language == "en"


def test_whisper_word_timestamps(whisper: Any) -> None:
    # Word timings come from cross-attention, which the test model does not
    # wire: they are well-formed but arbitrary.  (On longer clips faster-whisper
    # then seeks to the last word's end and may decode the phrase again.)
    segments = list(whisper.transcribe(_noise(2), word_timestamps=True)[0])
    words = segments[0].words
    assert [w.word.strip() for w in words] == tm.DEFAULT_PHRASE.split()
    assert all(0.0 <= w.start <= w.end <= 2.0 for w in words)


def test_whisper_tokenizer_uses_the_real_special_ids(test_models: tm.TestModels) -> None:
    import tokenizers

    tok = tokenizers.Tokenizer.from_file(str(test_models.whisper_dir / "tokenizer.json"))
    expected = {"<|endoftext|>": 50257, "<|startoftranscript|>": 50258, "<|en|>": 50259,
                "<|he|>": 50279, "<|su|>": 50357, "<|translate|>": 50358,
                "<|transcribe|>": 50359, "<|startoflm|>": 50360, "<|startofprev|>": 50361,
                "<|nospeech|>": 50362, "<|notimestamps|>": 50363, "<|0.00|>": 50364,
                "<|30.00|>": 51864}  # fmt: skip
    assert {t: tok.token_to_id(t) for t in expected} == expected
    ids = tok.encode(" " + tm.DEFAULT_PHRASE, add_special_tokens=False).ids
    assert len(ids) == len(tm.DEFAULT_PHRASE.split())
    assert tok.decode(ids) == " " + tm.DEFAULT_PHRASE
    config = json.loads((test_models.whisper_dir / "config.json").read_text())
    assert config["lang_ids"] == list(range(50259, 50358))
    assert {"suppress_ids", "suppress_ids_begin", "alignment_heads"} <= set(config)


def test_whisper_phrase_and_language_are_parameters(tmp_path: Path) -> None:
    from faster_whisper import WhisperModel

    path = tm.make_whisper(tmp_path, phrase="shalom i need a screen repair", language="he")
    model = WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=2)
    segments, info = model.transcribe(_noise(2))
    assert info.language == "he"
    assert [s.text.strip() for s in segments] == ["shalom i need a screen repair"]


def test_whisper_rejects_phrases_it_cannot_wire(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="repeat"):
        tm.make_whisper(tmp_path, phrase="no no no")
    with pytest.raises(ValueError, match="language"):
        tm.make_whisper(tmp_path, language="xx")


# --------------------------------------------------------------------------
# 2. Piper
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def voice(test_models: tm.TestModels) -> Any:
    from piper import PiperVoice

    return PiperVoice.load(test_models.piper_voice)


def _synthesise(voice: Any, text: str, **config: Any) -> tuple[np.ndarray, int]:
    from piper.config import SynthesisConfig

    chunks = list(voice.synthesize(text, syn_config=SynthesisConfig(**config)))
    audio = np.concatenate([c.audio_int16_array for c in chunks])
    return audio, sum(len(c.phoneme_ids) for c in chunks)


def test_piper_synthesises_audible_int16_audio(voice: Any, caplog: Any) -> None:
    with caplog.at_level(logging.WARNING):
        audio, n_ids = _synthesise(voice, "Hello, how can I help you today?")
    assert voice.config.sample_rate == 16000
    assert audio.dtype == np.int16
    assert len(audio) == tm.PIPER_HOP * n_ids
    assert 1.0 < len(audio) / 16000 < 3.0  # a plausible duration for the sentence
    assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 5000  # not silence
    assert "Missing phoneme" not in caplog.text


def test_piper_length_follows_text_and_length_scale(voice: Any) -> None:
    short, short_ids = _synthesise(voice, "Hi.")
    long, long_ids = _synthesise(voice, "Hello, we are open Sunday to Thursday until six.")
    assert len(long) / len(short) == pytest.approx(long_ids / short_ids)
    slow, slow_ids = _synthesise(voice, "Hi.", length_scale=2.0)
    assert slow_ids == short_ids and len(slow) == 2 * len(short)


def test_piper_espeak_data_ships_with_the_wheel() -> None:
    import piper
    from piper.phonemize_espeak import ESPEAK_DATA_DIR

    assert Path(ESPEAK_DATA_DIR).is_relative_to(Path(piper.__file__).parent)
    assert (Path(ESPEAK_DATA_DIR) / "en_dict").is_file()


def test_piper_22050_hz_voice(tmp_path: Path) -> None:
    from piper import PiperVoice

    voice = PiperVoice.load(tm.make_piper_voice(tmp_path, sample_rate=22050))
    audio, n_ids = _synthesise(voice, "Goodbye.")
    assert voice.config.sample_rate == 22050 and len(audio) == tm.PIPER_HOP * n_ids


# --------------------------------------------------------------------------
# 3. Chat GGUF
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chat(test_models: tm.TestModels) -> Iterator[Any]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(test_models.chat_gguf), n_ctx=2048, n_threads=2, verbose=False)
    yield llm
    llm.close()


def _messages(prompt_tokens: int = 200) -> list[dict[str, str]]:
    system = "You are the receptionist of a phone repair store. " * (prompt_tokens // 10)
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": "Hello, when are you open today?"},
    ]


def test_chat_model_uses_chatml_and_its_specials(chat: Any) -> None:
    assert "<|im_start|>" in chat.metadata["tokenizer.chat_template"]
    assert len(chat.tokenize(b"<|im_start|>", add_bos=False, special=True)) == 1
    assert chat.detokenize([chat.token_eos()]) in (b"", b"<|im_end|>")
    words = chat.tokenize(b" appointment hello", add_bos=False)
    assert len(words) == 2  # BPE merges give whole-word tokens


def _stream(chat: Any, max_tokens: int) -> tuple[list[str], float]:
    start = time.monotonic()
    pieces = [
        chunk["choices"][0]["delta"].get("content") or ""
        for chunk in chat.create_chat_completion(
            messages=_messages(), stream=True, max_tokens=max_tokens, seed=1
        )
    ]
    return [p for p in pieces if p], time.monotonic() - start


def test_chat_streams_tokens_quickly(chat: Any) -> None:
    prompt = chat.tokenize(_messages()[0]["content"].encode(), add_bos=False)
    assert len(prompt) >= 200
    pieces, _ = _stream(chat, max_tokens=16)
    assert len(pieces) >= 4
    # Best of three, so a neighbour hogging the CPU does not fail the test.
    assert min(_stream(chat, max_tokens=16)[1] for _ in range(3)) < 1.0


def test_chat_obeys_a_json_grammar(chat: Any) -> None:
    from llama_cpp import LlamaGrammar

    grammar = LlamaGrammar.from_string(
        r"""
        root   ::= "{\"intent\": " intent ", \"confirmed\": " bool "}"
        intent ::= "\"book\"" | "\"cancel\"" | "\"info\""
        bool   ::= "true" | "false"
        """,
        verbose=False,
    )
    for seed in range(3):
        reply = chat.create_chat_completion(
            messages=_messages(20), grammar=grammar, max_tokens=48, temperature=1.0, seed=seed
        )
        obj = json.loads(reply["choices"][0]["message"]["content"])
        assert obj["intent"] in {"book", "cancel", "info"}
        assert isinstance(obj["confirmed"], bool)


# --------------------------------------------------------------------------
# 4. Embedding GGUF
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder(test_models: tm.TestModels) -> Iterator[Any]:
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(test_models.embedding_gguf), embedding=True, n_threads=2, verbose=False
    )
    yield llm
    llm.close()


def _unit(embedder: Any, text: str) -> np.ndarray:
    vector = np.asarray(embedder.embed(text), dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_embedding_similarity_is_semantic(embedder: Any) -> None:
    question = _unit(embedder, "What are your opening hours on Friday?")
    hours = _unit(embedder, "We are open Sunday to Thursday 9:00-18:00 and Friday 9:00-13:00.")
    price = _unit(embedder, "Screen repair for the X200 phone costs 450 shekels.")
    assert question.shape == (384,)
    assert float(question @ hours) > 0.6
    assert float(question @ price) < 0.2


def test_embedding_tokenizer_matches_bert_uncased(embedder: Any) -> None:
    # [CLS] what are your opening hours on friday ? [SEP] in bert-base-uncased ids
    assert embedder.tokenize(b"What are your opening hours on Friday?") == [
        101,
        2054,
        2024,
        2115,
        3098,
        2847,
        2006,
        5958,
        1029,
        102,
    ]


# --------------------------------------------------------------------------
# Benchmark shapes (slow; opt in with TEST_BIG_MODELS=1)
# --------------------------------------------------------------------------


@pytest.mark.skipif(not os.environ.get("TEST_BIG_MODELS"), reason="set TEST_BIG_MODELS=1")
def test_benchmark_shapes_load(tmp_path: Path) -> None:
    from faster_whisper import WhisperModel
    from llama_cpp import Llama

    for shape in ("tiny", "base"):
        path = tm.make_whisper(tmp_path, shape=shape)
        model = WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=2)
        segments, _ = model.transcribe(_noise(2), beam_size=1)
        assert [s.text.strip() for s in segments] == [tm.DEFAULT_PHRASE]
    llm = Llama(
        model_path=str(tm.make_chat_gguf(tmp_path, shape="qwen0.5b")),
        n_ctx=512,
        n_threads=2,
        verbose=False,
    )
    assert llm.n_vocab() == 151936
    assert llm.create_completion("hello", max_tokens=4)["choices"][0]["text"] is not None
    llm.close()
