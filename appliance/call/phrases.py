"""The fixed things a call or conversation says, per language (synthesised once at start-up).

The texts live in appliance/phrases.ini (the shipped defaults, one section per language) and
may be overridden in config.ini's [phrases_<language>] sections; appliance.config reads both
with the one config reader (config_reader.py) into a `PhraseBook` (Settings.phrases):
`book.text("goodbye", "ru")`. Nothing here holds text.

`PHRASES` (the shipped English texts, by key) is kept for code that predates the book.
"""

from __future__ import annotations

from pathlib import Path

from ..config_reader import read_phrases_file
from ..config_types import PHRASE_KEYS, PhraseBook, base_language

SHIPPED = Path(__file__).resolve().parent.parent / "phrases.ini"
KEYS = PHRASE_KEYS

__all__ = ["KEYS", "PHRASES", "SHIPPED", "PhraseBook", "base_language", "phrase_book",
           "shipped_phrases"]


def shipped_phrases() -> dict[str, dict[str, str]]:
    return read_phrases_file(SHIPPED)


def phrase_book(overrides: dict[str, dict[str, str]], default_language: str = "en",
                business: str = "") -> PhraseBook:
    """The shipped phrases with config.ini's overrides laid over them, per key."""
    merged = shipped_phrases()
    for language, texts in overrides.items():
        merged.setdefault(language, {}).update(texts)
    return PhraseBook(merged, default_language, business)


PHRASES: dict[str, str] = dict(shipped_phrases().get("en", {}))
