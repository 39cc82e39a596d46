"""Hybrid retrieval over the knowledge base: BM25 words + character trigrams + vectors.

Three retrievers each return their best ``candidates`` passages:

- ``bm25``: FTS5 BM25 over normalised words (OR of the question's informative words and their
  variants; title weighted above body);
- ``trigram``: FTS5 BM25 over character trigrams of the same words (misspellings, word forms,
  partial SKUs);
- ``vector``: cosine nearest neighbours in the sqlite-vec table.

They are fused by reciprocal rank (RRF, k=60): score = sum over retrievers of 1 / (60 + rank).

Ranks say nothing about whether anything answers the question, so a floor decides that from two
absolute signals, computed for every candidate: its cosine ``similarity`` to the question and its
word ``coverage`` (the IDF-weighted share of the question's informative words found in it,
allowing word forms and typos). A hit is returned only if similarity >= ``min_similarity`` or
coverage >= ``min_coverage``; when nothing clears the floor the answer is an empty list, and the
bot should say it does not know.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from dataclasses import dataclass, field
from typing import Literal, Mapping

import numpy as np

from ..config import KbSettings
from ..store.db import Database
from . import text as textmod
from .embed import Embedder
from .index import VEC_TABLE, meta, vec_table_exists

log = logging.getLogger(__name__)

Mode = Literal["hybrid", "lexical", "bm25", "trigram", "vector"]
MODES: tuple[str, ...] = ("hybrid", "lexical", "bm25", "trigram", "vector")
_RETRIEVERS: dict[str, tuple[str, ...]] = {
    "hybrid": ("bm25", "trigram", "vector"),
    "lexical": ("bm25", "trigram"),
    "bm25": ("bm25",),
    "trigram": ("trigram",),
    "vector": ("vector",),
}
RRF_K = 60
DEFAULT_MIN_COVERAGE = 0.6
# Cosine similarity a passage needs to count as an answer, per model family (the first needle
# found in the model's name wins). Calibrated on tests/kb_eval.jsonl where the model is
# available; the others are starting points: `appliance kb search` prints similarities.
DEFAULT_MIN_SIMILARITY: tuple[tuple[str, float], ...] = (
    ("minilm", 0.5),
    ("e5", 0.82),
    ("embeddinggemma", 0.45),
)
FALLBACK_MIN_SIMILARITY = 0.5
_BM25_WEIGHTS = "3.0, 1.0, 0.5"   # title, body, extra


def default_min_similarity(model_name: str) -> float:
    lowered = model_name.lower()
    for needle, value in DEFAULT_MIN_SIMILARITY:
        if needle in lowered:
            return value
    return FALLBACK_MIN_SIMILARITY


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


@dataclass(frozen=True)
class _Candidate:
    ranks: dict[str, int]
    similarity: float | None


class KnowledgeBase:
    """Search the knowledge base. ``search`` blocks: call it from a worker thread.

    ``embedder`` may be None (model not downloaded): then only the word retrievers run.
    """

    def __init__(self, db: Database, embedder: Embedder | None, top_k: int = 4,
                 min_similarity: float | None = None,
                 min_coverage: float = DEFAULT_MIN_COVERAGE, candidates: int = 20) -> None:
        self.db = db
        self.embedder = embedder
        self.top_k = top_k
        self.min_similarity = (min_similarity if min_similarity is not None else
                               default_min_similarity(embedder.name if embedder else ""))
        self.min_coverage = min_coverage
        self.candidates = candidates
        self._warned_model = False

    @classmethod
    def from_settings(cls, db: Database, embedder: Embedder | None,
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
        vector = None
        if "vector" in retrievers and self.embedder is not None and query.strip():
            vector = self.embedder.embed_query(query)
        return self.db.read_sync(lambda c: self._search(c, query, k, retrievers, vector))

    # -- inside one read ---------------------------------------------------------------------

    def _search(self, conn: sqlite3.Connection, query: str, k: int,
                retrievers: tuple[str, ...], vector: np.ndarray | None) -> list[Hit]:
        terms = textmod.query_terms(query)
        vector_ok = vector is not None and self._vectors_usable(conn)
        lists: dict[str, list[int]] = {}
        distances: dict[int, float] = {}
        if "bm25" in retrievers and terms:
            lists["bm25"] = self._bm25(conn, terms)
        if "trigram" in retrievers and terms:
            lists["trigram"] = self._trigram(conn, terms)
        if "vector" in retrievers and vector_ok:
            rows = conn.execute(
                f"SELECT rowid, distance FROM {VEC_TABLE} WHERE embedding MATCH ? AND k = ? "
                "ORDER BY distance", (vector.astype("<f4").tobytes(), self.candidates)).fetchall()
            lists["vector"] = [r[0] for r in rows]
            distances = {r[0]: r[1] for r in rows}
        candidates: dict[int, dict[str, int]] = {}
        for name, ids in lists.items():
            for rank, pid in enumerate(ids, 1):
                candidates.setdefault(pid, {})[name] = rank
        if not candidates:
            return []
        ids = list(candidates)
        rows = {r["id"]: r for r in conn.execute(
            "SELECT p.*, f.path FROM kb_passages p JOIN kb_files f ON f.id = p.file_id "
            f"WHERE p.id IN ({','.join('?' * len(ids))})", ids)}
        similarities: dict[int, float] = {pid: 1.0 - d for pid, d in distances.items()}
        if vector_ok and "vector" in retrievers:
            similarities.update(self._similarities(
                conn, [i for i in ids if i not in similarities], vector))
        coverage = self._coverage(conn, terms, rows)
        use_similarity = "vector" in retrievers and vector_ok
        use_coverage = retrievers != ("vector",)
        hits = []
        for pid, ranks in candidates.items():
            row = rows.get(pid)
            if row is None:
                continue
            sim = similarities.get(pid)
            cov = coverage.get(pid, 0.0)
            passes = ((use_similarity and sim is not None and sim >= self.min_similarity)
                      or (use_coverage and cov >= self.min_coverage))
            if not passes:
                continue
            score = sum(1.0 / (RRF_K + r) for r in ranks.values())
            hits.append(_hit(row, score, sim, cov, ranks))
        hits.sort(key=lambda h: (-h.score, -(h.similarity or 0.0), h.passage_id))
        return hits[:k]

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
        expanded = list(dict.fromkeys(
            [t for term in terms for t in (term, *textmod.variants(term))]))
        match = " OR ".join(textmod.fts_quote(t) for t in expanded)
        return [r[0] for r in conn.execute(
            f"SELECT rowid FROM kb_fts WHERE kb_fts MATCH ? "
            f"ORDER BY bm25(kb_fts, {_BM25_WEIGHTS}) LIMIT ?", (match, self.candidates))]

    def _trigram(self, conn: sqlite3.Connection, terms: list[str]) -> list[int]:
        grams = list(dict.fromkeys(g for t in terms for g in textmod.trigrams(t)))
        if not grams:
            return []
        match = " OR ".join(textmod.fts_quote(g) for g in grams)
        return [r[0] for r in conn.execute(
            f"SELECT rowid FROM kb_trigram WHERE kb_trigram MATCH ? "
            f"ORDER BY bm25(kb_trigram, {_BM25_WEIGHTS}) LIMIT ?", (match, self.candidates))]

    @staticmethod
    def _similarities(conn: sqlite3.Connection, ids: list[int],
                      vector: np.ndarray) -> dict[int, float]:
        if not ids:
            return {}
        rows = conn.execute(f"SELECT rowid, embedding FROM {VEC_TABLE} "
                            f"WHERE rowid IN ({','.join('?' * len(ids))})", ids).fetchall()
        return {r[0]: float(np.frombuffer(r[1], dtype="<f4") @ vector) for r in rows}

    @staticmethod
    def _coverage(conn: sqlite3.Connection, terms: list[str],
                  rows: Mapping[int, sqlite3.Row]) -> dict[int, float]:
        """IDF-weighted share of the question's terms found in each passage (0..1)."""
        if not terms or not rows:
            return {}
        total = conn.execute("SELECT count(*) FROM kb_passages").fetchone()[0] or 1
        marks = ",".join("?" * len(terms))
        df = dict(conn.execute(f"SELECT term, doc FROM kb_fts_vocab WHERE term IN ({marks})",
                               terms).fetchall())
        weights = {t: math.log(1.0 + (total - df.get(t, 0) + 0.5) / (df.get(t, 0) + 0.5))
                   for t in terms}
        whole = sum(weights.values())
        out = {}
        for pid, row in rows.items():
            normalised = textmod.normalize(f"{row['title']}\n{row['text']}")
            present = frozenset(textmod.words(normalised)) | frozenset(
                textmod.index_extra(normalised).split())
            found = sum(w for t, w in weights.items() if textmod.term_matches(t, present))
            out[pid] = found / whole
        return out


def _hit(row: sqlite3.Row, score: float, similarity: float | None, coverage: float,
         ranks: Mapping[str, int]) -> Hit:
    return Hit(passage_id=row["id"], source=row["path"], locator=row["locator"],
               title=row["title"], text=row["text"], row=row["row_number"],
               heading=row["heading"], line_start=row["line_start"], line_end=row["line_end"],
               fields=json.loads(row["fields"]) if row["fields"] else None, score=score,
               similarity=similarity, coverage=coverage, ranks=dict(ranks))
