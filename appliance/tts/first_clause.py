"""When a reply's first piece is spoken: the splitter's rules plus a slow model's. Pure: the
caller passes the time each delta arrived.

Gemini streams a whole sentence within ~100 ms of its first token, so its first piece ends at
the splitter's first clause boundary (a comma after 2 words: "Of course,"), or its sentence
end. A local model on 2 cores decodes ~20-30 tokens a second: waiting for its first comma or
full stop costs 0.4-0.9 s of silence (bench/results/local_llm.md). So once the first delta is
``slow_after_s`` old and no piece has been cut, the words that have arrived are spoken as the
first piece (at least ``slow_min_words`` of them, never ending on "the", "and" ...), and the
rest follows at sentence ends as usual.
"""

from __future__ import annotations

from .clauses import ClauseSplitter

# The first clause ends at the first comma after 2 words ("Of course,", "I'm sorry,"): Piper's
# first audio comes ~40% sooner than at 3 words (bench/results/first_clause.md).
FIRST_CLAUSE_MIN_WORDS = 2
SLOW_AFTER_S = 0.25      # a model still without a first clause this long after its first text
SLOW_MIN_WORDS = 3       # ... speaks the words it has, at least this many


class SpokenClauses:
    """One reply's text deltas in, pieces for Piper out. Not thread-safe; one per reply."""

    def __init__(self, *, first_min_words: int = FIRST_CLAUSE_MIN_WORDS,
                 slow_after_s: float | None = SLOW_AFTER_S,
                 slow_min_words: int = SLOW_MIN_WORDS) -> None:
        self._splitter = ClauseSplitter(first_min_words=first_min_words)
        self._slow_after_s = slow_after_s
        self._slow_min_words = slow_min_words
        self._first_at: float | None = None
        self._cut = False             # a first piece has been returned

    def feed(self, delta: str, at: float) -> list[str]:
        """A delta that arrived at ``at`` (seconds, any monotonic clock)."""
        if self._first_at is None and delta.strip():
            self._first_at = at
        pieces = self._splitter.feed(delta)
        if (not pieces and not self._cut and self._slow_after_s is not None
                and self._first_at is not None and at - self._first_at >= self._slow_after_s):
            pieces = self._splitter.cut_first_piece(self._slow_min_words)
        self._cut = self._cut or bool(pieces)
        return pieces

    def flush(self) -> list[str]:
        """Before a filler, and at the end of the reply: the rest (at most one piece)."""
        pieces = self._splitter.flush()
        self._cut = self._cut or bool(pieces)
        return pieces
