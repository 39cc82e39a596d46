"""Part vectors: one vector per sentence of a passage (per field of a CSV row), for reranking.

A whole-passage vector dilutes the one sentence that answers a short question ("my gums bleed"
against a row listing a treatment's price, length and insurance), so the best few candidates
of the fused ranking are reordered by the question's similarity to their best-matching part
(or to the whole passage, when that is closer) plus half their word coverage. Measured in
bench/results/kb.md (session 5): the ranking's recall@3 goes up on the dev business and on
the held-out ones. The parts are embedded at ingest; at question time only the parts of the
``RERANK`` best candidates are read (a few dozen vectors, a dot product).
"""

from __future__ import annotations

import re
import sqlite3
from typing import Iterable, Sequence

import numpy as np

from .embed import TextEmbedder
from .passage import Passage
from .tables import table_exists

PART_TABLE = "kb_part_vec"
RERANK = 10               # the fused ranking's best candidates that are reordered
MAX_PARTS = 16            # per passage
MIN_PART_CHARS = 9
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def passage_parts(passage: Passage) -> list[str]:
    """The last heading (or row name), then each field line of a CSV row or each sentence."""
    out = [passage.title.rsplit(" > ", 1)[-1].strip()]
    if passage.fields is not None:
        out.extend(line for line in passage.text.split("\n") if line.strip())
    else:
        out.extend(_SENTENCE_END.split(passage.text.replace("\n", " ")))
    parts = [p.strip() for p in out if len(p.strip()) >= MIN_PART_CHARS]
    return list(dict.fromkeys(parts))[:MAX_PARTS]


def ensure_table(conn: sqlite3.Connection) -> bool:
    """Create the table; True when it was not there (an index made before part vectors)."""
    missing = not table_exists(conn, PART_TABLE)
    conn.execute(f"CREATE TABLE IF NOT EXISTS {PART_TABLE} ("
                 "passage_id INTEGER NOT NULL, embedding BLOB NOT NULL)")
    conn.execute(f"CREATE INDEX IF NOT EXISTS {PART_TABLE}_passage ON {PART_TABLE}(passage_id)")
    return missing


def embed_parts(embedder: TextEmbedder, passages: Sequence[Passage], batch: int
                ) -> list[np.ndarray]:
    """Per passage, a (parts, dimension) matrix; each distinct part is embedded once."""
    per_passage = [passage_parts(p) for p in passages]
    unique = list(dict.fromkeys(t for parts in per_passage for t in parts))
    if not unique:
        return [np.zeros((0, embedder.dimension), dtype=np.float32) for _ in passages]
    embedded = embedder.embed_passages(unique, batch=batch)
    position = {t: i for i, t in enumerate(unique)}
    return [embedded[[position[t] for t in parts]] if parts
            else np.zeros((0, embedder.dimension), dtype=np.float32) for parts in per_passage]


def write(conn: sqlite3.Connection, pid: int, vectors: np.ndarray) -> None:
    conn.executemany(f"INSERT INTO {PART_TABLE}(passage_id, embedding) VALUES (?, ?)",
                     [(pid, v.astype("<f4").tobytes()) for v in vectors])


def delete(conn: sqlite3.Connection, pids: Iterable[int]) -> None:
    conn.executemany(f"DELETE FROM {PART_TABLE} WHERE passage_id = ?", [(i,) for i in pids])


def best_similarities(conn: sqlite3.Connection, pids: Sequence[int], vector: np.ndarray
                      ) -> dict[int, float]:
    """Passage -> the cosine similarity of its best-matching part to ``vector`` (unit length,
    as the embedders return them); passages without parts are left out."""
    if not pids:
        return {}
    if not table_exists(conn, PART_TABLE):      # an index made before part vectors
        return {}
    rows = conn.execute(
        f"SELECT passage_id, embedding FROM {PART_TABLE} WHERE passage_id IN "
        f"({','.join('?' * len(pids))})", list(pids)).fetchall()
    if not rows:
        return {}
    matrix = np.frombuffer(b"".join(blob for _, blob in rows), dtype="<f4").reshape(
        len(rows), -1)
    scores = np.einsum("ij,j->i", matrix, vector.astype(np.float32))   # no BLAS threads
    out: dict[int, float] = {}
    for (pid, _), score in zip(rows, scores):
        out[pid] = max(out.get(pid, -1.0), float(score))
    return out
