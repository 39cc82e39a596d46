"""The one SQLite file: connections, migrations, and database work off the event loop.

- WAL mode, a busy timeout, foreign keys on, sqlite-vec loaded on every connection.
- Numbered migrations (appliance/store/migrations/NNN_name.sql) recorded in `schema_migrations`.
- One writer: every write runs on a single dedicated thread with its own connection, so writes
  are serialised without "database is locked" surprises; reads run on a small pool of threads,
  each with its own connection (WAL lets them read while the writer writes).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

from . import backup
from .backup import create_private
from .schema import StoreError, migrations

log = logging.getLogger(__name__)
T = TypeVar("T")


def extension_loading_supported() -> bool:
    """Can this Python's sqlite3 load extensions at all? (pyenv builds often cannot.)"""
    return hasattr(sqlite3.connect(":memory:"), "enable_load_extension")


def connect(path: Path | str, *, readonly: bool = False) -> sqlite3.Connection:
    """Open a connection with the appliance's pragmas and sqlite-vec loaded."""
    if path != ":memory:" and not readonly:
        create_private(Path(path))    # mode 600 whatever the umask (-wal/-shm follow it)
    uri = f"file:{path}?mode=ro" if readonly else str(path)
    conn = sqlite3.connect(uri, uri=readonly, timeout=10.0, check_same_thread=False,
                           isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA cache_size = -65536")   # 64 MiB: halves the KB's vector scan
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    load_vec(conn)
    return conn


def load_vec(conn: sqlite3.Connection) -> None:
    if not hasattr(conn, "enable_load_extension"):
        raise StoreError("no_extensions",
                         "this Python's sqlite3 cannot load extensions (sqlite-vec needs it); "
                         "run install.sh, which picks a Python that can (e.g. Debian's "
                         "/usr/bin/python3)")
    import sqlite_vec

    conn.enable_load_extension(True)
    try:
        sqlite_vec.load(conn)
    finally:
        conn.enable_load_extension(False)


def migrate(conn: sqlite3.Connection) -> list[int]:
    """Apply the migrations not yet recorded; each one in its own transaction."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                 "number INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                 "applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))")
    done = {row[0] for row in conn.execute("SELECT number FROM schema_migrations")}

    newer = backup.newer_than_code(done)
    if newer:
        raise StoreError("schema_newer", f"the database has migrations {newer} this version does "
                         "not know: it was used by a newer version; upgrade, or restore a backup")
    pending = [number for number, _, _ in migrations() if number not in done]
    if pending:
        backup.before_migration(conn, pending)
    applied = []
    for number, name, sql in migrations():
        if number in done:
            continue
        try:
            conn.execute("BEGIN IMMEDIATE")
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations(number, name) VALUES (?, ?)",
                         (number, name))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise StoreError("migration_failed", f"migration {number:03d}_{name}: {exc}") from exc
        log.info("database migration %03d_%s applied", number, name)
        applied.append(number)
    return applied


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (sqlite3.complete_statement handles triggers)."""
    out, buf = [], ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


def _rollback(conn: sqlite3.Connection) -> None:
    if not conn.in_transaction:
        return
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        log.exception("ROLLBACK failed")


class Database:
    """Async access to the one SQLite file. Create with `await Database.open(path)`."""

    def __init__(self, path: Path, readers: int = 2) -> None:
        self.path = path
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="db-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="db-reader")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    async def open(cls, path: Path | str) -> "Database":
        db = cls(Path(path))
        await db.write(migrate)
        return db

    @classmethod
    def open_sync(cls, path: Path | str) -> "Database":
        """For the command line: migrate on the calling thread, then the same object."""
        db = cls(Path(path))
        db._writer.submit(lambda: migrate(db._conn())).result()
        return db

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn(conn) on the writer thread inside one transaction (committed unless it raises)."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, self._tx, fn)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._readers, lambda: fn(self._conn()))

    def write_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Blocking write, for threads that are not the event loop (CLI, model workers)."""
        return self._writer.submit(self._tx, fn).result()

    def read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self._readers.submit(lambda: fn(self._conn())).result()

    def _tx(self, fn: Callable[[sqlite3.Connection], T], durable: bool = False) -> T:
        """One transaction. A failing COMMIT (disk full, I/O error) is rolled back too: a
        transaction left open would make every later write fail until a restart."""
        conn = self._conn()
        if fn is migrate:
            return fn(conn)
        if conn.in_transaction:          # never expected; never let it wedge the writer
            log.error("the writer found a transaction left open; rolling it back")
            _rollback(conn)
        if durable:
            conn.execute("PRAGMA synchronous = FULL")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        finally:
            if durable:
                conn.execute("PRAGMA synchronous = NORMAL")
        return result

    async def write_durable(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """As write(), but synced to disk before it returns (synchronous = FULL), for what is
        acknowledged to someone else at once (an inbound message Twilio will not resend)."""
        return await asyncio.get_running_loop().run_in_executor(
            self._writer, self._tx, fn, True)

    async def execute(self, sql: str, params: Any = ()) -> int:
        """One write statement; returns lastrowid."""
        return await self.write(lambda c: c.execute(sql, params).lastrowid)

    async def fetchall(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        return await self.read(lambda c: c.execute(sql, params).fetchall())

    async def fetchone(self, sql: str, params: Any = ()) -> sqlite3.Row | None:
        return await self.read(lambda c: c.execute(sql, params).fetchone())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for pool in (self._writer, self._readers):
            pool.shutdown(wait=True)
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
