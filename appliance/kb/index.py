"""Ingest a knowledge-base folder into the SQLite file: passages, FTS5 indexes and vectors.

- Every file is tracked by the sha256 of its bytes: unchanged files are skipped, changed ones
  re-indexed, passages of deleted files removed.
- Each file is replaced in one transaction (its old passages out, new ones in), and embedding
  happens before that transaction opens; an ingest interrupted at any point leaves every file
  either at its previous or at its new version, so the index stays usable.
- Passages whose embedded text is unchanged keep their vector (looked up by content hash), so
  editing one CSV row re-embeds one row.
- The vector table is created here because its dimension depends on the model. The model's
  identity and dimension are kept in kb_meta; a different model drops the vectors and every
  file is re-embedded (their words stay searchable meanwhile).
- A file that cannot be used (not UTF-8, binary, empty, too large) is skipped with a warning;
  if an earlier version of it was indexed, that version is kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..store.db import Database
from . import text as textmod
from . import parts, vocab
from .calibration import calibration_for
from .embed import TextEmbedder
from .sources import (
    MAX_FILE_BYTES,
    Passage,
    SourceSkipped,
    SourceWarning,
    kind_of,
    parse_source,
    too_large,
)
from .tables import table_exists

log = logging.getLogger(__name__)

VEC_TABLE = "kb_vec"
TITLE_TABLE = "kb_vec_title"  # one vector per passage of its own title (heading, row name)
EMBED_BATCH = 16          # passages per embedding call (and per progress report)


class KbError(Exception):
    """The knowledge base cannot be ingested or searched. ``code`` is a short machine code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class IngestProgress:
    files_done: int
    files_total: int
    path: str               # the file being worked on ("" when finished)
    passages_done: int = 0  # passages of that file embedded so far
    passages_total: int = 0


ProgressCallback = Callable[[IngestProgress], None]


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (path, reason)
    warnings: list[SourceWarning] = field(default_factory=list)
    passages_embedded: int = 0
    passages_reused: int = 0
    passages_total: int = 0
    vectors: bool = True            # False: indexed for keyword search only (no model)
    model_changed: bool = False
    seconds: float = 0.0


def title_text(passage: Passage) -> str:
    """What the title vector embeds: the last heading of the path, or the row's name."""
    return passage.title.rsplit(" > ", 1)[-1].strip()


def meta(conn: sqlite3.Connection) -> dict[str, str]:
    return {row[0]: row[1] for row in conn.execute("SELECT key, value FROM kb_meta")}


def _set_meta(conn: sqlite3.Connection, **values: str) -> None:
    conn.executemany("INSERT INTO kb_meta(key, value) VALUES (?, ?) "
                     "ON CONFLICT(key) DO UPDATE SET value = excluded.value", values.items())


def scan(directory: Path) -> list[str]:
    """Files under ``directory`` (relative, '/'-separated, sorted), hidden and temp files left out.

    Files of types the indexer does not read are listed too, so they are reported as skipped.
    """
    found = []
    for path in directory.rglob("*"):
        rel = path.relative_to(directory)
        if any(part.startswith((".", "~$")) or part.endswith("~") for part in rel.parts):
            continue
        if path.is_file():
            found.append(rel.as_posix())
    return sorted(found)


class Indexer:
    """Brings the database in line with a folder. Run it off the event loop (it blocks)."""

    def __init__(self, db: Database, embedder: TextEmbedder | None,
                 max_file_bytes: int = MAX_FILE_BYTES) -> None:
        self.db = db
        self.embedder = embedder
        self.max_file_bytes = max_file_bytes

    def ingest(self, directory: Path, progress: ProgressCallback | None = None) -> IngestReport:
        started = time.monotonic()
        directory = Path(directory)
        if not directory.is_dir():
            raise KbError("no_directory", f"knowledge-base folder {directory} does not exist")
        report = IngestReport(vectors=self.embedder is not None)
        report.model_changed = self.db.write_sync(self._prepare_model)
        files = scan(directory)
        known = {row["path"]: row for row in self.db.read_sync(
            lambda c: c.execute("SELECT * FROM kb_files").fetchall())}
        present = set(files)
        for done, rel in enumerate(files):
            def embedded(n: int, total: int, done: int = done, rel: str = rel) -> None:
                if progress:
                    progress(IngestProgress(done, len(files), rel, n, total))

            embedded(0, 0)
            self._ingest_file(directory, rel, known.get(rel), report, embedded)
        for rel in sorted(set(known) - present):
            self.db.write_sync(lambda c, rel=rel: self._delete_file(c, rel))
            report.removed.append(rel)
            log.info("kb: %s removed (file deleted)", rel)
        self._refresh_vocabulary()
        if progress:
            progress(IngestProgress(len(files), len(files), ""))
        self.db.write_sync(lambda c: _set_meta(
            c, last_ingest_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            directory=str(directory.resolve()),
            vectors_stamp=str(time.time_ns())))   # searches re-read in-memory vectors
        report.passages_total = self.db.read_sync(
            lambda c: c.execute("SELECT count(*) FROM kb_passages").fetchone()[0])
        report.seconds = time.monotonic() - started
        return report

    def _refresh_vocabulary(self) -> None:
        """Embed the index's new words for query expansion (vocab.py); drop the gone ones."""
        if self.embedder is None:
            return
        embedder = self.embedder
        latin_only = calibration_for(embedder.name).latin_only
        drop, add, vectors = self.db.read_sync(
            lambda c: vocab.refresh(c, embedder, latin_only))
        if drop or add:
            self.db.write_sync(lambda c: vocab.write(c, embedder.identity, drop, add, vectors))
            log.info("kb: vocabulary for query expansion: %d words added, %d dropped",
                     len(add), len(drop))

    # -- the model -----------------------------------------------------------------------------

    def _prepare_model(self, conn: sqlite3.Connection) -> bool:
        """Make kb_vec match the embedder; True when the model changed (vectors dropped)."""
        if self.embedder is None:
            return False
        recorded = meta(conn).get("embedding_model")
        identity = self.embedder.identity
        if recorded == identity and table_exists(conn, VEC_TABLE):
            before_titles = not table_exists(conn, TITLE_TABLE)
            if before_titles:                                # an index made before titles
                self._create_vec(conn, TITLE_TABLE)
            if parts.ensure_table(conn) or before_titles:    # or before part vectors
                conn.execute("UPDATE kb_files SET embedding_model = ''")  # revisit every file
            return False
        for table in (VEC_TABLE, TITLE_TABLE, parts.PART_TABLE):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        for table in (VEC_TABLE, TITLE_TABLE):
            self._create_vec(conn, table)
        parts.ensure_table(conn)
        _set_meta(conn, embedding_model=identity, embedding_name=self.embedder.name,
                  embedding_dim=str(self.embedder.dimension))
        if recorded:
            log.warning("kb: embedding model changed from %s to %s; re-embedding everything",
                        recorded, identity)
        return bool(recorded)

    def _create_vec(self, conn: sqlite3.Connection, table: str) -> None:
        assert self.embedder is not None
        conn.execute(f"CREATE VIRTUAL TABLE {table} USING vec0("
                     f"embedding float[{self.embedder.dimension}] distance_metric=cosine)")

    # -- one file ------------------------------------------------------------------------------

    def _ingest_file(self, directory: Path, rel: str, known: sqlite3.Row | None,
                     report: IngestReport, embedded: Callable[[int, int], object]) -> None:
        if kind_of(rel) is None:
            report.skipped.append((rel, f"unsupported file type {Path(rel).suffix or '(none)'}"))
            log.warning("kb: %s skipped: not a .csv, .tsv, .md or .txt file", rel)
            return
        try:
            size = (directory / rel).stat().st_size
            if size > self.max_file_bytes:      # refuse before reading it into memory
                raise too_large(rel, size, self.max_file_bytes)
            data = (directory / rel).read_bytes()
        except SourceSkipped as exc:
            self._skip(report, rel, known, exc.reason, str(exc), exc)
            return
        except OSError as exc:
            self._skip(report, rel, known, "unreadable", f"cannot be read: {exc.strerror}")
            return
        digest = hashlib.sha256(data).hexdigest()
        identity = self.embedder.identity if self.embedder else None
        if known is not None and known["sha256"] == digest and (
                identity is None or known["embedding_model"] == identity):
            report.unchanged.append(rel)
            return
        try:
            parsed = parse_source(rel, data, self.max_file_bytes)
        except SourceSkipped as exc:
            self._skip(report, rel, known, exc.reason, str(exc), exc)
            return
        for warning in parsed.warnings:
            log.warning("kb: %s", warning)
        report.warnings.extend(parsed.warnings)
        vectors = self._vectors(parsed.passages, report, embedded)
        titles = self._title_vectors(parsed.passages)
        part_vectors = (parts.embed_parts(self.embedder, parsed.passages, EMBED_BATCH)
                        if self.embedder is not None and parsed.passages else None)
        self.db.write_sync(lambda c: self._replace_file(
            c, rel, digest, len(data), parsed.kind, parsed.passages, vectors, titles,
            len(parsed.warnings), part_vectors))
        (report.updated if known is not None else report.added).append(rel)
        log.info("kb: %s %s: %d passages", rel, "updated" if known is not None else "added",
                 len(parsed.passages))

    def _skip(self, report: IngestReport, rel: str, known: sqlite3.Row | None, reason: str,
              message: str, source: SourceSkipped | None = None) -> None:
        kept = "; the previously indexed version is kept" if known is not None else ""
        report.skipped.append((rel, f"{reason}: {source.detail if source else message}{kept}"))
        warning = SourceWarning(rel, source.line if source else None,
                                (source.detail if source else message) + kept)
        report.warnings.append(warning)
        log.warning("kb: skipped %s", warning)

    def _vectors(self, passages: list[Passage], report: IngestReport,
                 embedded: Callable[[int, int], object]) -> np.ndarray | None:
        if self.embedder is None or not passages:
            return None
        hashes = [p.content_hash() for p in passages]
        reused = self.db.read_sync(lambda c: _existing_vectors(c, hashes))
        missing = [i for i, h in enumerate(hashes) if h not in reused]
        out = np.zeros((len(passages), self.embedder.dimension), dtype=np.float32)
        for i, h in enumerate(hashes):
            if h in reused:
                out[i] = reused[h]
        for start in range(0, len(missing), EMBED_BATCH):
            chunk = missing[start:start + EMBED_BATCH]
            out[chunk] = self.embedder.embed_passages(
                [passages[i].embedding_text() for i in chunk], batch=EMBED_BATCH)
            embedded(start + len(chunk), len(missing))
        report.passages_embedded += len(missing)
        report.passages_reused += len(passages) - len(missing)
        return out

    def _title_vectors(self, passages: list[Passage]) -> np.ndarray | None:
        """One vector per passage for its title; each distinct title is embedded once."""
        if self.embedder is None or not passages:
            return None
        titles = [title_text(p) for p in passages]
        unique = list(dict.fromkeys(titles))
        embedded = self.embedder.embed_passages(unique, batch=EMBED_BATCH)
        position = {t: i for i, t in enumerate(unique)}
        return embedded[[position[t] for t in titles]]

    def _replace_file(self, conn: sqlite3.Connection, rel: str, digest: str, size: int,
                      kind: str, passages: list[Passage], vectors: np.ndarray | None,
                      titles: np.ndarray | None, warnings: int,
                      part_vectors: list[np.ndarray] | None = None) -> None:
        self._delete_file(conn, rel)
        identity = self.embedder.identity if (self.embedder and vectors is not None) else ""
        file_id = conn.execute(
            "INSERT INTO kb_files(path, sha256, size, kind, passages, warnings, embedding_model) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rel, digest, size, kind, len(passages), warnings, identity)).lastrowid
        has_vec = vectors is not None and table_exists(conn, VEC_TABLE)
        has_titles = titles is not None and table_exists(conn, TITLE_TABLE)
        for i, passage in enumerate(passages):
            pid = conn.execute(
                "INSERT INTO kb_passages(file_id, ordinal, title, text, locator, row_number, "
                "heading, line_start, line_end, fields, content_hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (file_id, passage.ordinal, passage.title, passage.text, passage.locator,
                 passage.row, passage.heading, passage.line_start, passage.line_end,
                 json.dumps(dict(passage.fields), ensure_ascii=False)
                 if passage.fields is not None else None,
                 passage.content_hash())).lastrowid
            title = textmod.normalize(passage.title)
            body = textmod.normalize(passage.text)
            extra = textmod.index_extra(f"{title}\n{body}")
            for table in ("kb_fts", "kb_trigram"):
                conn.execute(f"INSERT INTO {table}(rowid, title, body, extra) VALUES (?, ?, ?, ?)",
                             (pid, title, body, extra))
            if has_vec:
                conn.execute(f"INSERT INTO {VEC_TABLE}(rowid, embedding) VALUES (?, ?)",
                             (pid, vectors[i].astype("<f4").tobytes()))
            if has_titles:
                conn.execute(f"INSERT INTO {TITLE_TABLE}(rowid, embedding) VALUES (?, ?)",
                             (pid, titles[i].astype("<f4").tobytes()))
            if has_vec and part_vectors is not None:
                parts.write(conn, pid, part_vectors[i])

    @staticmethod
    def _delete_file(conn: sqlite3.Connection, rel: str) -> None:
        row = conn.execute("SELECT id FROM kb_files WHERE path = ?", (rel,)).fetchone()
        if row is None:
            return
        ids = [r[0] for r in conn.execute("SELECT id FROM kb_passages WHERE file_id = ?",
                                          (row[0],))]
        tables = ["kb_fts", "kb_trigram"] + [t for t in (VEC_TABLE, TITLE_TABLE)
                                             if table_exists(conn, t)]
        for table in tables:
            conn.executemany(f"DELETE FROM {table} WHERE rowid = ?", [(i,) for i in ids])
        if table_exists(conn, parts.PART_TABLE):
            parts.delete(conn, ids)
        conn.execute("DELETE FROM kb_passages WHERE file_id = ?", (row[0],))
        conn.execute("DELETE FROM kb_files WHERE id = ?", (row[0],))


def _existing_vectors(conn: sqlite3.Connection, hashes: list[str]) -> dict[str, np.ndarray]:
    if not table_exists(conn, VEC_TABLE):
        return {}
    found: dict[str, np.ndarray] = {}
    unique = list(dict.fromkeys(hashes))
    for start in range(0, len(unique), 500):
        chunk = unique[start:start + 500]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT p.content_hash, v.embedding FROM kb_passages p "
            f"JOIN {VEC_TABLE} v ON v.rowid = p.id WHERE p.content_hash IN ({marks})", chunk)
        for content_hash, blob in rows:
            found[content_hash] = np.frombuffer(blob, dtype="<f4")
    return found


def ingest_in_background(indexer: Indexer, directory: Path) -> "asyncio.Task[IngestReport | None]":
    """Start ``indexer.ingest(directory)`` in a worker thread and return at once.

    Searches work meanwhile: each file is replaced in its own transaction, so a question sees
    every file at its old or its new version. The task's result is the report (None when the
    folder cannot be indexed; the reason is logged). For the server: create it after the port
    opens instead of awaiting the ingest before (conversation/wiring.py, ``_index``).
    """
    async def run() -> IngestReport | None:
        try:
            report = await asyncio.to_thread(indexer.ingest, directory)
        except KbError as exc:
            log.warning("knowledge base not indexed: %s", exc)
            return None
        log.info("knowledge base: %d added, %d updated, %d removed, %d skipped (%.1f s)",
                 len(report.added), len(report.updated), len(report.removed),
                 len(report.skipped), report.seconds)
        return report

    return asyncio.get_running_loop().create_task(run(), name="kb-ingest")
