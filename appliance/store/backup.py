"""Online backups of the one SQLite file, retention, schema checks and atomic restore.

- `backup(db, directory)`: SQLite's online backup API from a read connection, so calls and
  messages keep being written meanwhile; the copy is written to a temporary name, checked, and
  renamed into place (mode 600). File name: appliance-<UTC stamp>-s<schema>-<label>.db.
- `prune(directory, keep)`: keep the newest `keep` backups.
- `restore(file, db)`: refuses a file whose schema is newer than this code knows, or one that
  fails SQLite's integrity check; takes a safety backup of the current database, then copies the
  file in with the backup API, which replaces the whole database in one transaction (readers see
  the old or the new database, never a mix).
- `before_migration(conn, pending)`: called by the migration runner before it changes an
  existing database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .schema import migrations, table_exists

log = logging.getLogger(__name__)
NAME = re.compile(r"^appliance-(\d{8}T\d{6}\d*Z)-s(\d+)-([a-z-]+)\.db$")
DEFAULT_KEEP = 7


class BackupError(Exception):
    pass


@dataclass(frozen=True)
class BackupPolicy:
    directory: Path
    keep: int = DEFAULT_KEEP
    hour: int = 3                   # local time of the nightly backup

    @classmethod
    def beside(cls, db_path: Path) -> BackupPolicy:
        return cls(default_directory(db_path))


def default_directory(db_path: Path) -> Path:
    return Path(db_path).resolve().parent / "backups"


def create_private(path: Path) -> None:
    """Create `path` empty with mode 600 whatever the umask (no-op when it exists)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.fchmod(fd, 0o600)
    os.close(fd)


def match_owner(*paths: Path) -> None:
    """Run as root (upgrade, restore): give new files to the data directory's owner, so the
    service (its own user) can still open them."""
    if os.geteuid() != 0:
        return
    for path in paths:
        st = path.parent.stat()
        for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if candidate.exists():
                os.chown(candidate, st.st_uid, st.st_gid)


def applied_migrations(conn: sqlite3.Connection) -> set[int]:
    # Only a missing table means "none applied"; a locked or broken file raises.
    if not table_exists(conn, "schema_migrations"):
        return set()
    return {row[0] for row in conn.execute("SELECT number FROM schema_migrations")}


def known_migrations() -> set[int]:
    return {number for number, _, _ in migrations()}


def newer_than_code(applied: set[int]) -> list[int]:
    return sorted(applied - known_migrations())


def copy_database(source: sqlite3.Connection, dest: Path) -> None:
    """Online copy of `source` into a new file `dest` (written to dest.tmp, then renamed)."""
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.unlink(missing_ok=True)
    create_private(tmp)
    out = sqlite3.connect(tmp)
    try:
        source.backup(out)
        out.execute("PRAGMA journal_mode = DELETE")   # one self-contained file
        check = out.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise BackupError(f"the copy failed its check: {check}")
    finally:
        out.close()
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, dest)


def backup_name(schema: int, label: str, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    return f"appliance-{stamp}-s{schema:03d}-{label}.db"


def backup(db_path: Path, directory: Path | None = None, label: str = "manual",
           keep: int | None = None) -> Path:
    """A consistent copy of the live database; with `keep`, older backups beyond it go."""
    db_path = Path(db_path)
    if not db_path.is_file():
        raise BackupError(f"{db_path} does not exist")
    directory = Path(directory or default_directory(db_path))
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    source = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        schema = max(applied_migrations(source), default=0)
        dest = directory / backup_name(schema, label)
        copy_database(source, dest)
    finally:
        source.close()
    match_owner(dest, db_path)     # root: a -shm it created goes back to the owner
    log.info("database backed up to %s", dest)
    if keep is not None:
        prune(directory, keep)
    return dest


def list_backups(directory: Path) -> list[Path]:
    """Backups in `directory`, oldest first."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if NAME.match(p.name)]
    return sorted(found, key=lambda p: NAME.match(p.name).group(1))  # type: ignore[union-attr]


def prune(directory: Path, keep: int) -> list[Path]:
    if keep < 1:
        raise BackupError("keep at least one backup")
    old = list_backups(directory)[:-keep]
    for path in old:
        path.unlink(missing_ok=True)
    return old


def before_migration(conn: sqlite3.Connection, pending: list[int]) -> Path | None:
    """Back up an existing database before migrations change it (a new, empty one: nothing)."""
    row = conn.execute("PRAGMA database_list").fetchone()
    path = Path(row[2]) if row and row[2] else None
    if path is None or not applied_migrations(conn):
        return None
    schema = max(applied_migrations(conn))
    dest = default_directory(path) / backup_name(schema, "pre-migration")
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    copy_database(conn, dest)
    log.warning("database backed up to %s before migration(s) %s", dest,
                ", ".join(f"{n:03d}" for n in pending))
    return dest


def check_restorable(path: Path) -> set[int]:
    """The backup's applied migrations; BackupError when it cannot be restored by this code."""
    if not path.is_file():
        raise BackupError(f"{path} does not exist")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            check = conn.execute("PRAGMA integrity_check").fetchone()[0]
            applied = applied_migrations(conn)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not an SQLite database: {exc}") from None
    if check != "ok":
        raise BackupError(f"{path} is damaged: {check}")
    if not applied:
        raise BackupError(f"{path} is not an appliance database (no schema_migrations)")
    newer = newer_than_code(applied)
    if newer:
        raise BackupError(f"{path} is from a newer version (migrations {newer} are unknown to "
                          "this code); upgrade the appliance first, then restore")
    return applied


def restore(backup_file: Path, db_path: Path) -> Path | None:
    """Replace the database with `backup_file`, atomically. Returns the safety backup taken of
    the database it replaced (None when there was none). Stop the service first."""
    backup_file, db_path = Path(backup_file), Path(db_path)
    check_restorable(backup_file)
    safety = backup(db_path, label="pre-restore") if db_path.is_file() else None
    create_private(db_path)
    source = sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True)
    target = sqlite3.connect(db_path, timeout=30)
    try:
        source.backup(target)          # one transaction on the target: all or nothing
    finally:
        target.close()
        source.close()
    match_owner(db_path)
    log.warning("database %s restored from %s", db_path, backup_file)
    return safety


def next_run(now: datetime, hour: int) -> datetime:
    at = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    return at if at > now else at + timedelta(days=1)


async def nightly_backups(db_path: Path, policy: BackupPolicy,
                          now: Callable[[], datetime] = lambda: datetime.now().astimezone(),
                          sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
    """Forever: at `policy.hour` local time, back up and keep the newest `policy.keep`."""
    while True:
        current = now()
        await sleep((next_run(current, policy.hour) - current).total_seconds())
        try:
            await asyncio.to_thread(backup, db_path, policy.directory, "nightly", policy.keep)
        except (BackupError, sqlite3.Error, OSError) as exc:
            log.error("nightly backup failed: %s", exc)
