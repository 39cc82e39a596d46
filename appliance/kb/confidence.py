"""Does the knowledge base answer the question at all? Decided once, from the top candidates.

Retrieval ranks passages; ranks say nothing about whether any of them answers. That is decided
here from a few absolute signals of the best candidates (``Features``), by a small logistic model
whose coefficients are stored per embedding model (calibration.py) and fitted on a dev
business's answerable vs out-of-KB questions (bench/kb_calibrate.py). When it says yes, the
search returns its best ``k`` passages; when no, nothing, and the bot says it does not know.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

TOP = 3          # the features read the first TOP passages of the fused ranking


@dataclass(frozen=True)
class Features:
    """Signals of the best candidates. Vector ones are 0 when the model cannot read the text."""

    similarity: float     # best cosine similarity of a top passage to the question
    coverage: float       # best word coverage (coverage.py) of a top passage, 0..1
    title: float          # best similarity of a passage title to the question
    margin: float         # vector top-1 similarity minus the runner-up's
    agreed: float         # 1: the fused first is first for the vectors and a word retriever
    readable: float       # 1: the embedding model reads the question's script
    unknown: float = 0.0  # weighted share of question words the index has no trace of

    def values(self) -> tuple[float, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))


FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Features))


@dataclass(frozen=True)
class Logistic:
    """P(answerable) = sigmoid(bias + weights . features); answer when >= ``threshold``."""

    weights: tuple[float, ...]     # in FEATURE_NAMES order
    bias: float
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if len(self.weights) != len(FEATURE_NAMES):
            raise ValueError(f"{len(self.weights)} weights for {len(FEATURE_NAMES)} features")

    def probability(self, features: Features) -> float:
        z = self.bias + sum(w * x for w, x in zip(self.weights, features.values()))
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    def answers(self, features: Features) -> bool:
        return self.probability(features) >= self.threshold


def features(similarities: list[float | None], coverages: list[float],
             title_best: float | None, vector_top: list[float], agreed: bool,
             readable: bool, unknown: float = 0.0) -> Features:
    """Features from the top candidates' similarities and coverages (fused order), the best
    title similarity, the two best vector similarities, and whether the retrievers agreed."""
    sims = [s for s in similarities if s is not None] + vector_top[:1]
    margin = vector_top[0] - vector_top[1] if len(vector_top) > 1 else 0.0
    return Features(
        similarity=max(sims, default=0.0) if readable else 0.0,
        coverage=max(coverages, default=0.0),
        title=(title_best or 0.0) if readable else 0.0,
        margin=margin if readable else 0.0,
        agreed=1.0 if agreed else 0.0,
        readable=1.0 if readable else 0.0,
        unknown=unknown)
