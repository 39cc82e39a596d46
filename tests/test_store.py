"""The one SQLite file: WAL, foreign keys, sqlite-vec, numbered migrations, one writer."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from appliance.store.db import Database, connect, migrate, migrations


async def test_open_migrates_once_and_records_each_migration(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "a.db")
    rows = await db.fetchall("SELECT number, name FROM schema_migrations ORDER BY number")
    assert [r["number"] for r in rows] == [n for n, _, _ in migrations()]
    assert rows[0]["name"] == "core"
    db.close()
    conn = connect(tmp_path / "a.db")
    assert migrate(conn) == []                          # nothing applied twice
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("SELECT vec_version()").fetchone()[0].startswith("v")
    conn.close()


async def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "a.db")
    with pytest.raises(sqlite3.IntegrityError):
        await db.execute("INSERT INTO call_turns (call_id, turn_index, transcript) "
                         "VALUES (999, 1, 'x')")
    db.close()


async def test_a_failing_write_leaves_nothing_behind(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "a.db")

    def half(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO customers (phone) VALUES ('+15550000001')")
        raise RuntimeError("crash between two statements")

    with pytest.raises(RuntimeError):
        await db.write(half)
    assert await db.fetchall("SELECT * FROM customers") == []
    db.close()


async def test_many_concurrent_writers_never_see_locked(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "a.db")

    async def add(i: int) -> None:
        await db.execute("INSERT INTO customers (phone) VALUES (?)", (f"+1555000{i:04d}",))
        await db.fetchone("SELECT count(*) FROM customers")

    await asyncio.gather(*(add(i) for i in range(200)))
    row = await db.fetchone("SELECT count(*) AS n FROM customers")
    assert row["n"] == 200
    db.close()


def test_a_broken_migration_is_rolled_back(tmp_path: Path, monkeypatch) -> None:
    from appliance.store import db as dbmod

    real = dbmod.migrations()
    broken = real + [(999, "broken", "CREATE TABLE t_ok (x);\nTHIS IS NOT SQL;")]
    monkeypatch.setattr(dbmod, "migrations", lambda: broken)
    conn = connect(tmp_path / "b.db")
    with pytest.raises(dbmod.StoreError) as info:
        migrate(conn)
    assert info.value.code == "migration_failed"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "t_ok" not in tables and "customers" in tables
    conn.close()
