"""Word coverage: the IDF-weighted share of a question's informative words found in a passage.

Passage words come from the word index (already normalised, with variants); a term matches a
word exactly, through a variant, within a small edit distance (text.word_matches), or through
an expansion: a KB word the vocabulary (vocab.py) or the receptionist synonyms (synonyms.py)
put in its place, counted as much as it is alike.
"""

from __future__ import annotations

import math
import sqlite3

from . import text as textmod
from .synonyms import WEIGHT as SYNONYM_WEIGHT
from .synonyms import synonyms

COMMON_SHARE = 0.2                # BM25 leaves out words found in more passages than this


class WordCoverage:
    """For one question: the IDF-weighted share of its terms found in a passage (0..1).

    Passage words come from the word index (already normalised, with variants); a term matches
    a word exactly, through a variant, or within a small edit distance (text.term_matches).
    Results are memoised per word, so checking many passages stays cheap.
    """

    def __init__(self, conn: sqlite3.Connection, terms: list[str]) -> None:
        self.conn, self.terms = conn, terms
        self.df: dict[str, int] = {}
        self.total = 0
        self.weights: dict[str, float] = {}
        self._memo: dict[tuple[str, str], bool] = {}
        self._coverages: dict[int, float] = {}     # passage -> coverage, for these expansions
        # unknown question word -> KB words close to it (vocab.py); they count as the word
        self._expansions: dict[str, list[tuple[str, float]]] = {}
        if not terms:
            return
        self.total = total = conn.execute("SELECT count(*) FROM kb_passages").fetchone()[0] or 1
        marks = ",".join("?" * len(terms))
        self.df = dict(conn.execute(
            f"SELECT term, doc FROM kb_fts_vocab WHERE term IN ({marks})", terms).fetchall())
        for term in terms:
            df = self.df.get(term, 0)
            self.weights[term] = math.log(1.0 + (total - df + 0.5) / (df + 0.5))
        self.total_weight = sum(self.weights.values())

    @property
    def expansions(self) -> dict[str, list[tuple[str, float]]]:
        return self._expansions

    @expansions.setter
    def expansions(self, value: dict[str, list[tuple[str, float]]]) -> None:
        self._expansions = value
        self._coverages.clear()

    def add_synonyms(self) -> None:
        """Expand every term with its receptionist synonyms (synonyms.py) the index holds."""
        wanted = {t: synonyms(t) for t in self.terms if synonyms(t)}
        words = sorted({w for group in wanted.values() for w in group})
        if not words:
            return
        held = {w for (w,) in self.conn.execute(
            f"SELECT term FROM kb_fts_vocab WHERE term IN ({','.join('?' * len(words))})",
            words)}
        self._coverages.clear()
        for term, group in wanted.items():
            found = [(w, SYNONYM_WEIGHT) for w in group if w in held]
            if found:
                known = {w for w, _ in self.expansions.get(term, ())}
                self.expansions[term] = self.expansions.get(term, []) + [
                    pair for pair in found if pair[0] not in known]

    def unknown_share(self) -> float:
        """The weighted share of the question's terms the whole index knows nothing of: not
        a word of it, no variant, no expansion (typos are caught by the trigram retriever)."""
        if not self.terms:
            return 0.0
        missing = sum(w for t, w in self.weights.items()
                      if not self.df.get(t) and not self.expansions.get(t)
                      and not any(self.df.get(v) for v in textmod.variants(t)))
        return missing / self.total_weight

    def unknown_terms(self) -> list[str]:
        return [t for t in self.terms if not self.df.get(t)]

    def selective_terms(self) -> list[str]:
        """The terms worth a BM25 query: those in at most COMMON_SHARE of the passages.

        A word found nearly everywhere ("price" in a catalogue) hardly changes the ranking but
        makes FTS5 score thousands of rows; when every term is that common, all are kept.
        """
        limit = max(COMMON_SHARE * self.total, 20)
        selective = [t for t in self.terms if self.df.get(t, 0) <= limit] or self.terms
        # Only words the index does not know are replaced: a known word already ranks its own
        # passages, and FTS5 would weigh its stand-ins as much as the word itself.
        extra = [w for t in selective if not self.df.get(t)
                 for w, _ in self.expansions.get(t, ())]
        return list(dict.fromkeys(selective + extra))

    def coverage(self, pid: int) -> float:
        """One search asks for a passage's coverage several times (floor, rerank, hit)."""
        known = self._coverages.get(pid)
        if known is None:
            known = self._coverages[pid] = self._coverage(pid)
        return known

    def _coverage(self, pid: int) -> float:
        if not self.terms:
            return 0.0
        row = self.conn.execute("SELECT title, body, extra FROM kb_fts WHERE rowid = ?",
                                (pid,)).fetchone()
        if row is None:
            return 0.0
        present = frozenset(textmod.words(" ".join(row)))
        found = 0.0
        for term, weight in self.weights.items():
            if term in present or self._fuzzy(term, present):
                found += weight
                continue
            # A KB word standing in for the question's word counts as much as it is alike.
            near = [sim for w, sim in self.expansions.get(term, ()) if w in present]
            if near:
                found += weight * max(near)
        return found / self.total_weight

    def _fuzzy(self, term: str, present: frozenset[str]) -> bool:
        if any(v in present for v in textmod.variants(term)):
            return True
        if not textmod.fuzzy_limit(term):
            return False
        for word in present:
            # Typos rarely hit the first letters: skip words that share neither the first
            # letter nor the next two (cheap, and most words fail here).
            if abs(len(word) - len(term)) > 4 or (
                    word[0] != term[0] and word[1:3] != term[1:3]):
                continue
            key = (term, word)
            hit = self._memo.get(key)
            if hit is None:
                hit = self._memo[key] = textmod.word_matches(term, word)
            if hit:
                return True
        return False
