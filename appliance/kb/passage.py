"""A retrievable piece of a source file, and the sizes passages are cut to (pure data)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Mapping

TARGET_CHARS = 700      # a passage is packed up to about this many characters
MAX_CHARS = 1000        # and never longer (well under 512 tokens for the embedding models)
OVERLAP_CHARS = 150     # tail of the previous passage repeated when a section is split


@dataclass(frozen=True)
class Passage:
    """One retrievable piece of a source file."""

    ordinal: int                  # position in the file, from 0
    title: str                    # heading path or the row's name; repeated in the embedding
    text: str                     # the body, as the bot will read it
    locator: str                  # "row 7", "Returns > Refunds", "lines 3-9": for citations
    line_start: int               # first line of the file it came from (1-based)
    line_end: int
    row: int | None = None        # CSV: spreadsheet row number (the header is row 1)
    heading: str | None = None    # Markdown: heading path
    fields: Mapping[str, str] | None = None  # CSV: column name -> value

    def embedding_text(self) -> str:
        return f"{self.title}\n{self.text}" if self.title else self.text

    def content_hash(self) -> str:
        """Identifies the embedded text: an unchanged hash means the vector can be reused."""
        return hashlib.sha256(self.embedding_text().encode("utf-8")).hexdigest()
