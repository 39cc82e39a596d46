"""The vectors of question words, kept between searches.

Query expansion (vocab.py) needs the vector of each question word the KB does not know. They
are embedded in the same model call as the question, and each costs as much as a short
question (~15-30 ms with embeddinggemma-300M on 2 cores: bench/results/capacity.md). Callers
repeat words ("appointment", "tomorrow") within a call (the speculative reply in a pause and
the committed turn embed the same words) and across calls, so the vectors are kept: a word's
vector depends only on the word and the model, never on the question. Thread-safe.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

import numpy as np

WORDS_KEPT = 4096          # ~6 MB of 384-768-wide float32 vectors at most


class WordVectors:
    """Least-recently-used word -> vector, for one embedding model."""

    def __init__(self, capacity: int = WORDS_KEPT) -> None:
        self._capacity = capacity
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def known(self, words: Iterable[str]) -> dict[str, np.ndarray]:
        """The kept vectors of these words (the others are missing from the result)."""
        with self._lock:
            found = {w: self._vectors[w] for w in words if w in self._vectors}
            for word in found:
                self._vectors.move_to_end(word)
            return found

    def keep(self, vectors: dict[str, np.ndarray]) -> None:
        with self._lock:
            for word, vector in vectors.items():
                self._vectors[word] = vector
                self._vectors.move_to_end(word)
            while len(self._vectors) > self._capacity:
                self._vectors.popitem(last=False)

    def __len__(self) -> int:
        return len(self._vectors)
