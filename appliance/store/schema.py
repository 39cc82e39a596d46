"""The schema the code knows: numbered migration files, and the store's error type.

Kept apart from db.py (the connection and the writer) and backup.py (copies and restores), which
both need it, so neither has to import the other's module.
"""

from __future__ import annotations

import sqlite3
from importlib import resources


def table_exists(conn: sqlite3.Connection, name: str) -> bool:
    """Is there a table (or index, view, virtual table) called ``name``?"""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() \
        is not None


class StoreError(Exception):
    """The database cannot be opened or migrated. `code` is a short machine code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def migrations() -> list[tuple[int, str, str]]:
    """(number, name, sql) for every file in appliance/store/migrations, in order."""
    found = []
    for entry in resources.files("appliance.store.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:3].isdigit():
            found.append((int(name[:3]), name[4:-4], entry.read_text(encoding="utf-8")))
    found.sort()
    numbers = [n for n, _, _ in found]
    if len(numbers) != len(set(numbers)):
        raise StoreError("migration_numbers", f"two migrations share a number: {numbers}")
    return found
