"""Vectors kept in memory between searches, read again only when an ingest changed them.

A brute-force product with a numpy matrix of a few thousand rows costs ~1 ms, less than a
second sqlite-vec KNN over the same rows; the query-expansion vocabulary and the title vectors
are read this way. ``stamp`` is a kb_meta key an ingest rewrites whenever the rows change.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import numpy as np

from .tables import table_exists


@dataclass
class Rows:
    keys: list
    vectors: np.ndarray       # (len(keys), dimension), unit rows


class CachedMatrix:
    def __init__(self, table: str, select: str, stamp: str) -> None:
        # select: (key, embedding blob) rows of ``table``
        self.table, self.select, self.stamp = table, select, stamp
        self._key: str | None = None
        self._rows: Rows | None = None

    def rows(self, conn: sqlite3.Connection, *params: object) -> Rows | None:
        """The rows (None when there are none yet); ``params`` fill the select's ?s."""
        found = conn.execute("SELECT value FROM kb_meta WHERE key = ?", (self.stamp,)).fetchone()
        if found is None:
            return None
        key = f"{found[0]}|{params!r}"
        if self._rows is not None and self._key == key:
            return self._rows
        if not table_exists(conn, self.table):   # an index made before this table existed
            return None
        fetched = conn.execute(self.select, params).fetchall()
        if not fetched:
            return None
        vectors = np.stack([np.frombuffer(blob, dtype="<f4") for _, blob in fetched])
        self._key, self._rows = key, Rows([k for k, _ in fetched], vectors)
        return self._rows


def similarities(matrix: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """matrix (n, d) x vectors (m, d) -> (n, m) dot products, on this thread only.

    numpy's BLAS product would start its own threads; on a busy 2-core box they wait for each
    other (10 ms instead of 0.7 ms for 10k x 384), so the product is einsum's plain loop.
    """
    return np.einsum("ij,kj->ik", matrix, vectors)
