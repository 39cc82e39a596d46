"""Vectors kept in memory between searches, read again only when an ingest changed them.

A brute-force product with a numpy matrix of a few thousand rows costs ~1 ms, less than a
sqlite-vec KNN over the same rows; the query-expansion vocabulary, the title vectors and the
passage vectors are read this way (the vec0 tables stay the store of record). ``stamp`` is a
kb_meta key an ingest rewrites whenever the rows change.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

import numpy as np

from .tables import table_exists


@dataclass
class Rows:
    keys: list
    vectors: np.ndarray       # (len(keys), dimension), unit rows
    positions: dict = field(init=False, repr=False)    # key -> its row

    def __post_init__(self) -> None:
        self.positions = {key: i for i, key in enumerate(self.keys)}


@dataclass
class Scored:
    """One question's similarity to every row of a cached matrix."""

    rows: Rows
    scores: np.ndarray = field(repr=False)    # (len(rows.keys),)

    def top(self, limit: int) -> tuple[list, dict]:
        """The ``limit`` most similar keys, best first, and their similarities."""
        n = min(limit, len(self.scores))
        if n <= 0:
            return [], {}
        best = np.argpartition(-self.scores, n - 1)[:n]
        best = best[np.argsort(-self.scores[best], kind="stable")]
        keys = [self.rows.keys[i] for i in best]
        return keys, {key: float(self.scores[i]) for key, i in zip(keys, best)}

    def get(self, key: object) -> float | None:
        i = self.rows.positions.get(key)
        return None if i is None else float(self.scores[i])


class CachedMatrix:
    def __init__(self, table: str, select: str, stamp: str) -> None:
        # select: (key, embedding blob) rows of ``table``
        self.table, self.select, self.stamp = table, select, stamp
        self._cached: tuple[str, Rows] | None = None    # (stamp|params, rows): set at once

    def rows(self, conn: sqlite3.Connection, *params: object) -> Rows | None:
        """The rows (None when there are none yet); ``params`` fill the select's ?s."""
        found = conn.execute("SELECT value FROM kb_meta WHERE key = ?", (self.stamp,)).fetchone()
        # No stamp: an index last written before stamps existed (read as it is; the next
        # ingest writes one, and the rows are read again).
        key = f"{found[0] if found is not None else ''}|{params!r}"
        cached = self._cached
        if cached is not None and cached[0] == key:
            return cached[1]
        if not table_exists(conn, self.table):   # an index made before this table existed
            return None
        fetched = conn.execute(self.select, params).fetchall()
        if not fetched:
            return None
        vectors = np.stack([np.frombuffer(blob, dtype="<f4") for _, blob in fetched])
        rows = Rows([k for k, _ in fetched], vectors)
        self._cached = (key, rows)
        return rows

    def scored(self, conn: sqlite3.Connection, vector: np.ndarray, *params: object
               ) -> Scored | None:
        """``vector``'s similarity to every row (None when there are no rows)."""
        rows = self.rows(conn, *params)
        return None if rows is None else Scored(rows, similarities(rows.vectors,
                                                                   vector[None, :])[:, 0])


def similarities(matrix: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """matrix (n, d) x vectors (m, d) -> (n, m) dot products, on this thread only.

    numpy's BLAS product would start its own threads; on a busy 2-core box they wait for each
    other (10 ms instead of 0.7 ms for 10k x 384), so the product is einsum's plain loop.
    """
    return np.einsum("ij,kj->ik", matrix, vectors)
