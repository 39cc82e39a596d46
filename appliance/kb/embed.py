"""Sentence embeddings from a GGUF model through llama-cpp-python.

One ``Embedder`` per process, built by whoever loads the models at start-up (never a module
global) and closed explicitly. Vectors are float32 and L2-normalised, so a dot product is the
cosine similarity. Calls are serialised by a lock: a llama.cpp context is not thread-safe.

Some embedding models are trained with instructions in front of the text ("query: ...",
"passage: ..."); ``prompts_for`` knows the families we may ship and the Embedder applies them,
so callers only say whether they embed a question or a passage.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from ..llm.llama_load import without_amx

log = logging.getLogger(__name__)


class EmbeddingError(Exception):
    """The embedding model cannot be loaded or used. ``code`` is a short machine code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Prompts:
    query: str = ""
    passage: str = ""


class TextEmbedder(Protocol):
    """What the indexer and the search need; ``Embedder`` is the real one, tests have fakes."""

    name: str
    dimension: int

    @property
    def identity(self) -> str: ...

    def embed_query(self, text: str) -> np.ndarray: ...

    def embed_passages(self, texts: Sequence[str], batch: int = 16) -> np.ndarray: ...


# Matched against the lower-cased file name and GGUF general.name, first match wins.
_PROMPTS: tuple[tuple[str, Prompts], ...] = (
    ("embeddinggemma", Prompts("task: search result | query: ", "title: none | text: ")),
    ("e5-", Prompts("query: ", "passage: ")),
    ("nomic-embed", Prompts("search_query: ", "search_document: ")),
    ("qwen3-embedding", Prompts(
        "Instruct: Given a customer question, retrieve passages that answer it\nQuery: ", "")),
)


def model_family_name(name: str) -> str:
    """"Multilingual E5 Small" / "multilingual_e5_small.gguf" -> "multilingual-e5-small...".

    GGUF converters write general.name with spaces; files use dashes or underscores.
    """
    return re.sub(r"[\s_]+", "-", name.strip().lower())


def prompts_for(*names: str) -> Prompts:
    for name in names:
        lowered = model_family_name(name)
        for needle, prompts in _PROMPTS:
            if needle in lowered:
                return prompts
    return Prompts()


class Embedder:
    """Embeds questions and passages with one GGUF model.

    ``threads``: CPU threads for llama.cpp (2 on the reference box). ``n_ctx``: tokens per text;
    longer texts are truncated (passages are chunked well below 512 tokens).
    """

    def __init__(self, model_path: Path | str, threads: int = 2, n_ctx: int = 512,
                 prompts: Prompts | None = None) -> None:
        from llama_cpp import LLAMA_POOLING_TYPE_NONE, Llama

        self.path = Path(model_path)
        if not self.path.is_file():
            raise EmbeddingError("model_missing", f"embedding model {self.path} does not exist")
        try:
            with without_amx():    # see llm/llama_load.py: AMX buffers die with SIGILL here
                self._llm: Llama | None = Llama(
                    model_path=str(self.path), embedding=True, n_threads=threads,
                    n_threads_batch=threads, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
                    verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise EmbeddingError("model_load", f"cannot load embedding model {self.path}: "
                                               f"{exc}") from exc
        self._lock = threading.Lock()
        metadata = self._llm.metadata
        self.name = metadata.get("general.name") or self.path.stem
        self.dimension = int(self._llm.n_embd())
        self.size = self.path.stat().st_size
        self._mean_pool = self._llm.pooling_type() == LLAMA_POOLING_TYPE_NONE
        self.prompts = prompts if prompts is not None else prompts_for(self.path.name, self.name)
        log.info("embedding model %s loaded: %d dimensions, %d threads%s", self.name,
                 self.dimension, threads, ", mean pooling in Python" if self._mean_pool else "")

    @property
    def identity(self) -> str:
        """What the index records: a different value means the vectors must be rebuilt."""
        return f"{self.name}|{self.path.name}|{self.size}|{self.dimension}"

    def embed_query(self, text: str) -> np.ndarray:
        """One question -> (dimension,) float32, unit length."""
        return self._embed([self.prompts.query + text])[0]

    def embed_query_and_words(self, text: str, words: Sequence[str]
                              ) -> tuple[np.ndarray, np.ndarray]:
        """A question and some of its words (as passages) in one model call."""
        out = self._embed([self.prompts.query + text]
                          + [self.prompts.passage + w for w in words])
        return out[0], out[1:]

    def embed_passages(self, texts: Sequence[str], batch: int = 16) -> np.ndarray:
        """Passages -> (len(texts), dimension) float32, unit length."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), batch):
            chunk = [self.prompts.passage + t for t in texts[start:start + batch]]
            out[start:start + len(chunk)] = self._embed(chunk)
        return out

    def _embed(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            if self._llm is None:
                raise EmbeddingError("closed", "the embedder was closed")
            raw = self._llm.embed(texts, normalize=False, truncate=True)
        if self._mean_pool:
            vectors = np.stack([np.asarray(tokens, dtype=np.float32).mean(axis=0)
                                for tokens in raw])
        else:
            vectors = np.asarray(raw, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def close(self) -> None:
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None

    def __enter__(self) -> "Embedder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
