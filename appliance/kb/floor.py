"""The hand floors: passage by passage, does this one answer the question? (models without a
fitted no-answer model in calibration.py; confidence.py is the other way)."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Mapping

import numpy as np

from . import retrieve
from .calibration import COVERAGE_WEIGHT
from .coverage import WordCoverage
from .index import VEC_TABLE

if TYPE_CHECKING:
    from .search import KnowledgeBase


class Floor:
    """Decides, passage by passage in fused order, whether it answers the question.

    A passage passes when its similarity >= min_similarity or its word coverage >=
    min_coverage. The best match (first in the fused ranking, first for the vectors and found by
    a word retriever too) also passes from best_similarity: the floor must not hide what two
    retrievers agree on.
    """

    def __init__(self, kb: "KnowledgeBase", conn: sqlite3.Connection, words: WordCoverage,
                 vector: np.ndarray | None, similarities: dict[int, float],
                 titles: dict[int, float], use_similarity: bool, use_coverage: bool) -> None:
        self.kb, self.conn, self.words, self.vector = kb, conn, words, vector
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
            sim = retrieve.similarity(self.conn, VEC_TABLE, pid, self.vector)
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
        if self.use_similarity and sim is None and self.vector is not None:
            sim = retrieve.similarity(self.conn, VEC_TABLE, pid, self.vector)
        return sim, coverage
