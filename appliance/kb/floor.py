"""The hand floors: passage by passage, does this one answer the question? (models without a
fitted no-answer model in calibration.py; confidence.py is the other way)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Mapping

from .calibration import COVERAGE_WEIGHT
from .coverage import WordCoverage

if TYPE_CHECKING:
    from .search import KnowledgeBase


class Floor:
    """Decides, passage by passage in fused order, whether it answers the question.

    A passage passes when its similarity >= min_similarity or its word coverage >=
    min_coverage. The best match (first in the fused ranking, first for the vectors and found by
    a word retriever too) also passes from best_similarity: the floor must not hide what two
    retrievers agree on.
    """

    def __init__(self, kb: "KnowledgeBase", similarity: Callable[[int], float | None],
                 words: WordCoverage, similarities: dict[int, float],
                 titles: dict[int, float], use_similarity: bool, use_coverage: bool) -> None:
        # similarity: a passage's similarity to the question (use_similarity: there is one)
        self.kb, self.similarity, self.words = kb, similarity, words
        self.similarities, self.titles = similarities, titles
        self.use_similarity, self.use_coverage = use_similarity, use_coverage
        # A passage outside the vector top-N is at most as similar as the N-th one: it needs
        # its own similarity only when that could still clear the floor (or to report it).
        self.nth = (min(similarities.values()) if len(similarities) >= kb.candidates
                    else -1.0)

    def admit(self, pid: int, ranks: Mapping[str, int], best: bool
              ) -> tuple[float | None, float] | None:
        """(similarity, coverage) when the passage answers, else None."""
        kb, sim = self.kb, self.similarities.get(pid)
        if self.use_similarity and sim is None and self.nth >= kb.min_similarity:
            sim = self.similarity(pid)
        coverage = self.words.coverage(pid)
        agreed = best and ranks.get("vector") == 1 and 1 in (ranks.get("bm25"),
                                                            ranks.get("trigram"))
        title = self.titles.get(pid)
        passes = self.use_similarity and sim is not None and (
            sim >= kb.min_similarity or (agreed and sim >= kb.best_similarity)
            or sim + COVERAGE_WEIGHT * coverage >= kb.calibration.combined)
        passes = (passes or (self.use_coverage and coverage >= kb.min_coverage)
                  or (title is not None and ranks.get("title") == 1
                      and title >= kb.calibration.title_similarity))
        if not passes:
            return None
        if self.use_similarity and sim is None:
            sim = self.similarity(pid)
        return sim, coverage
