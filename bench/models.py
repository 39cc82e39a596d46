"""The benchmark's model set: random weights, real architectures' shapes, generated locally.

- Whisper tiny and base: tests/models.py (real dimensions, random encoder, a decoder wired to
  always emit one phrase), CTranslate2 int8 at load time as the appliance loads them.
- Chat: Qwen2.5-1.5B's shape (the manifest's default offline model) and Qwen2.5-0.5B's, with
  tests/models.py's GGUF writer. The manifest ships Q4_K_M; gguf-py cannot write k-quants, so
  these are Q4_0 layers + Q8_0 embeddings (the same 4.5/8.5 bits per weight class).
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

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests import models as tm

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


def _chat_1_5b(outdir: Path) -> Path:
    name = "chat-qwen1.5b-shape.gguf"
    return tm._build_cached(outdir, [name], "chat", {"shape": "qwen1.5b", "seed": 0},
                            lambda tmp: tm._write_chat_gguf(tmp / name, QWEN_1_5B, 0, True))


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
        chat["qwen1.5b"] = _chat_1_5b(outdir)
    if "qwen0.5b" in chats:
        chat["qwen0.5b"] = tm.make_chat_gguf(outdir, shape="qwen0.5b")
    return BenchModels(
        whisper={s: tm.make_whisper(outdir, shape=s) for s in ("tiny", "base")},
        chat=chat,
        embedding=_embedding(outdir),
        voice=make_voice(outdir),
    )
