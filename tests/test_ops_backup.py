"""Online backups with retention, atomic restore, schema checks, the backup before migrations,
and a database file only its owner can read."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.config import load_settings
from appliance.store import backup as backups
from appliance.store import db as store_db
from appliance.store.db import Database, StoreError
from tests.support.fixtures import TOKEN, write_ini


def count(path: Path, table: str = "customers") -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


async def add_customers(db: Database, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        await db.execute("INSERT INTO customers (phone) VALUES (?)", (f"+1555000{i:04d}",))


def test_the_database_and_its_wal_are_created_mode_600_whatever_the_umask(tmp_path) -> None:
    old = os.umask(0)
    try:
        db = Database.open_sync(tmp_path / "data" / "a.db")
        db.write_sync(lambda c: c.execute("INSERT INTO customers (phone) VALUES ('+15550000001')"))
    finally:
        os.umask(old)
    for name in ("a.db", "a.db-wal", "a.db-shm"):
        assert stat.S_IMODE((tmp_path / "data" / name).stat().st_mode) == 0o600, name
    db.close()


async def test_backup_while_writing_is_consistent_and_retention_keeps_n(tmp_path) -> None:
    db = await Database.open(tmp_path / "a.db")
    await add_customers(db, 5)
    writer = asyncio.create_task(add_customers(db, 200, start=100))
    made = [await asyncio.to_thread(backups.backup, db.path, tmp_path / "b", "manual", 3)
            for _ in range(5)]
    await writer
    kept = backups.list_backups(tmp_path / "b")
    assert kept == made[-3:]                          # the newest 3
    assert stat.S_IMODE(kept[-1].stat().st_mode) == 0o600
    for path in kept:
        n = count(path)
        assert 5 <= n <= 205                          # a consistent snapshot, mid-writes
        assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert count(kept[-1]) >= count(kept[0])
    db.close()


async def test_restore_replaces_the_whole_database_and_keeps_the_replaced_one(tmp_path) -> None:
    db = await Database.open(tmp_path / "a.db")
    await add_customers(db, 3)
    saved = await asyncio.to_thread(backups.backup, db.path, tmp_path / "b")
    await add_customers(db, 10, start=50)
    db.close()
    safety = backups.restore(saved, tmp_path / "a.db")
    assert count(tmp_path / "a.db") == 3
    assert safety is not None and count(safety) == 13
    reopened = Database.open_sync(tmp_path / "a.db")       # and the appliance opens it
    assert reopened.read_sync(lambda c: c.execute("SELECT count(*) FROM customers").fetchone()[0]
                              ) == 3
    reopened.close()


def _newer(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_migrations(number, name) VALUES (999, 'from_the_future')")
    conn.commit()
    conn.close()


def test_restore_refuses_a_newer_schema_or_a_damaged_file(tmp_path) -> None:
    Database.open_sync(tmp_path / "a.db").close()
    future = backups.backup(tmp_path / "a.db", tmp_path / "b")
    _newer(future)
    with pytest.raises(backups.BackupError, match="newer version"):
        backups.restore(future, tmp_path / "a.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(backups.BackupError, match="not an SQLite database"):
        backups.restore(junk, tmp_path / "a.db")
    assert not backups.list_backups(tmp_path / "backups")   # nothing touched, no safety copy


def test_an_older_version_refuses_to_open_a_newer_database(tmp_path) -> None:
    Database.open_sync(tmp_path / "a.db").close()
    _newer(tmp_path / "a.db")
    with pytest.raises(StoreError, match="newer version") as info:
        Database.open_sync(tmp_path / "a.db")
    assert info.value.code == "schema_newer"


def test_a_migration_is_preceded_by_an_automatic_backup(tmp_path, monkeypatch) -> None:
    Database.open_sync(tmp_path / "a.db").close()           # an existing database
    conn = sqlite3.connect(tmp_path / "a.db")
    conn.execute("INSERT INTO customers (phone) VALUES ('+15550000001')")
    conn.commit()
    conn.close()
    real = store_db.migrations()
    newer = real + [(998, "extra", "CREATE TABLE extra (x INTEGER);")]
    monkeypatch.setattr(store_db, "migrations", lambda: newer)   # a code version that knows 998
    monkeypatch.setattr(backups, "migrations", lambda: newer)
    Database.open_sync(tmp_path / "a.db").close()
    (pre,) = backups.list_backups(tmp_path / "backups")
    assert "pre-migration" in pre.name and f"s{max(n for n, _, _ in real):03d}" in pre.name
    check = sqlite3.connect(pre)
    assert 998 not in {r[0] for r in check.execute("SELECT number FROM schema_migrations")}
    assert check.execute("SELECT count(*) FROM customers").fetchone()[0] == 1
    check.close()
    Database.open_sync(tmp_path / "a.db").close()           # nothing pending: no new backup
    assert len(backups.list_backups(tmp_path / "backups")) == 1


def test_a_fresh_database_needs_no_backup(tmp_path) -> None:
    Database.open_sync(tmp_path / "a.db").close()
    assert not (tmp_path / "backups").exists()


def test_backup_and_restore_commands(tmp_path, capsys) -> None:
    ini = write_ini(tmp_path / "config.ini", None, "[server]\nport = 1\n")
    settings = load_settings(ini, environ={"TWILIO_AUTH_TOKEN": TOKEN})
    db = Database.open_sync(settings.storage.database)
    db.write_sync(lambda c: c.execute("INSERT INTO customers (phone) VALUES ('+15550000001')"))
    db.close()
    assert main(["--config", str(ini), "backup", "--keep", "2"]) == 0
    saved = Path(capsys.readouterr().out.strip())
    assert saved.is_file() and saved.parent == tmp_path / "backups"
    conn = sqlite3.connect(settings.storage.database)
    conn.execute("DELETE FROM customers")
    conn.commit()
    conn.close()
    assert main(["--config", str(ini), "restore", str(saved)]) == 0
    assert count(settings.storage.database) == 1
    assert main(["--config", str(ini), "restore", str(tmp_path / "nope.db")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_secrets_come_from_systemd_credentials(tmp_path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "secrets.env").write_text("TWILIO_AUTH_TOKEN=from-credentials\n")
    (creds / "GEMINI_API_KEY").write_text("gemini-from-its-own-file\n")
    ini = write_ini(tmp_path / "config.ini", None)
    s = load_settings(ini, environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert s.twilio.auth_token == "from-credentials"
    assert s.gemini.api_key == "gemini-from-its-own-file"


async def test_the_nightly_backup_runs_at_its_hour_and_keeps_n(tmp_path) -> None:
    from datetime import datetime, timedelta, timezone

    Database.open_sync(tmp_path / "a.db").close()
    clock = {"now": datetime(2026, 12, 1, 17, 30, tzinfo=timezone.utc)}
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock["now"] += timedelta(seconds=seconds)
        if len(slept) > 3:
            raise asyncio.CancelledError
        await asyncio.sleep(0)

    policy = backups.BackupPolicy(tmp_path / "nightly", keep=2, hour=3)
    with pytest.raises(asyncio.CancelledError):
        await backups.nightly_backups(tmp_path / "a.db", policy, now=lambda: clock["now"],
                                      sleep=sleep)
    assert slept == [9.5 * 3600] + [24 * 3600.0] * 3     # 17:30 -> 03:00, then daily
    kept = backups.list_backups(tmp_path / "nightly")
    assert len(kept) == 2 and all("nightly" in p.name for p in kept)
