"""The benchmark's model set: random weights, real architectures' shapes, generated locally.

- Whisper tiny and base: tests/support/models.py (real dimensions, random encoder, a decoder wired to
  always emit one phrase), CTranslate2 int8 at load time as the appliance loads them.
- Chat: Qwen2.5-1.5B's shape (the manifest's default offline model) and Qwen2.5-0.5B's, with
  tests/support/models.py's GGUF writer. The manifest ships Q4_K_M; gguf-py cannot write k-quants, so
  these are Q4_0 layers + Q8_0 embeddings (the same 4.5/8.5 bits per weight class). One change:
  tests/support/models.py fills the unused vocabulary with "[unusedN]" tokens, and a random model picks
  those almost always, so it "says" "[unused3][unused7]..." without a space or a comma: the
  clause splitter would never find a first clause and the voice would spell brackets. Here the
  fillers are short pronounceable pseudo-words with a leading space, every 9th followed by a
  comma and every 14th by a full stop, so the text streams, splits and is spoken like a reply.
  The compute per token does not depend on which token is sampled. And the ordinary part of
  the vocabulary is a byte-level BPE trained here (see _trained_bpe): with tests/support/models.py's
  vocabulary (bytes and a few words) every prompt is ~3x as many tokens as with Qwen's own
  tokenizer, which would triple the local model's prefill time.
- Embedding: the manifest's default is embeddinggemma-300M (Q8_0: 24 layers, 768 wide, FFN
  1152, 262k-token vocabulary). gguf-py cannot write its tokenizer without the real files, so
  the stand-in is a BERT-architecture GGUF with the same depth, width and FFN size, random
  weights in Q8_0, and all-MiniLM-L6-v2's WordPiece vocabulary: per-token compute within a few
  percent of the real model (its attention is grouped-query, this one's is not; the vocabulary
  lookup costs nothing). The file name starts with "embeddinggemma" so the appliance applies
  that model's query/passage prompts, as it would for the real one.
- Voice: bench/vits_voice.py (Piper medium's VITS architecture, random weights).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.support import models as tm

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache" / "models"

QWEN_1_5B = tm.ChatDims("qwen2", 1536, 28, 12, 2, 8960, 32768, 151936, 1000000.0, True, True)
GEMMA_EMBED = {"n_layer": 24, "n_embd": 768, "n_ff": 1152, "n_head": 12}
EMBED_NAME = "embeddinggemma-300m-shape-bert-q8_0.gguf"


@dataclass(frozen=True)
class BenchModels:
    whisper: dict[str, Path]     # "tiny", "base"
    chat: dict[str, Path]        # "qwen1.5b", "qwen0.5b"; "test" (tiny) where it is unused
    embedding: Path
    voice: Path

    def describe(self) -> dict[str, str]:
        return {
            "whisper tiny": "CTranslate2, 4+4 layers x 384 (whisper-tiny's shape), int8",
            "whisper base": "CTranslate2, 6+6 layers x 512 (whisper-base's shape), int8",
            "chat qwen1.5b": "GGUF qwen2, 28 layers x 1536, 12/2 heads, FFN 8960, vocab 151,936"
                             " (Qwen2.5-1.5B's shape), Q4_0 + Q8_0 embeddings",
            "chat qwen0.5b": "GGUF qwen2, 24 layers x 896, 14/2 heads, FFN 4864, vocab 151,936"
                             " (Qwen2.5-0.5B's shape), Q4_0 + Q8_0 embeddings",
            "embedding": "GGUF BERT, 24 layers x 768, FFN 1152 (embeddinggemma-300M's depth and"
                         " width), Q8_0",
            "voice": "ONNX VITS, Piper medium's architecture (22.05 kHz, ~15.7 M parameters)",
        }


def _pseudo_words(taken: set[str]):
    """ĠCV, ĠCVC, ĠCVCV, ĠCVCVC ... in GPT-2 byte symbols ("Ġ" is the space)."""
    import itertools

    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    syllables = [c + v for c in consonants for v in vowels]
    count = 0
    for n in itertools.count(1):
        for parts in itertools.product(syllables, repeat=n):
            for tail in ("", *consonants):
                word = "".join(parts) + tail
                count += 1
                mark = "." if count % 14 == 0 else "," if count % 9 == 0 else ""
                token = "\u0120" + word + mark
                if token not in taken:
                    yield token


def _bpe_corpus():
    """English: Python's docstrings and BERT's word list (weighted by rank, so common words
    become single tokens); Hebrew and Russian: every letter pair, so those scripts tokenize at
    about two characters per token (Qwen2.5: about 2-3) instead of one byte per token."""
    import ast
    import glob
    import re
    import sysconfig

    stdlib = sysconfig.get_paths()["stdlib"]
    for path in sorted(glob.glob(f"{stdlib}/**/*.py", recursive=True)):
        try:
            tree = ast.parse(Path(path).read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                 ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    yield doc
    hebrew = [chr(c) for c in range(0x05D0, 0x05EB)]
    cyrillic = [chr(c) for c in range(0x0410, 0x0450)]
    for letters in (hebrew, cyrillic):
        for a in letters:
            yield (" " + a) * 50 + (a * 2) * 20
            for b in letters:
                yield (" " + a + b) * 4 + (a + b) * 4
    vocab = (tm.minilm_source_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines()
    words = [w for w in vocab if re.fullmatch(r"[a-z]+", w)]
    for rank, word in enumerate(words):
        n = max(2, 40 - rank // 600)
        yield (" " + word) * n
        yield (" " + word.capitalize()) * max(1, n // 3)


def _trained_bpe(size: int = 60000) -> tuple[list[str], list[str]]:
    """(tokens in id order, merges "a b") of a byte-level BPE trained here: on kb/ it gives
    2.4-3.4 characters per token (Qwen2.5's real tokenizer: about 4 on English prose, digits
    one by one as here), where tests/support/models.py's vocabulary gives about one."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_bpe_corpus(), trainer)
    model = json.loads(tok.to_str())["model"]
    tokens = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return tokens, merges


def _speakable_chat(outdir: Path, shape: str, dims) -> Path:
    name = f"chat-{shape}-shape-speakable.gguf"

    def build(tmp: Path) -> None:
        from gguf import TokenType

        original = tm._chat_vocab
        trained, merges = _trained_bpe()

        def vocab(n_vocab):
            words = _pseudo_words(set(trained))
            tokens = trained + [next(words) for _ in range(tm._QWEN_SPECIAL_BASE - len(trained))]
            specials = {name: len(tokens) + i
                        for i, name in enumerate(("<|endoftext|>", "<|im_start|>", "<|im_end|>"))}
            tokens += list(specials)
            tokens += [f"<|extra_{i}|>" for i in range(n_vocab - len(tokens))]
            types = [int(TokenType.NORMAL)] * tm._QWEN_SPECIAL_BASE
            types += [int(TokenType.CONTROL)] * (len(tokens) - len(types))
            return tokens, types, merges, specials

        tm._chat_vocab = vocab
        try:
            tm._write_chat_gguf(tmp / name, dims, 0, True)
        finally:
            tm._chat_vocab = original

    return tm._build_cached(outdir, [name], "chat", {"shape": shape, "seed": 0,
                                                     "vocab": "bpe-60k-speakable-2"}, build)


def _write_embedding(path: Path) -> None:
    import gguf
    from gguf import GGMLQuantizationType, quants

    model_dir = tm.minilm_source_dir()
    tokens, types = tm._bert_vocab(model_dir)
    d, n_layer, n_ff = GEMMA_EMBED["n_embd"], GEMMA_EMBED["n_layer"], GEMMA_EMBED["n_ff"]
    w = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    w.add_name("embeddinggemma-300m-shape (random, BERT layout)")
    w.add_context_length(2048)
    w.add_embedding_length(d)
    w.add_feed_forward_length(n_ff)
    w.add_block_count(n_layer)
    w.add_head_count(GEMMA_EMBED["n_head"])
    w.add_layer_norm_eps(1e-12)
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.MEAN)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_token_type_count(2)
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("bert-bge")
    w.add_token_list(tokens)
    w.add_token_types(types)
    gguf.SpecialVocab(model_dir, n_vocab=len(tokens),
                      special_token_types=("bos", "eos", "unk", "sep", "pad", "mask")
                      ).add_to_gguf(w, quiet=True)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    rng = np.random.default_rng(0)

    def mat(rows: int, cols: int) -> np.ndarray:
        return rng.normal(0, cols ** -0.5, (rows, cols)).astype(np.float32)

    def add(name: str, data: np.ndarray) -> None:
        if data.ndim == 1 or name in ("position_embd.weight", "token_types.weight"):
            w.add_tensor(name, data.astype(np.float32))
        else:
            w.add_tensor(name, quants.quantize(data, GGMLQuantizationType.Q8_0),
                         raw_dtype=GGMLQuantizationType.Q8_0)

    ones, zeros = np.ones(d, np.float32), np.zeros(d, np.float32)
    add("token_embd.weight", mat(len(tokens), d))
    add("token_types.weight", mat(2, d))
    add("position_embd.weight", mat(2048, d))
    add("token_embd_norm.weight", ones)
    add("token_embd_norm.bias", zeros)
    for i in range(n_layer):
        p = f"blk.{i}."
        for t in ("attn_q", "attn_k", "attn_v", "attn_output"):
            add(p + t + ".weight", mat(d, d))
            add(p + t + ".bias", zeros)
        add(p + "attn_output_norm.weight", ones)
        add(p + "attn_output_norm.bias", zeros)
        add(p + "ffn_up.weight", mat(n_ff, d))
        add(p + "ffn_up.bias", np.zeros(n_ff, np.float32))
        add(p + "ffn_down.weight", mat(d, n_ff))
        add(p + "ffn_down.bias", zeros)
        add(p + "layer_output_norm.weight", ones)
        add(p + "layer_output_norm.bias", zeros)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _embedding(outdir: Path) -> Path:
    return tm._build_cached(outdir, [EMBED_NAME], "embedding-shape", dict(GEMMA_EMBED),
                            lambda tmp: _write_embedding(tmp / EMBED_NAME))


def ensure(outdir: Path = CACHE, chats: tuple[str, ...] = ("qwen1.5b", "qwen0.5b")) -> BenchModels:
    """Build whatever is missing (the 1.5B takes ~1 min the first time, then it is cached)."""
    from .vits_voice import make_voice

    outdir = Path(outdir)
    chat = {"test": tm.make_chat_gguf(outdir, shape="test")}
    if "qwen1.5b" in chats:
        chat["qwen1.5b"] = _speakable_chat(outdir, "qwen1.5b", QWEN_1_5B)
    if "qwen0.5b" in chats:
        chat["qwen0.5b"] = _speakable_chat(outdir, "qwen0.5b", tm.CHAT_SHAPES["qwen0.5b"])
    return BenchModels(
        whisper={s: tm.make_whisper(outdir, shape=s) for s in ("tiny", "base")},
        chat=chat,
        embedding=_embedding(outdir),
        voice=make_voice(outdir),
    )
