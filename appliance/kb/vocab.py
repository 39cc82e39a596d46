"""Query expansion with the knowledge base's own vocabulary.

Callers use their own words ("braces", "kids", "cost") where the files use the business's
("aligners", "children", "price"). Every word the index holds (body, headings, product names,
CSV column names) is embedded once at ingest into ``kb_vocab``; at question time a question word
the index does not know is embedded too and replaced by the KB words closest to it, when they
are close enough (``expansion_floor``, per model family in search.py). Those words then count
for the BM25 query and for the word coverage the no-answer floor looks at.

Only words of the scripts the model understands are expanded (``scripts``): all-MiniLM is
English-only and puts unrelated Hebrew or Russian words close together.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
import numpy as np

from .embed import TextEmbedder
from .matrix import CachedMatrix, similarities
from .tables import table_exists

log = logging.getLogger(__name__)

VOCAB_TABLE = "kb_vocab"
MAX_EXPANSIONS = 3          # KB words per question word
MIN_WORD_CHARS = 3
_LATIN = re.compile(r"^[a-z]+$")
_ANY_LETTERS = re.compile(r"^[^\W\d_]+$")


_NON_LATIN_LETTER = re.compile(r"[^\W\d_a-zA-Z\u00c0-\u024f]")


def in_model_script(text: str, latin_only: bool) -> bool:
    """May an English-only model judge this text? (False when it has non-Latin letters.)"""
    return not latin_only or not _NON_LATIN_LETTER.search(text)


def expandable(word: str, latin_only: bool) -> bool:
    if len(word) < MIN_WORD_CHARS:
        return False
    return bool((_LATIN if latin_only else _ANY_LETTERS).match(word))


def ensure_table(conn: sqlite3.Connection) -> None:
    conn.execute(f"CREATE TABLE IF NOT EXISTS {VOCAB_TABLE} ("
                 "term TEXT PRIMARY KEY, model TEXT NOT NULL, embedding BLOB NOT NULL)")


def index_terms(conn: sqlite3.Connection, latin_only: bool) -> list[str]:
    """The words of the word index worth a vector (letters only, at least 3 of them)."""
    return [t for (t,) in conn.execute("SELECT term FROM kb_fts_vocab")
            if expandable(t, latin_only)]


def refresh(conn_read: sqlite3.Connection, embedder: TextEmbedder, latin_only: bool,
            batch: int = 64) -> tuple[list[str], list[str], np.ndarray]:
    """(words to drop, words to add, their vectors): what brings kb_vocab in line.

    Runs in a read transaction; the caller writes the result (embedding happens outside the
    write lock). Words embedded by another model are re-embedded.
    """
    stored = (dict(conn_read.execute(f"SELECT term, model FROM {VOCAB_TABLE}").fetchall())
              if table_exists(conn_read, VOCAB_TABLE) else {})
    wanted = index_terms(conn_read, latin_only)
    wanted_set = set(wanted)
    identity = embedder.identity
    drop = [t for t, model in stored.items() if t not in wanted_set or model != identity]
    add = [t for t in wanted if stored.get(t) != identity]
    vectors = embedder.embed_passages(add, batch=batch) if add else np.zeros(
        (0, embedder.dimension), dtype=np.float32)
    return drop, add, vectors


def write(conn: sqlite3.Connection, identity: str, drop: list[str], add: list[str],
          vectors: np.ndarray) -> None:
    ensure_table(conn)
    conn.execute("INSERT INTO kb_meta(key, value) VALUES ('vocab_stamp', ?) ON CONFLICT(key) "
                 "DO UPDATE SET value = excluded.value", (f"{identity}|{time.time_ns()}",))
    conn.executemany(f"DELETE FROM {VOCAB_TABLE} WHERE term = ?", [(t,) for t in drop])
    conn.executemany(f"INSERT OR REPLACE INTO {VOCAB_TABLE}(term, model, embedding) "
                     "VALUES (?, ?, ?)",
                     [(t, identity, v.astype("<f4").tobytes()) for t, v in zip(add, vectors)])


class Vocabulary:
    """The KB's word vectors, loaded once per ingest; ``expand`` is the question-time part."""

    def __init__(self, floor: float, latin_only: bool) -> None:
        self.floor, self.latin_only = floor, latin_only
        self._matrix = CachedMatrix(
            VOCAB_TABLE, f"SELECT term, embedding FROM {VOCAB_TABLE} WHERE model = ?", "vocab_stamp")

    def known(self, conn: sqlite3.Connection, identity: str, terms: list[str]
              ) -> dict[str, np.ndarray]:
        """The vectors of those ``terms`` that are words of the KB itself: ingest embedded
        each one as a passage, exactly as a question's words are embedded (the embedder's
        passage prompt, the word alone), so a question need not embed them again. With
        embeddinggemma-300M's shape on 2 cores each word embedded costs ~45 ms."""
        rows = self._matrix.rows(conn, identity)
        if rows is None:
            return {}
        positions = rows.positions
        return {t: rows.vectors[positions[t]] for t in terms if t in positions}

    def load(self, conn: sqlite3.Connection, identity: str) -> None:
        """Read the word vectors now (start-up), not at the first question."""
        self._matrix.rows(conn, identity)

    def expand(self, conn: sqlite3.Connection, embedder: TextEmbedder, terms: list[str],
               vectors: dict[str, np.ndarray] | None = None
               ) -> dict[str, list[tuple[str, float]]]:
        """Question word -> the KB words closest to it (similarity >= floor), best first.

        ``vectors``: the words' vectors when the caller embedded them with the question.
        """
        terms = [t for t in terms if expandable(t, self.latin_only)]
        if not terms:
            return {}
        matrix = self._matrix.rows(conn, embedder.identity)
        if matrix is None:
            return {}
        given = vectors or {}
        if all(t in given for t in terms):
            embedded = np.stack([given[t] for t in terms])
        else:
            embedded = embedder.embed_passages(terms)
        scores = similarities(matrix.vectors, embedded)               # (vocab, terms)
        out: dict[str, list[tuple[str, float]]] = {}
        for j, term in enumerate(terms):
            column = scores[:, j]
            top = np.argpartition(-column, min(MAX_EXPANSIONS, len(column) - 1))[:MAX_EXPANSIONS]
            near = sorted(((matrix.keys[i], float(column[i])) for i in top
                           if column[i] >= self.floor and matrix.keys[i] != term),
                          key=lambda pair: -pair[1])
            if near:
                out[term] = near
        return out
