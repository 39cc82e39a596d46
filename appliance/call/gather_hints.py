"""Speech-recognition hints for <Gather>: the product (and service) names of the knowledge base,
i.e. the titles of its spreadsheet rows, so Twilio hears "Bosch Serie 6" rather than "Bosh
series sex". Read from kb_passages, kept REFRESH_S, at most MAX_HINTS of MAX_CHARS each."""

from __future__ import annotations

import logging
import time

from ..store.db import Database

log = logging.getLogger(__name__)
MAX_HINTS = 100
MAX_CHARS = 100               # Twilio: a hint is a word or a phrase of up to 100 characters
REFRESH_S = 60.0


class ProductHints:
    def __init__(self, db: Database | None) -> None:
        self._db = db
        self._hints: tuple[str, ...] = ()
        self._read_at: float | None = None

    async def __call__(self) -> tuple[str, ...]:
        now = time.monotonic()
        if self._db is None or (self._read_at is not None and now - self._read_at < REFRESH_S):
            return self._hints
        self._read_at = now
        try:
            rows = await self._db.fetchall(
                "SELECT DISTINCT title FROM kb_passages WHERE row_number IS NOT NULL "
                "AND title != '' ORDER BY id LIMIT ?", (MAX_HINTS * 2,))
        except Exception:  # noqa: BLE001 - no hints is no reason to fail a call
            log.exception("reading the product names for <Gather> hints failed")
            return self._hints
        hints: list[str] = []
        for row in rows:
            hint = " ".join(str(row["title"]).replace(",", " ").split())[:MAX_CHARS].strip()
            if hint and hint not in hints:
                hints.append(hint)
        self._hints = tuple(hints[:MAX_HINTS])
        return self._hints
