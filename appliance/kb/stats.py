"""What the index holds: files, passages, vectors and the model (for `appliance kb stats`)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from .index import VEC_TABLE, meta
from .tables import table_exists


@dataclass(frozen=True)
class FileStats:
    path: str
    kind: str
    passages: int
    warnings: int
    vectors: bool
    indexed_at: str


@dataclass(frozen=True)
class KbStats:
    files: list[FileStats]
    passages: int
    vectors: int
    embedding_model: str        # recorded identity ('' = none yet)
    embedding_dim: int
    last_ingest_at: str
    directory: str


def read_stats(conn: sqlite3.Connection) -> KbStats:
    info = meta(conn)
    files = [FileStats(r["path"], r["kind"], r["passages"], r["warnings"],
                       bool(r["embedding_model"]), r["indexed_at"])
             for r in conn.execute("SELECT * FROM kb_files ORDER BY path")]
    vectors = (conn.execute(f"SELECT count(*) FROM {VEC_TABLE}").fetchone()[0]
               if table_exists(conn, VEC_TABLE) else 0)
    return KbStats(files=files,
                   passages=conn.execute("SELECT count(*) FROM kb_passages").fetchone()[0],
                   vectors=vectors, embedding_model=info.get("embedding_model", ""),
                   embedding_dim=int(info.get("embedding_dim", "0")),
                   last_ingest_at=info.get("last_ingest_at", ""),
                   directory=info.get("directory", ""))
