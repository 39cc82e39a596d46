"""The retrievers of the hybrid search and their fusion, inside one read transaction.

Each returns its best ``limit`` passage ids, best first:

- ``bm25``: FTS5 BM25 over normalised words (OR of the question's informative words, their
  variants and expansions; title weighted above body);
- ``trigram``: FTS5 BM25 over character trigrams of the question's words that the index does
  not know (misspellings, other word forms, partial SKUs); known words are BM25's job;
- ``knn``: cosine nearest neighbours in a sqlite-vec table;
- ``titles``: the passages whose title vectors are closest (an in-memory matrix).

They are fused by weighted reciprocal rank (RRF, k=60): score = sum of weight / (60 + rank).
"""

from __future__ import annotations

import sqlite3
from typing import Mapping

import numpy as np

from . import text as textmod
from .matrix import CachedMatrix, Scored
from .tables import table_exists

RRF_K = 60
# Title vectors rank short questions well but also like any passage with a related heading: they
# count for less in the fusion than the three retrievers that read the whole passage.
RRF_WEIGHTS: dict[str, float] = {"title": 0.25}
BM25_WEIGHTS = "3.0, 1.0, 0.5"    # title, body, extra
COMMON_TRIGRAM_SHARE = 0.05       # the trigram query leaves out trigrams found in more than this


def fused_score(ranks: Mapping[str, int]) -> float:
    return sum(RRF_WEIGHTS.get(name, 1.0) / (RRF_K + rank) for name, rank in ranks.items())


def fuse(lists: Mapping[str, list[int]]) -> list[tuple[int, dict[str, int]]]:
    """(passage id, retriever -> 1-based rank), best fused score first (ties: lower id)."""
    candidates: dict[int, dict[str, int]] = {}
    for name, ids in lists.items():
        for rank, pid in enumerate(ids, 1):
            candidates.setdefault(pid, {})[name] = rank
    return sorted(candidates.items(), key=lambda item: (-fused_score(item[1]), item[0]))


def bm25(conn: sqlite3.Connection, terms: list[str], limit: int) -> list[int]:
    if not terms:
        return []
    expanded = list(dict.fromkeys(
        [t for term in terms for t in (term, *textmod.variants(term))]))
    match = " OR ".join(textmod.fts_quote(t) for t in expanded)
    return [r[0] for r in conn.execute(
        f"SELECT rowid FROM kb_fts WHERE kb_fts MATCH ? "
        f"ORDER BY bm25(kb_fts, {BM25_WEIGHTS}) LIMIT ?", (match, limit))]


def trigram(conn: sqlite3.Connection, terms: list[str], total: int, limit: int) -> list[int]:
    """Passages sharing character trigrams with words the index does not know."""
    grams = rare_trigrams(conn, terms, total)
    if not grams:
        return []
    match = " OR ".join(textmod.fts_quote(g) for g in grams)
    return [r[0] for r in conn.execute(
        f"SELECT rowid FROM kb_trigram WHERE kb_trigram MATCH ? "
        f"ORDER BY bm25(kb_trigram, {BM25_WEIGHTS}) LIMIT ?", (match, limit))]


def rare_trigrams(conn: sqlite3.Connection, terms: list[str], total: int) -> list[str]:
    """The trigrams of ``terms`` that occur in the index, without the very common ones.

    A trigram found in most passages ("ion", "the") makes FTS5 score thousands of rows for
    almost no precision; when all of them are that common, the five rarest are kept.
    """
    grams = list(dict.fromkeys(g for t in terms for g in textmod.trigrams(t)))
    if not grams:
        return []
    if not table_exists(conn, "kb_trigram_vocab"):   # a database made before it existed
        return grams
    df = dict(conn.execute(
        f"SELECT term, doc FROM kb_trigram_vocab WHERE term IN ({','.join('?' * len(grams))})",
        grams).fetchall())
    present = [g for g in grams if df.get(g)]
    limit = max(COMMON_TRIGRAM_SHARE * total, 50)
    rare = [g for g in present if df[g] <= limit]
    return rare or sorted(present, key=lambda g: df[g])[:5]


def nearest(conn: sqlite3.Connection, matrix: CachedMatrix, vector: np.ndarray, limit: int
            ) -> tuple[Scored | None, list[int], dict[int, float]]:
    """The passages whose vectors (passage or title, by ``matrix``) are closest to the
    question: (every row's similarity, the ``limit`` best, their similarities)."""
    scored = matrix.scored(conn, vector)
    if scored is None:
        return None, [], {}
    best, sims = scored.top(limit)
    return scored, best, sims


def similarity(conn: sqlite3.Connection, table: str, pid: int, vector: np.ndarray
               ) -> float | None:
    # One rowid at a time: vec0 answers "rowid = ?" directly but scans for "rowid IN".
    row = conn.execute(f"SELECT embedding FROM {table} WHERE rowid = ?", (pid,)).fetchone()
    return None if row is None else float(np.frombuffer(row[0], dtype="<f4") @ vector)
