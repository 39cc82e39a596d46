"""Hybrid retrieval over the knowledge base: BM25 words + character trigrams + vectors.

Three retrievers each return their best ``candidates`` passages:

- ``bm25``: FTS5 BM25 over normalised words (OR of the question's informative words and their
  variants; title weighted above body);
- ``trigram``: FTS5 BM25 over character trigrams of the question's words that the index does
  not know (misspellings, other word forms, partial SKUs); known words are BM25's job;
- ``vector``: cosine nearest neighbours in the sqlite-vec table.

They are fused by reciprocal rank (RRF, k=60): score = sum over retrievers of 1 / (60 + rank).

Ranks say nothing about whether anything answers the question, so a floor decides that from two
absolute signals: a passage's cosine ``similarity`` to the question and its word ``coverage``
(the IDF-weighted share of the question's informative words found in it, allowing word forms
and typos). Going down the fused ranking, a passage is returned only if similarity >=
``min_similarity`` or coverage >= ``min_coverage``, until ``k`` are found; when nothing clears
the floor the answer is an empty list, and the bot should say it does not know.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Literal, Mapping

import numpy as np

from ..config import KbSettings
from ..store.db import Database
from . import text as textmod
from .calibration import COVERAGE_WEIGHT, DEFAULT_MIN_COVERAGE, calibration_for
from .embed import TextEmbedder
from .index import TITLE_TABLE, VEC_TABLE, meta, vec_table_exists
from .matrix import CachedMatrix, similarities
from .vocab import Vocabulary, expandable, in_model_script

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
RRF_K = 60
# Title vectors rank short questions well but also like any passage with a related heading: they
# count for less in the fusion than the three retrievers that read the whole passage.
RRF_WEIGHTS: dict[str, float] = {"title": 0.25}
_BM25_WEIGHTS = "3.0, 1.0, 0.5"   # title, body, extra
COMMON_SHARE = 0.2                # BM25 leaves out words found in more passages than this
COMMON_TRIGRAM_SHARE = 0.05       # and the trigram query trigrams found in more than this
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
        self.min_similarity = (min_similarity if min_similarity is not None else
                               self.calibration.min_similarity)
        # The best match's own floor moves with an explicit min_similarity (never above it).
        self.best_similarity = min(self.calibration.best_similarity, self.min_similarity)
        self.min_coverage = min_coverage
        self.vocabulary = Vocabulary(self.calibration.expansion, self.calibration.latin_only)
        self._title_matrix = CachedMatrix(
            f"SELECT rowid, embedding FROM {TITLE_TABLE}", "vectors_stamp")
        self.candidates = candidates
        self._warned_model = False

    @classmethod
    def from_settings(cls, db: Database, embedder: TextEmbedder | None,
                      settings: KbSettings) -> "KnowledgeBase":
        """``[kb] min_score`` > 0 sets the similarity floor; 0 keeps the model's default."""
        return cls(db, embedder, top_k=settings.top_k,
                   min_similarity=settings.min_score if settings.min_score > 0 else None)

    def search(self, query: str, k: int | None = None, mode: Mode = "hybrid") -> list[Hit]:
        """The best ``k`` (default top_k) passages above the floor, best first; [] = no answer."""
        if mode not in _RETRIEVERS:
            raise ValueError(f"unknown search mode {mode!r}; one of {', '.join(MODES)}")
        k = k or self.top_k
        retrievers = _RETRIEVERS[mode]
        started = time.perf_counter()
        vector, words = self._embed(query, retrievers)
        embedded = time.perf_counter()
        hits = self.db.read_sync(
            lambda c: self._snapshot(c, query, k, retrievers, vector, words))
        log.debug("kb search (%s, %d characters): %d hits, embedding %.1f ms, search %.1f ms",
                  mode, len(query), len(hits), (embedded - started) * 1000,
                  (time.perf_counter() - embedded) * 1000)
        return hits

    def _embed(self, query: str, retrievers: tuple[str, ...]
               ) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        """The question's vector and, in the same model call, those of its words that query
        expansion may need (a real Embedder; test fakes embed the words later if needed)."""
        if "vector" not in retrievers or self.embedder is None or not query.strip():
            return None, {}
        both = getattr(self.embedder, "embed_query_and_words", None)
        words = [t for t in textmod.query_terms(query)
                 if expandable(t, self.calibration.latin_only)]
        if both is None or not words or retrievers == ("vector",):
            return self.embedder.embed_query(query), {}
        vector, matrix = both(query, words)
        return vector, dict(zip(words, matrix))

    # -- inside one read ---------------------------------------------------------------------

    def _snapshot(self, conn: sqlite3.Connection, query: str, k: int,
                  retrievers: tuple[str, ...], vector: np.ndarray | None,
                  word_vectors: dict[str, np.ndarray]) -> list[Hit]:
        """One read transaction, so an ingest committing meanwhile is seen entirely or not."""
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")   # keep the vectors in memory
        conn.execute("BEGIN")
        try:
            return self._search(conn, query, k, retrievers, vector, word_vectors)
        finally:
            conn.execute("COMMIT")

    def _search(self, conn: sqlite3.Connection, query: str, k: int,
                retrievers: tuple[str, ...], vector: np.ndarray | None,
                word_vectors: dict[str, np.ndarray]) -> list[Hit]:
        terms = textmod.query_terms(query)
        words = _WordCoverage(conn, terms)
        vector_ok = vector is not None and self._vectors_usable(conn)
        if vector_ok and self.embedder is not None and retrievers != ("vector",):
            words.expansions = self.vocabulary.expand(conn, self.embedder, words.unknown_terms(),
                                                      word_vectors)
        lists: dict[str, list[int]] = {}
        similarities: dict[int, float] = {}
        if "bm25" in retrievers and terms:
            lists["bm25"] = self._bm25(conn, words.selective_terms())
        if "trigram" in retrievers:
            lists["trigram"] = self._trigram(conn, words.unknown_terms(), words.total)
        titles: dict[int, float] = {}
        if "vector" in retrievers and vector_ok:
            lists["vector"], similarities = self._knn(conn, VEC_TABLE, vector)
        if ("title" in retrievers and vector_ok
                and in_model_script(query, self.calibration.latin_only)):
            lists["title"], titles = self._titles(conn, vector)
        candidates: dict[int, dict[str, int]] = {}
        for name, ids in lists.items():
            for rank, pid in enumerate(ids, 1):
                candidates.setdefault(pid, {})[name] = rank
        fused = sorted(candidates.items(), key=lambda item: (-_fused_score(item[1]), item[0]))
        floor = _Floor(self, conn, words, vector if vector_ok else None, similarities, titles,
                       use_similarity="vector" in retrievers and vector_ok,
                       use_coverage=retrievers != ("vector",))
        hits: list[Hit] = []
        # Best first; stop at k. Past the first `candidates` of the fusion nothing is an answer
        # that a retriever did not rank well: not looking further bounds the work.
        for position, (pid, ranks) in enumerate(fused[:self.candidates]):
            hit = floor.admit(pid, ranks, best=position == 0)
            if hit is not None:
                hits.append(hit)
                if len(hits) == k:
                    break
        return hits

    def _knn(self, conn: sqlite3.Connection, table: str, vector: np.ndarray
             ) -> tuple[list[int], dict[int, float]]:
        rows = conn.execute(
            f"SELECT rowid, distance FROM {table} WHERE embedding MATCH ? AND k = ?",
            (vector.astype("<f4").tobytes(), self.candidates)).fetchall()
        return [r[0] for r in sorted(rows, key=lambda r: r[1])], {r[0]: 1.0 - r[1] for r in rows}

    def _titles(self, conn: sqlite3.Connection, vector: np.ndarray
                ) -> tuple[list[int], dict[int, float]]:
        """The title retriever: the passages whose titles are closest (in-memory matrix)."""
        rows = self._title_matrix.rows(conn)
        if rows is None:
            return [], {}
        scores = similarities(rows.vectors, vector[None, :])[:, 0]
        n = min(self.candidates, len(scores))
        top = np.argpartition(-scores, n - 1)[:n]
        best = sorted(top, key=lambda i: -scores[i])
        return [rows.keys[i] for i in best], {rows.keys[i]: float(scores[i]) for i in best}

    def _vectors_usable(self, conn: sqlite3.Connection) -> bool:
        if not vec_table_exists(conn):
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

    def _bm25(self, conn: sqlite3.Connection, terms: list[str]) -> list[int]:
        if not terms:
            return []
        expanded = list(dict.fromkeys(
            [t for term in terms for t in (term, *textmod.variants(term))]))
        match = " OR ".join(textmod.fts_quote(t) for t in expanded)
        return [r[0] for r in conn.execute(
            f"SELECT rowid FROM kb_fts WHERE kb_fts MATCH ? "
            f"ORDER BY bm25(kb_fts, {_BM25_WEIGHTS}) LIMIT ?", (match, self.candidates))]

    def _trigram(self, conn: sqlite3.Connection, terms: list[str], total: int) -> list[int]:
        """Passages sharing character trigrams with words the index does not know (typos,
        other word forms, partial codes); known words are the BM25 retriever's job."""
        grams = _rare_trigrams(conn, terms, total)
        if not grams:
            return []
        match = " OR ".join(textmod.fts_quote(g) for g in grams)
        return [r[0] for r in conn.execute(
            f"SELECT rowid FROM kb_trigram WHERE kb_trigram MATCH ? "
            f"ORDER BY bm25(kb_trigram, {_BM25_WEIGHTS}) LIMIT ?", (match, self.candidates))]

    @staticmethod
    def _similarity(conn: sqlite3.Connection, pid: int, vector: np.ndarray) -> float | None:
        # One rowid at a time: vec0 answers "rowid = ?" directly but scans for "rowid IN".
        row = conn.execute(f"SELECT embedding FROM {VEC_TABLE} WHERE rowid = ?",
                           (pid,)).fetchone()
        return None if row is None else float(np.frombuffer(row[0], dtype="<f4") @ vector)


class _Floor:
    """Decides, passage by passage in fused order, whether it answers the question.

    A passage passes when its similarity >= min_similarity or its word coverage >=
    min_coverage. The best match (first in the fused ranking, first for the vectors and found by
    a word retriever too) also passes from best_similarity: the floor must not hide what two
    retrievers agree on.
    """

    def __init__(self, kb: KnowledgeBase, conn: sqlite3.Connection, words: "_WordCoverage",
                 vector: np.ndarray | None, similarities: dict[int, float],
                 titles: dict[int, float], use_similarity: bool, use_coverage: bool) -> None:
        self.kb, self.conn, self.words, self.vector = kb, conn, words, vector
        self.similarities, self.titles = similarities, titles
        self.use_similarity, self.use_coverage = use_similarity, use_coverage
        # A passage outside the vector top-N is at most as similar as the N-th one: it needs
        # its own similarity only when that could still clear the floor (or to report it).
        self.nth = (min(similarities.values()) if len(similarities) >= kb.candidates
                    else -1.0)

    def admit(self, pid: int, ranks: dict[str, int], best: bool) -> Hit | None:
        kb, sim = self.kb, self.similarities.get(pid)
        if self.use_similarity and sim is None and self.nth >= kb.min_similarity:
            sim = kb._similarity(self.conn, pid, self.vector)
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
        row = self.conn.execute(
            "SELECT p.*, f.path FROM kb_passages p JOIN kb_files f ON f.id = p.file_id "
            "WHERE p.id = ?", (pid,)).fetchone()
        if row is None:
            return None
        if self.use_similarity and sim is None:
            sim = kb._similarity(self.conn, pid, self.vector)
        score = _fused_score(ranks)
        return _hit(row, score, sim, coverage, ranks, title)


def _fused_score(ranks: Mapping[str, int]) -> float:
    return sum(RRF_WEIGHTS.get(name, 1.0) / (RRF_K + rank) for name, rank in ranks.items())


def _rare_trigrams(conn: sqlite3.Connection, terms: list[str], total: int) -> list[str]:
    """The trigrams of ``terms`` that occur in the index, without the very common ones.

    A trigram found in most passages ("ion", "the") makes FTS5 score thousands of rows for
    almost no precision; when all of them are that common, the five rarest are kept.
    """
    grams = list(dict.fromkeys(g for t in terms for g in textmod.trigrams(t)))
    if not grams:
        return []
    try:
        df = dict(conn.execute(
            f"SELECT term, doc FROM kb_trigram_vocab WHERE term IN ({','.join('?' * len(grams))})",
            grams).fetchall())
    except sqlite3.OperationalError:   # a database made before kb_trigram_vocab existed
        return grams
    present = [g for g in grams if df.get(g)]
    limit = max(COMMON_TRIGRAM_SHARE * total, 50)
    rare = [g for g in present if df[g] <= limit]
    return rare or sorted(present, key=lambda g: df[g])[:5]


class _WordCoverage:
    """For one question: the IDF-weighted share of its terms found in a passage (0..1).

    Passage words come from the word index (already normalised, with variants); a term matches
    a word exactly, through a variant, or within a small edit distance (text.term_matches).
    Results are memoised per word, so checking many passages stays cheap.
    """

    def __init__(self, conn: sqlite3.Connection, terms: list[str]) -> None:
        self.conn, self.terms = conn, terms
        self.df: dict[str, int] = {}
        self.total = 0
        self.weights: dict[str, float] = {}
        self._memo: dict[tuple[str, str], bool] = {}
        # unknown question word -> KB words close to it (vocab.py); they count as the word
        self.expansions: dict[str, list[tuple[str, float]]] = {}
        if not terms:
            return
        self.total = total = conn.execute("SELECT count(*) FROM kb_passages").fetchone()[0] or 1
        marks = ",".join("?" * len(terms))
        self.df = dict(conn.execute(
            f"SELECT term, doc FROM kb_fts_vocab WHERE term IN ({marks})", terms).fetchall())
        for term in terms:
            df = self.df.get(term, 0)
            self.weights[term] = math.log(1.0 + (total - df + 0.5) / (df + 0.5))
        self.total_weight = sum(self.weights.values())

    def unknown_terms(self) -> list[str]:
        return [t for t in self.terms if not self.df.get(t)]

    def selective_terms(self) -> list[str]:
        """The terms worth a BM25 query: those in at most COMMON_SHARE of the passages.

        A word found nearly everywhere ("price" in a catalogue) hardly changes the ranking but
        makes FTS5 score thousands of rows; when every term is that common, all are kept.
        """
        limit = max(COMMON_SHARE * self.total, 20)
        selective = [t for t in self.terms if self.df.get(t, 0) <= limit] or self.terms
        extra = [w for t in selective for w, _ in self.expansions.get(t, ())]
        return list(dict.fromkeys(selective + extra))

    def coverage(self, pid: int) -> float:
        if not self.terms:
            return 0.0
        row = self.conn.execute("SELECT title, body, extra FROM kb_fts WHERE rowid = ?",
                                (pid,)).fetchone()
        if row is None:
            return 0.0
        present = frozenset(textmod.words(" ".join(row)))
        found = 0.0
        for term, weight in self.weights.items():
            if term in present or self._fuzzy(term, present):
                found += weight
                continue
            # A KB word standing in for the question's word counts as much as it is alike.
            near = [sim for w, sim in self.expansions.get(term, ()) if w in present]
            if near:
                found += weight * max(near)
        return found / self.total_weight

    def _fuzzy(self, term: str, present: frozenset[str]) -> bool:
        if any(v in present for v in textmod.variants(term)):
            return True
        if not textmod.fuzzy_limit(term):
            return False
        for word in present:
            # Typos rarely hit the first letters: skip words that share neither the first
            # letter nor the next two (cheap, and most words fail here).
            if abs(len(word) - len(term)) > 4 or (
                    word[0] != term[0] and word[1:3] != term[1:3]):
                continue
            key = (term, word)
            hit = self._memo.get(key)
            if hit is None:
                hit = self._memo[key] = textmod.word_matches(term, word)
            if hit:
                return True
        return False


def _hit(row: sqlite3.Row, score: float, similarity: float | None, coverage: float,
         ranks: Mapping[str, int], title_similarity: float | None = None) -> Hit:
    return Hit(passage_id=row["id"], source=row["path"], locator=row["locator"],
               title=row["title"], text=row["text"], row=row["row_number"],
               heading=row["heading"], line_start=row["line_start"], line_end=row["line_end"],
               fields=json.loads(row["fields"]) if row["fields"] else None, score=score,
               similarity=similarity, coverage=coverage, ranks=dict(ranks),
               title_similarity=title_similarity)
