"""A side table an older database lacks reads as empty; any other SQLite error (a locked file,
here) is raised, not mistaken for "no table" (which once made a backup think no migration had
run, and the KB drop its part vectors silently)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from appliance.kb.parts import PART_TABLE, best_similarities
from appliance.kb.retrieve import rare_trigrams
from appliance.store.backup import applied_migrations


def locked(path: Path, *schema: str) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    """(the writer holding an exclusive lock, a reader that will not wait for it)."""
    writer = sqlite3.connect(path, isolation_level=None)
    for statement in schema:
        writer.execute(statement)
    writer.execute("BEGIN EXCLUSIVE")
    return writer, sqlite3.connect(path, timeout=0)


def test_missing_tables_read_as_empty(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "old.db")
    assert applied_migrations(conn) == set()
    assert rare_trigrams(conn, ["battery"], total=10) == ["bat", "att", "tte", "ter", "ery"]
    assert best_similarities(conn, [1, 2], np.ones(4, dtype=np.float32) / 2) == {}


def test_a_locked_database_is_an_error_not_an_empty_table(tmp_path: Path) -> None:
    writer, reader = locked(tmp_path / "busy.db",
                            "CREATE TABLE schema_migrations(number INTEGER)",
                            "INSERT INTO schema_migrations VALUES (1)",
                            "CREATE TABLE kb_trigram_vocab(term TEXT, doc INTEGER)",
                            f"CREATE TABLE {PART_TABLE}(passage_id INTEGER, embedding BLOB)")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            applied_migrations(reader)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            rare_trigrams(reader, ["battery"], total=10)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            best_similarities(reader, [1, 2], np.ones(4, dtype=np.float32) / 2)
    finally:
        writer.rollback()
        writer.close()
        reader.close()
