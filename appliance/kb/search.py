"""Hybrid retrieval over the knowledge base: BM25 words + character trigrams + vectors.

Two jobs, kept apart:

- ranking (retrieve.py): BM25 over words (with their variants, the KB's own close words for
  question words it does not know, vocab.py, and receptionist synonyms, synonyms.py), BM25 over
  character trigrams of unknown words, vector and title-vector neighbours, fused by weighted
  reciprocal rank. It should put an answer in the top few whenever there is one.
- abstention (confidence.py): whether the files answer the question at all, decided once from
  the best candidates' similarity, word coverage, title similarity, margin and agreement, by a
  logistic model calibrated per embedding model (calibration.py). No: the answer is an empty
  list, and the bot should say it does not know. Yes: the best ``k`` of the ranking.

Without vectors (no model, or the lexical modes) the decision is the top candidates' word
coverage >= ``min_coverage``; with vectors only, their similarity >= ``min_similarity``. An
explicit ``min_similarity`` (``[kb] min_score``) also admits a question whose best candidate is
at least that similar.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Literal, Mapping

import numpy as np

from ..config import KbSettings
from ..store.db import Database
from . import parts, retrieve
from . import text as textmod
from .calibration import COVERAGE_WEIGHT, DEFAULT_MIN_COVERAGE, calibration_for
from .confidence import TOP, Features, features
from .coverage import WordCoverage
from .embed import TextEmbedder
from .floor import Floor
from .index import TITLE_TABLE, VEC_TABLE, meta
from .matrix import CachedMatrix, Scored
from .tables import table_exists
from .vocab import Vocabulary, expandable, in_model_script
from .word_cache import WordVectors

log = logging.getLogger(__name__)

Mode = Literal["hybrid", "lexical", "bm25", "trigram", "vector"]
MODES: tuple[str, ...] = ("hybrid", "lexical", "bm25", "trigram", "vector")
_RETRIEVERS: dict[str, tuple[str, ...]] = {
    "hybrid": ("bm25", "trigram", "vector", "title"),
    "lexical": ("bm25", "trigram"),
    "bm25": ("bm25",),
    "trigram": ("trigram",),
    "vector": ("vector",),
}
CACHE_KIB = 65536                 # SQLite page cache per reading connection: holds the vectors


def default_min_similarity(model_name: str) -> float:
    return calibration_for(model_name).min_similarity


@dataclass(frozen=True)
class Hit:
    """One passage that answers (part of) the question, with where it came from."""

    passage_id: int
    source: str                  # file, relative to the knowledge-base folder
    locator: str                 # "row 7", "Returns > Refunds", "lines 3-9"
    title: str
    text: str
    row: int | None              # CSV spreadsheet row (header = 1)
    heading: str | None          # Markdown heading path
    line_start: int
    line_end: int
    fields: Mapping[str, str] | None
    score: float                 # fused reciprocal-rank score: the ranking
    similarity: float | None     # cosine similarity to the question (None: no vectors)
    coverage: float              # share of the question's words found, 0..1
    ranks: Mapping[str, int] = field(default_factory=dict)   # retriever -> 1-based rank
    title_similarity: float | None = None   # cosine similarity of the question to the title
    # The reranked best candidates (parts.py) come first, by this; the others by ``score``.
    rerank_score: float | None = None

    @property
    def found_by(self) -> tuple[str, ...]:
        return tuple(self.ranks)

    @property
    def citation(self) -> str:
        return f"{self.source} {self.locator}"

    def for_prompt(self) -> str:
        """The passage as the language model should see it: source, then text."""
        head = f"[{self.citation}]"
        if self.title and self.title not in self.text:
            head += f" {self.title}"
        return f"{head}\n{self.text}"

class KnowledgeBase:
    """Search the knowledge base. ``search`` blocks: call it from a worker thread.

    ``embedder`` may be None (model not downloaded): then only the word retrievers run.
    """

    def __init__(self, db: Database, embedder: TextEmbedder | None, top_k: int = 4,
                 min_similarity: float | None = None,
                 min_coverage: float = DEFAULT_MIN_COVERAGE, candidates: int = 20) -> None:
        self.db = db
        self.embedder = embedder
        self.top_k = top_k
        self.calibration = calibration_for(embedder.name if embedder else "")
        self.explicit_similarity = min_similarity
        self.min_similarity = (min_similarity if min_similarity is not None else
                               self.calibration.min_similarity)
        # The best match's own floor moves with an explicit min_similarity (never above it).
        self.best_similarity = min(self.calibration.best_similarity, self.min_similarity)
        self.min_coverage = min_coverage
        self.vocabulary = Vocabulary(self.calibration.expansion, self.calibration.latin_only)
        self._title_matrix = CachedMatrix(
            TITLE_TABLE, f"SELECT rowid, embedding FROM {TITLE_TABLE}", "vectors_stamp")
        # The passage vectors in memory too: a product with 10k x 384 costs 2-4 ms on this
        # box's one thread, a sqlite-vec KNN over the same rows 4-9 ms.
        self._vector_matrix = CachedMatrix(
            VEC_TABLE, f"SELECT rowid, embedding FROM {VEC_TABLE}", "vectors_stamp")
        self.candidates = candidates
        self._warned_model = False
        self.word_vectors = WordVectors()      # question words' vectors, between searches

    @classmethod
    def from_settings(cls, db: Database, embedder: TextEmbedder | None,
                      settings: KbSettings) -> "KnowledgeBase":
        """``[kb] min_score`` > 0 sets the similarity floor; 0 keeps the model's default."""
        return cls(db, embedder, top_k=settings.top_k,
                   min_similarity=settings.min_score if settings.min_score > 0 else None)

    def load_vectors(self) -> None:
        """Read the passage, title and word vectors into memory now, so the first caller's
        question does not pay for it (~50-100 ms at 10k passages). Blocks: a worker thread."""
        embedder = self.embedder
        if embedder is None:
            return

        def load(conn: sqlite3.Connection) -> None:
            if not self.vectors_usable(conn):
                return
            for matrix in (self._vector_matrix, self._title_matrix):
                matrix.rows(conn)
            self.vocabulary.load(conn, embedder.identity)

        self.db.read_sync(load)

    def search(self, query: str, k: int | None = None, mode: Mode = "hybrid") -> list[Hit]:
        """The best ``k`` (default top_k) passages when the KB answers; [] = no answer."""
        return self.search_with_features(query, k, mode)[0]

    def search_with_features(self, query: str, k: int | None = None, mode: Mode = "hybrid"
                             ) -> tuple[list[Hit], Features | None]:
        """``search``, and the features the no-answer decision read (None: nothing found)."""
        if mode not in _RETRIEVERS:
            raise ValueError(f"unknown search mode {mode!r}; one of {', '.join(MODES)}")
        k = k or self.top_k
        retrievers = _RETRIEVERS[mode]
        started = time.perf_counter()
        vector, words = self._embed(query, retrievers)
        embedded = time.perf_counter()
        hits, found = self.db.read_sync(
            lambda c: self._snapshot(c, query, k, retrievers, vector, words))
        log.debug("kb search (%s, %d characters): %d hits, embedding %.1f ms, search %.1f ms",
                  mode, len(query), len(hits), (embedded - started) * 1000,
                  (time.perf_counter() - embedded) * 1000)
        return hits, found

    def _embed(self, query: str, retrievers: tuple[str, ...]
               ) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        """The question's vector and, in the same model call, those of its words that query
        expansion may need and neither an earlier search nor the KB's own vocabulary holds
        (a real Embedder; test fakes embed the words later if needed)."""
        if "vector" not in retrievers or self.embedder is None or not query.strip():
            return None, {}
        both = getattr(self.embedder, "embed_query_and_words", None)
        words = [t for t in textmod.query_terms(query)
                 if expandable(t, self.calibration.latin_only)]
        if both is None or not words or retrievers == ("vector",):
            return self.embedder.embed_query(query), {}
        kept = self.word_vectors.known(words)
        missing = [w for w in dict.fromkeys(words) if w not in kept]
        if missing:      # the KB's own words have their vectors from the ingest
            identity = self.embedder.identity
            kept.update(self.db.read_sync(
                lambda c: self.vocabulary.known(c, identity, missing)))
            missing = [w for w in missing if w not in kept]
        if not missing:
            return self.embedder.embed_query(query), kept
        vector, matrix = both(query, missing)
        fresh = dict(zip(missing, matrix))
        self.word_vectors.keep(fresh)
        return vector, {**kept, **fresh}

    # -- inside one read ---------------------------------------------------------------------

    def _snapshot(self, conn: sqlite3.Connection, query: str, k: int,
                  retrievers: tuple[str, ...], vector: np.ndarray | None,
                  word_vectors: dict[str, np.ndarray]) -> tuple[list[Hit], Features | None]:
        """One read transaction, so an ingest committing meanwhile is seen entirely or not."""
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")   # keep the vectors in memory
        conn.execute("BEGIN")
        try:
            return _Search(self, conn, query, retrievers, vector, word_vectors).run(k)
        finally:
            conn.execute("COMMIT")

    def vectors_usable(self, conn: sqlite3.Connection) -> bool:
        if not table_exists(conn, VEC_TABLE):
            return False
        recorded = meta(conn).get("embedding_model")
        if self.embedder is not None and recorded != self.embedder.identity:
            if not self._warned_model:
                log.warning("kb: the index was embedded with %s but the model is %s; vector "
                            "search is off until `appliance kb ingest` runs", recorded,
                            self.embedder.identity)
                self._warned_model = True
            return False
        return True


class _Search:
    """One question inside one read transaction: rank, then decide, then build the hits."""

    def __init__(self, kb: KnowledgeBase, conn: sqlite3.Connection, query: str,
                 retrievers: tuple[str, ...], vector: np.ndarray | None,
                 word_vectors: dict[str, np.ndarray]) -> None:
        self.kb, self.conn, self.retrievers = kb, conn, retrievers
        self.words = WordCoverage(conn, textmod.query_terms(query))
        self.readable = in_model_script(query, kb.calibration.latin_only)
        self.vector = vector if vector is not None and kb.vectors_usable(conn) else None
        if self.vector is not None and kb.embedder is not None and retrievers != ("vector",):
            self.words.expansions = kb.vocabulary.expand(
                conn, kb.embedder, self.words.unknown_terms(), word_vectors)
        if retrievers != ("vector",):
            self.words.add_synonyms()
        self.similarities: dict[int, float] = {}     # the vector retriever's top candidates
        self.scored: Scored | None = None            # every passage's similarity
        self.titles: dict[int, float] = {}
        self.rerank_scores: dict[int, float] = {}

    def run(self, k: int) -> tuple[list[Hit], Features | None]:
        fused = retrieve.fuse(self._lists())[:self.kb.candidates]
        if not fused:
            return [], None
        if self.kb.calibration.abstain is None:
            return self._floored(fused, k, self._reranked(fused)), None
        fused = self._reranked(fused)
        top = fused[:TOP]
        sims = [self._similarity(pid) for pid, _ in top]
        coverages = [self.words.coverage(pid) for pid, _ in top]
        vector_top = sorted(self.similarities.values(), reverse=True)[:2]
        first = fused[0][1]
        agreed = first.get("vector") == 1 and 1 in (first.get("bm25"), first.get("trigram"))
        found = features(sims, coverages, max(self.titles.values(), default=None), vector_top,
                         agreed, self.readable, self.words.unknown_share())
        if not self._answers(found):
            return [], found
        hits = [self._hit(pid, ranks) for pid, ranks in fused[:k]]
        return [h for h in hits if h is not None], found

    def _reranked(self, fused: list[tuple[int, dict[str, int]]]
                  ) -> list[tuple[int, dict[str, int]]]:
        """The best parts.RERANK candidates reordered by max(similarity, best part's
        similarity) + COVERAGE_WEIGHT x word coverage (parts.py); the rest keep their places."""
        if self.vector is None or self.retrievers != _RETRIEVERS["hybrid"] or len(fused) < 2:
            return fused
        head = fused[:parts.RERANK]
        best_part = parts.best_similarities(self.conn, [pid for pid, _ in head], self.vector)
        if not best_part:
            return fused

        def score(pid: int) -> float:
            sim = self._similarity(pid)
            whole = sim if sim is not None else -1.0
            return (max(whole, best_part.get(pid, -1.0))
                    + COVERAGE_WEIGHT * self.words.coverage(pid))

        scores = self.rerank_scores = {pid: score(pid) for pid, _ in head}
        return sorted(head, key=lambda item: -scores[item[0]]) + fused[parts.RERANK:]

    def _floored(self, fused: list[tuple[int, dict[str, int]]], k: int,
                 order: list[tuple[int, dict[str, int]]]) -> list[Hit]:
        """The hand floors (floor.py) decide whether the question is answered: the passages
        that pass, in fused order (the order they were calibrated on); once one has passed,
        the next passages of ``order`` (the reranked fused list) fill the ``k`` slots (an
        answer the floor would hide at rank 2 or 3 still reaches the model), and the hits
        come in that order."""
        use_similarity = "vector" in self.retrievers and self.vector is not None
        floor = Floor(self.kb, self._similarity, self.words,
                      self.similarities, self.titles, use_similarity=use_similarity,
                      use_coverage=self.retrievers != ("vector",))
        hits: list[Hit] = []
        for position, (pid, ranks) in enumerate(fused):
            passed = floor.admit(pid, ranks, best=position == 0)
            hit = self._hit(pid, ranks, passed) if passed is not None else None
            if hit is not None:
                hits.append(hit)
                if len(hits) == k:
                    break
        return self._filled(hits, order, k) if hits else hits

    def _filled(self, hits: list[Hit], fused: list[tuple[int, dict[str, int]]], k: int
                ) -> list[Hit]:
        """``hits`` and the best-ranked passages not among them, up to ``k``, in ``fused``'s
        order."""
        taken = {h.passage_id for h in hits}
        for pid, ranks in fused:
            if len(hits) == k:
                break
            hit = None if pid in taken else self._hit(pid, ranks)
            if hit is not None:
                hits.append(hit)
        order = {pid: position for position, (pid, _) in enumerate(fused)}
        return sorted(hits, key=lambda h: order[h.passage_id])

    def _lists(self) -> dict[str, list[int]]:
        kb, conn, words, limit = self.kb, self.conn, self.words, self.kb.candidates
        lists: dict[str, list[int]] = {}
        if "bm25" in self.retrievers and words.terms:
            lists["bm25"] = retrieve.bm25(conn, words.selective_terms(), limit)
        if "trigram" in self.retrievers:
            lists["trigram"] = retrieve.trigram(conn, words.unknown_terms(), words.total, limit)
        if "vector" in self.retrievers and self.vector is not None:
            self.scored, lists["vector"], self.similarities = retrieve.nearest(
                conn, kb._vector_matrix, self.vector, limit)
        if "title" in self.retrievers and self.vector is not None and self.readable:
            _, lists["title"], self.titles = retrieve.nearest(conn, kb._title_matrix,
                                                              self.vector, limit)
        return lists

    def _answers(self, found: Features) -> bool:
        kb = self.kb
        if self.vector is None or "vector" not in self.retrievers:
            return found.coverage >= kb.min_coverage
        if self.retrievers == ("vector",):
            return found.similarity >= kb.min_similarity
        if kb.explicit_similarity is not None and found.similarity >= kb.explicit_similarity:
            return True
        if found.coverage >= kb.min_coverage and kb.min_coverage <= 0:
            return True
        assert kb.calibration.abstain is not None
        return kb.calibration.abstain.answers(found)

    def _similarity(self, pid: int) -> float | None:
        if self.vector is None:
            return None
        sim = self.similarities.get(pid)
        if sim is None and self.scored is not None:
            sim = self.scored.get(pid)
        return sim if sim is not None else retrieve.similarity(self.conn, VEC_TABLE, pid,
                                                                self.vector)

    def _hit(self, pid: int, ranks: Mapping[str, int],
             known: tuple[float | None, float] | None = None) -> Hit | None:
        row = self.conn.execute(
            "SELECT p.*, f.path FROM kb_passages p JOIN kb_files f ON f.id = p.file_id "
            "WHERE p.id = ?", (pid,)).fetchone()
        if row is None:
            return None
        sim, coverage = known if known is not None else (self._similarity(pid),
                                                         self.words.coverage(pid))
        return _hit(row, retrieve.fused_score(ranks), sim, coverage, ranks,
                    self.titles.get(pid), self.rerank_scores.get(pid))



def _hit(row: sqlite3.Row, score: float, similarity: float | None, coverage: float,
         ranks: Mapping[str, int], title_similarity: float | None = None,
         rerank_score: float | None = None) -> Hit:
    return Hit(passage_id=row["id"], source=row["path"], locator=row["locator"],
               title=row["title"], text=row["text"], row=row["row_number"],
               heading=row["heading"], line_start=row["line_start"], line_end=row["line_end"],
               fields=json.loads(row["fields"]) if row["fields"] else None, score=score,
               similarity=similarity, coverage=coverage, ranks=dict(ranks),
               title_similarity=title_similarity, rerank_score=rerank_score)
