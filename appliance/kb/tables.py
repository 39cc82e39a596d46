"""Schema look-ups shared by the index and its side tables (kept apart: parts.py and vocab.py
cannot import index.py, which imports them)."""

from __future__ import annotations

import sqlite3


def table_exists(conn: sqlite3.Connection, name: str) -> bool:
    """Is there a table (or index, view, virtual table) called ``name``?"""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() \
        is not None
