"""Ingesting a knowledge-base folder: content hashes, vector reuse, bad input, interruptions,
model changes. The real all-MiniLM GGUF goes through the real Embedder; a recording fake stands
in where a second model is needed."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pytest

from appliance.kb.embed import Embedder
from appliance.kb.index import Indexer, IngestProgress, KbError, scan, title_text
from appliance.kb.parts import passage_parts
from appliance.kb.passage import Passage
from appliance.kb.sources import kind_of, parse_source
from appliance.kb.stats import read_stats
from appliance.kb.search import KnowledgeBase
from appliance.kb.tables import table_exists
from appliance.store.db import Database
from tests.support import kb as kb_support
from tests.support.kb import KB_DIR

embedder, ingested = kb_support.embedder, kb_support.ingested          # fixtures
ingested_template = kb_support.ingested_template


@pytest.fixture
def kb_dir(tmp_path: Path) -> Path:
    target = tmp_path / "kb"
    shutil.copytree(KB_DIR, target)
    return target


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open_sync(tmp_path / "appliance.db")
    yield database
    database.close()


class FakeEmbedder:
    """A deterministic stand-in with the Embedder interface; records what it embedded."""

    def __init__(self, name: str = "fake-model", dimension: int = 8) -> None:
        self.name, self.dimension = name, dimension
        self.embedded: list[str] = []
        self.calls = 0
        self.fail_after: int | None = None   # calls (passages, titles, parts: 3 a small file)

    @property
    def identity(self) -> str:
        return f"{self.name}|fake.gguf|0|{self.dimension}"

    def _vector(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
        v = np.random.default_rng(seed).normal(size=self.dimension).astype(np.float32)
        return v / np.linalg.norm(v)

    def embed_query(self, text: str) -> np.ndarray:
        return self._vector(text)

    def embed_passages(self, texts: Sequence[str], batch: int = 16) -> np.ndarray:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt  # what Ctrl-C in the middle of embedding looks like
        self.calls += 1
        self.embedded.extend(texts)
        return np.stack([self._vector(t) for t in texts]) if texts else \
            np.zeros((0, self.dimension), np.float32)


def consistent(db: Database) -> dict[str, int]:
    """Row counts; passages, both FTS indexes and the vectors must share the same ids."""
    def check(conn: sqlite3.Connection) -> dict[str, int]:
        ids = {r[0] for r in conn.execute("SELECT id FROM kb_passages")}
        for table in ("kb_fts", "kb_trigram"):
            assert {r[0] for r in conn.execute(f"SELECT rowid FROM {table}")} == ids, table
        vec = set()
        if table_exists(conn, "kb_vec"):
            vec = {r[0] for r in conn.execute("SELECT rowid FROM kb_vec")}
            assert vec <= ids
            titles = {r[0] for r in conn.execute("SELECT rowid FROM kb_vec_title")}
            assert titles == vec               # every passage with a vector has a title vector
            parts = {r[0] for r in conn.execute("SELECT passage_id FROM kb_part_vec")}
            assert parts <= vec and bool(parts) == bool(vec)   # no part outlives its passage
        files = conn.execute("SELECT coalesce(sum(passages), 0) FROM kb_files").fetchone()[0]
        assert files == len(ids)
        return {"passages": len(ids), "vectors": len(vec)}
    return db.read_sync(check)


def test_first_ingest_then_nothing_to_do(db: Database, embedder: Embedder, kb_dir: Path) -> None:
    events: list[IngestProgress] = []
    report = Indexer(db, embedder).ingest(kb_dir, progress=events.append)
    assert sorted(report.added) == sorted(scan(kb_dir))
    assert not (report.updated or report.removed or report.skipped or report.warnings)
    counts = consistent(db)
    assert counts["passages"] == counts["vectors"] == report.passages_total > 50
    assert report.passages_embedded == report.passages_total
    assert events[0] == IngestProgress(0, 6, "delivery.md")
    assert events[-1] == IngestProgress(6, 6, "")

    again = Indexer(db, embedder).ingest(kb_dir)
    assert sorted(again.unchanged) == sorted(report.added)
    assert not (again.added or again.updated or again.removed) and again.passages_embedded == 0
    stats = db.read_sync(read_stats)
    assert stats.embedding_model == embedder.identity and stats.embedding_dim == 384
    assert stats.passages == counts["passages"] and len(stats.files) == 6


def test_changed_file_reindexed_reusing_unchanged_vectors(ingested: Database, embedder: Embedder,
                                                          kb_dir: Path) -> None:
    db = ingested
    csv_path = kb_dir / "products.csv"
    csv_path.write_text(csv_path.read_text(encoding="utf-8").replace("₪199", "₪219"),
                        encoding="utf-8")
    (kb_dir / "faq.md").unlink()
    (kb_dir / "extra.txt").write_text("We also rent out party fridges for events.\n",
                                      encoding="utf-8")
    report = Indexer(db, embedder).ingest(kb_dir)
    assert report.updated == ["products.csv"]
    assert report.removed == ["faq.md"] and report.added == ["extra.txt"]
    assert report.passages_embedded == 2          # the kettle row and the new file
    consistent(db)
    kb = KnowledgeBase(db, embedder)
    hits = kb.search("Kenwood kettle price")
    assert hits[0].source == "products.csv" and "₪219" in hits[0].text
    assert not [h for h in kb.search("How can I pay? instalments Bit PayBox", k=10)
                if h.source == "faq.md"]


def test_bad_files_are_skipped_with_warnings_and_the_rest_ingested(
        ingested: Database, embedder: Embedder, kb_dir: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    db = ingested
    (kb_dir / "broken.csv").write_bytes(
        b'sku,name\nX-1,Good row\nX-2,"bad "quote"\nX-3,Also good\n')
    (kb_dir / "latin1.md").write_bytes("# Caf\xe9\nprices\n".encode("latin-1"))
    (kb_dir / "empty.txt").write_bytes(b"")
    (kb_dir / "huge.txt").write_bytes(b"word " * 1_100_000)        # 5.5 MB
    (kb_dir / "photo.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    (kb_dir / "brochure.pdf").write_bytes(b"%PDF-1.4")
    (kb_dir / ".hidden.md").write_text("# secret\n", encoding="utf-8")
    (kb_dir / "notes.md~").write_text("# editor backup\n", encoding="utf-8")
    report = Indexer(db, embedder).ingest(kb_dir)
    skipped = dict(report.skipped)
    assert set(skipped) == {"latin1.md", "empty.txt", "huge.txt", "photo.txt", "brochure.pdf"}
    assert skipped["latin1.md"].startswith("encoding") and skipped["huge.txt"].startswith(
        "too_large")
    assert report.added == ["broken.csv"] and len(report.unchanged) == 6
    messages = [str(w) for w in report.warnings]
    assert "broken.csv:3: malformed CSV (',' expected after '\"'); row skipped" in messages
    assert any(m.startswith("latin1.md:1: not UTF-8") for m in messages)
    assert any(m.startswith("photo.txt:3: binary") for m in messages)
    assert "broken.csv:3" in caplog.text and "latin1.md:1" in caplog.text
    consistent(db)
    hits = KnowledgeBase(db, embedder).search("X-3", mode="bm25")
    assert hits and hits[0].source == "broken.csv" and hits[0].row == 4


def test_a_file_that_turns_bad_keeps_its_previous_version(ingested: Database, embedder: Embedder,
                                                          kb_dir: Path) -> None:
    db = ingested
    before = consistent(db)
    (kb_dir / "hours.md").write_bytes("# שעות\nסגור\n".encode("cp1255"))  # saved by Excel
    report = Indexer(db, embedder).ingest(kb_dir)
    assert report.skipped[0][0] == "hours.md" and "previously indexed" in report.skipped[0][1]
    assert consistent(db) == before
    assert KnowledgeBase(db, embedder).search("opening hours Friday")[0].source == "hours.md"


def test_interrupted_ingest_leaves_a_usable_index(db: Database, kb_dir: Path) -> None:
    fake = FakeEmbedder()
    Indexer(db, fake).ingest(kb_dir)
    before = consistent(db)
    for name in ("delivery.md", "faq.md", "hours.md"):
        path = kb_dir / name
        path.write_text(path.read_text(encoding="utf-8") + "\nNew paragraph.\n", encoding="utf-8")
    fake.embedded.clear()
    fake.calls = 0
    fake.fail_after = 3                       # the second file's embedding is interrupted
    with pytest.raises(KeyboardInterrupt):
        Indexer(db, fake).ingest(kb_dir)
    assert consistent(db)["passages"] == before["passages"]
    kb = KnowledgeBase(db, fake)
    assert kb.search("delivery to Eilat", mode="bm25")[0].source == "delivery.md"
    fake.fail_after = None
    report = Indexer(db, fake).ingest(kb_dir)
    assert report.updated == ["faq.md", "hours.md"]   # delivery.md was finished before
    consistent(db)


def test_interrupted_inside_the_write_rolls_back(db: Database, kb_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeEmbedder()
    Indexer(db, fake).ingest(kb_dir)
    before = consistent(db)
    (kb_dir / "hours.md").write_text("# Hours\nAlways open.\n", encoding="utf-8")
    indexer = Indexer(db, fake)
    real_delete = indexer._delete_file

    def delete_then_die(conn: sqlite3.Connection, rel: str) -> None:
        real_delete(conn, rel)
        raise KeyboardInterrupt

    monkeypatch.setattr(indexer, "_delete_file", delete_then_die)
    with pytest.raises(KeyboardInterrupt):
        indexer.ingest(kb_dir)
    assert consistent(db) == before


def test_changing_the_model_rebuilds_the_vectors(ingested: Database, embedder: Embedder,
                                                 kb_dir: Path) -> None:
    db = ingested
    total = consistent(db)["passages"]
    other = FakeEmbedder("other-model", dimension=16)
    report = Indexer(db, other).ingest(kb_dir)
    assert report.model_changed and sorted(report.updated) == sorted(scan(kb_dir))
    assert report.passages_embedded == total and consistent(db)["vectors"] == total
    stats = db.read_sync(read_stats)
    assert stats.embedding_dim == 16 and stats.embedding_model == other.identity
    # The old model now disagrees with the index: vector search is off, words still work.
    kb = KnowledgeBase(db, embedder)
    assert kb.search("What time do you open on Friday?", mode="vector") == []
    assert kb.search("What time do you open on Friday?")[0].source == "hours.md"


def test_without_a_model_words_only_then_vectors_later(db: Database, embedder: Embedder,
                                                       kb_dir: Path) -> None:
    report = Indexer(db, None).ingest(kb_dir)
    assert not report.vectors and consistent(db)["vectors"] == 0
    kb = KnowledgeBase(db, None)
    hit = kb.search("delivery to Eilat")[0]
    assert hit.source == "delivery.md" and hit.similarity is None
    assert Indexer(db, None).ingest(kb_dir).unchanged     # nothing to do without a model
    later = Indexer(db, embedder).ingest(kb_dir)
    assert len(later.updated) == 6 and consistent(db)["vectors"] == later.passages_total


def test_missing_folder(db: Database) -> None:
    with pytest.raises(KbError) as caught:
        Indexer(db, None).ingest(Path("/nonexistent/kb"))
    assert caught.value.code == "no_directory"


def reingest_without(table: str, db: Database, kb_dir: Path):
    """Index kb_dir, drop `table` (as an index made before it existed), index again: the
    embedder (what the second ingest embedded) and the second report."""
    fake = FakeEmbedder()
    Indexer(db, fake).ingest(kb_dir)
    db.write_sync(lambda c: c.execute(f"DROP TABLE {table}"))
    fake.embedded.clear()
    return fake, Indexer(db, fake).ingest(kb_dir)


def test_an_index_without_part_vectors_gets_them_without_re_embedding_passages(
        db: Database, kb_dir: Path) -> None:
    fake, report = reingest_without("kb_part_vec", db, kb_dir)
    assert report.passages_embedded == 0 and report.passages_reused == report.passages_total
    consistent(db)
    passages = [p for rel in scan(kb_dir) if kind_of(rel)
                for p in parse_source(rel, (kb_dir / rel).read_bytes()).passages]
    wanted = {part for p in passages for part in passage_parts(p)}
    assert wanted <= set(fake.embedded)                   # every sentence or field, once
    assert set(fake.embedded) - wanted <= {title_text(p) for p in passages}   # and titles


def test_passage_parts_are_the_title_and_its_sentences_or_fields() -> None:
    prose = Passage(ordinal=0, title="Delivery > Eilat", text="We deliver on Sundays.\n"
                    "Eilat costs 150 ILS. Ok.", locator="Delivery > Eilat", line_start=1,
                    line_end=2, heading="Delivery > Eilat")
    assert passage_parts(prose) == ["We deliver on Sundays.", "Eilat costs 150 ILS."]
    row = Passage(ordinal=0, title="Kettle", text="name: Kettle\nprice: 199 ILS",
                  locator="row 2", line_start=2, line_end=2, row=2,
                  fields={"name": "Kettle", "price": "199 ILS"})
    assert passage_parts(row) == ["name: Kettle", "price: 199 ILS"]   # "Kettle": too short


def test_an_index_without_title_vectors_gets_them_without_re_embedding_passages(
        db: Database, kb_dir: Path) -> None:
    fake, report = reingest_without("kb_vec_title", db, kb_dir)
    assert report.passages_embedded == 0 and report.passages_reused == report.passages_total
    assert consistent(db)["vectors"] == report.passages_total
    # titles and sentences only (the part vectors are new too): no whole passage
    assert fake.embedded and not any("\n" in t for t in fake.embedded)


def test_vocabulary_follows_the_index(db: Database, kb_dir: Path) -> None:
    fake = FakeEmbedder()
    Indexer(db, fake).ingest(kb_dir)
    def words() -> set[str]:
        return {r[0] for r in db.read_sync(
            lambda c: c.execute("SELECT term FROM kb_vocab").fetchall())}

    first = words()
    assert "delivery" in first and not any(w.isdigit() for w in first)
    assert all(w.isascii() for w in first)          # fake-model: English-only fallback
    (kb_dir / "extra.md").write_text("# Zeppelins\nWe rent zeppelins.\n", encoding="utf-8")
    fake.embedded.clear()
    Indexer(db, fake).ingest(kb_dir)
    assert "zeppelins" in words() and "zeppelins" in fake.embedded
    assert "delivery" not in fake.embedded          # known words are not embedded again
    (kb_dir / "extra.md").unlink()
    Indexer(db, fake).ingest(kb_dir)
    assert "zeppelins" not in words()


def test_ingest_in_background_lets_searches_run(db: Database, kb_dir: Path) -> None:
    import asyncio

    from appliance.kb.index import ingest_in_background

    async def scenario() -> tuple[object, object]:
        task = ingest_in_background(Indexer(db, FakeEmbedder()), kb_dir)
        await asyncio.sleep(0)                  # the loop is free while it indexes
        missing = ingest_in_background(Indexer(db, None), kb_dir / "nope")
        return await task, await missing

    report, missing = asyncio.run(scenario())
    assert report is not None and report.passages_total > 50 and missing is None
    assert KnowledgeBase(db, None).search("delivery to Eilat", mode="bm25")
