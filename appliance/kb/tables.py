"""Schema look-ups shared by the index and its side tables (kept apart: parts.py and vocab.py
cannot import index.py, which imports them). The check itself is the store's."""

from __future__ import annotations

from ..store.schema import table_exists

__all__ = ["table_exists"]
