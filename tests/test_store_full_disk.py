"""Issue 13, item 5: a failing COMMIT must not wedge the single writer.

On a real full filesystem (a 2 MB tmpfs, needs root; skipped otherwise): writes fail while the
disk is full, the writer rolls back, and once space is back the next write succeeds - without
a restart. And the disk check says "low disk" before it comes to that."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from appliance.store.db import Database
from appliance.store.disk import MB, disk_status
from tests.support.fixtures import fill_disk as _fill


def _row(n: int) -> str:
    return f"{n:06d}" + "x" * 20000            # big enough to need new pages


async def test_a_full_disk_fails_writes_and_they_work_again_once_space_is_back(
        tiny_fs: Path) -> None:
    db = await Database.open(tiny_fs / "appliance.db")
    try:
        await db.execute("CREATE TABLE t (v TEXT)")
        assert not disk_status(tiny_fs / "appliance.db", low_mb=1).low
        filler = _fill(tiny_fs)
        status = disk_status(tiny_fs / "appliance.db", low_mb=1)
        assert status.low and status.message.startswith("low disk") and status.free_bytes < MB
        failures = 0
        for n in range(20):                    # the WAL and the pages need room: some fail
            try:
                await db.write(lambda c, n=n: c.executemany(
                    "INSERT INTO t VALUES (?)", [(_row(n * 10 + k),) for k in range(10)]))
            except sqlite3.Error as exc:
                failures += 1
                assert "full" in str(exc).lower() or "disk" in str(exc).lower(), exc
        assert failures > 0
        filler.unlink()                         # space is back: no restart
        await db.execute("INSERT INTO t VALUES ('after')")
        rows = await db.fetchall("SELECT v FROM t WHERE v = 'after'")
        assert len(rows) == 1
        assert not disk_status(tiny_fs / "appliance.db", low_mb=1).low
    finally:
        db.close()


async def test_a_commit_that_raises_is_rolled_back(tmp_path: Path) -> None:
    """Without a full disk: a deferred foreign key makes COMMIT itself fail."""
    db = await Database.open(tmp_path / "a.db")
    try:
        await db.execute("CREATE TABLE p (id INTEGER PRIMARY KEY)")
        await db.execute("CREATE TABLE ch (p INTEGER REFERENCES p(id) DEFERRABLE INITIALLY "
                         "DEFERRED)")
        with pytest.raises(sqlite3.IntegrityError):
            await db.execute("INSERT INTO ch VALUES (42)")   # fails at COMMIT, not at INSERT
        await db.execute("INSERT INTO p VALUES (1)")         # the writer is not wedged
        assert [tuple(r) for r in await db.fetchall("SELECT id FROM p")] == [(1,)]
        assert await db.fetchall("SELECT * FROM ch") == []
    finally:
        db.close()


def test_disk_status_reports_the_database_filesystem(tmp_path: Path) -> None:
    status = disk_status(tmp_path / "not-yet" / "appliance.db", low_mb=0)
    assert status.path == str(tmp_path) and status.free_bytes > 0 and not status.low
    assert disk_status(tmp_path / "x.db", low_mb=10 ** 9).low


def test_doctor_says_low_disk(tmp_path: Path, capsys) -> None:
    from appliance.cli import main
    from tests.support.fixtures import write_ini

    ini = write_ini(tmp_path / "config.ini", None, "[security]\nlow_disk_mb = 1000000\n")
    main(["--config", str(ini), "doctor"])
    out = capsys.readouterr().out
    assert "WARN low disk:" in out and "below 1000000 MB" in out
    ini = write_ini(tmp_path / "config.ini", None, "[security]\nlow_disk_mb = 0\n")
    main(["--config", str(ini), "doctor"])
    assert "ok   disk: ok," in capsys.readouterr().out
