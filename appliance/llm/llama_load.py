"""Opening a GGUF with llama-cpp-python the way the local model needs it."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator


def decode_threads(threads: int) -> int:
    """Threads for token-by-token decoding: one fewer than for prompt evaluation (batch), so
    the call's own Piper, which starts on the first clause while the model goes on, keeps a
    core. Measured on this 2-core box under load (bench/results/local_llm.md): 2 decode
    threads competing with other work spent ~10x the CPU of one (llama.cpp's threads
    busy-wait for each other at every layer), while one thread decodes a clause faster than
    Piper speaks it."""
    return max(1, threads - 1)


def open_llama(path: Path, context_tokens: int, threads: int, vocab_only: bool = False) -> Any:
    """A `Llama` on `path`, evaluating prompts on `threads` and decoding on
    `decode_threads(threads)`. Flash attention stays off: on this CPU it made prefill and
    decode slower (bench/results/local_llm.md). swa_full: models with sliding-window
    attention (Gemma 3) otherwise keep only the last window of KV cells for those layers,
    and llama-cpp-python's prefix reuse does not check for pruned cells: a reused prefix
    would miss them.
    `vocab_only`: the tokenizer and metadata only (no weights, ~0.1 s), to count tokens."""
    from llama_cpp import Llama

    with without_amx():
        return Llama(model_path=str(path), n_ctx=context_tokens,
                     n_threads=decode_threads(threads),
                     n_threads_batch=threads, n_batch=512, swa_full=True,
                     vocab_only=vocab_only, verbose=False)


@contextlib.contextmanager
def without_amx() -> Iterator[None]:
    """On a CPU that advertises AMX, load the weights without llama.cpp's extra buffer types.

    A native llama.cpp build puts quantised weights in an AMX buffer when the CPU lists
    amx_tile; under virtualisation that does not grant the tile state (this very box), the
    first matrix multiply dies with SIGILL, killing the whole process. Without the extra
    buffers the AVX-512 kernels run (weight repacking is lost too, which matters little
    next to AMX's absence). `Llama()` takes no model-params argument for it, so the default
    params are patched for the duration of the load (start-up, one thread)."""
    import llama_cpp.llama_cpp as lib

    if not _cpu_has_amx():
        yield
        return
    original = lib.llama_model_default_params

    def params() -> Any:
        p = original()
        p.use_extra_bufts = False
        return p

    lib.llama_model_default_params = params
    try:
        yield
    finally:
        lib.llama_model_default_params = original


def _cpu_has_amx() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return "amx_tile" in line.split()
    except OSError:
        pass
    return False
